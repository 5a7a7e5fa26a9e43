"""The public API is deliberate: this test lists it, so a change to it is a visible decision."""

from __future__ import annotations

import doctest
import subprocess
import sys

import prebake
import prebake.bake.memory


def test_public_names():
    assert sorted(prebake.__all__) == sorted([
        "BadItemError", "BuildLockedError", "BuildOptions", "BuildReport", "Cache", "CacheCorruptError",
        "CacheNotFoundError", "FormatError", "Loader", "OptionError", "PrebakeError", "Ragged", "Source",
        "SourceError", "SourceOptions", "StrictModeError", "UnsafePickleError", "VerifyReport", "Watch", "WatchReport",
        "__version__", "augment", "build", "load_config", "open", "verify", "watch", "write_arrays",
    ])
    for name in prebake.__all__:
        assert hasattr(prebake, name), name


def test_open_is_a_torch_dataset_factory():
    import torch.utils.data

    assert issubclass(prebake.Cache, torch.utils.data.Dataset)
    assert prebake.open is prebake.cache.reader.open_cache


def test_docstring_examples_run():
    assert doctest.testmod(prebake.bake.memory).failed == 0


def test_import_and_the_light_commands_do_not_import_torch(tmp_path):
    """Members load on first use: prebake, its CLI parser and ls/info/verify/clear never need torch."""
    import numpy as np

    prebake.write_arrays(tmp_path / "c", {"x": np.arange(3)})
    code = (
        "import sys, prebake, prebake.cli, prebake.cache.verify, prebake.cache.inventory\n"
        "from prebake.cli import main\n"
        f"for argv in (['ls', {str(tmp_path)!r}], ['info', {str(tmp_path / 'c')!r}], "
        f"['verify', {str(tmp_path / 'c')!r}], ['--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n"
        "prebake.Loader  # touching a member that needs torch imports it\n"
        "assert 'torch' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_public_name_resolves_in_a_fresh_process():
    code = "import prebake\nfor n in prebake.__all__:\n    getattr(prebake, n)\nprint(sorted(dir(prebake))[:1])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
