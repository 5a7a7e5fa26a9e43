"""The public API is deliberate: this test lists it, so a change to it is a visible decision."""

from __future__ import annotations

import doctest
import subprocess
import sys

import prebake
import prebake.bake.memory


def test_public_names():
    assert sorted(prebake.__all__) == sorted([
        "BadItemError", "BuildLockedError", "BuildReport", "Cache", "CacheChangedError",
        "CacheCorruptError", "CacheNotFoundError", "Crops", "DiskFullError", "Elements", "ForeignOutputError",
        "FormatError", "IndicesError", "IteratorSupersededError", "Loader",
        "OptionError", "Patches", "PrebakeError", "Ragged", "ResumeError", "SamplingError", "SchemaError", "Shaped",
        "Source", "SourceError", "TooManySkippedError",
        "SourceOptions", "SplitsError", "Stage", "StrictModeError", "UnsafePickleError", "VerifyReport", "ViewError",
        "Watch", "WatchReport", "Windows", "WorkerDiedError", "__version__", "augment", "build", "crop_or_pad",
        "export_hdf5", "lightning", "load_config", "load_splits", "open", "split", "steps", "verify", "watch",
        "write_arrays",
    ])
    for name in prebake.__all__:
        assert hasattr(prebake, name), name
    assert sorted(prebake.steps.__all__) == sorted([
        "BandPass", "CenterCrop", "CropOrPad", "FgBgIndices", "Function", "MonaiTransforms", "Orient", "Pipeline",
        "Resample", "Resize", "SegmentCycles", "ShorterSide", "Spacing", "Stage", "Step", "ToCHW", "ToRGB8", "Window",
        "compile_steps",
    ])
    for name in prebake.steps.__all__:
        assert hasattr(prebake.steps, name), name


def test_open_is_a_torch_dataset_factory():
    import torch.utils.data

    assert issubclass(prebake.Cache, torch.utils.data.Dataset)
    assert prebake.open is prebake.cache.reader.open_cache


def _documents(obj: object, name: str) -> bool:
    """``name`` is described in the docstring of ``obj`` or of a prebake class it inherits from."""
    import inspect
    import re

    owners = [c for c in inspect.getmro(obj) if c.__module__.startswith("prebake")] if inspect.isclass(obj) else [obj]
    docs = "\n".join(inspect.getdoc(o) or "" for o in owners)
    return bool(re.search(rf"``{name}``|``{name}=|^\s*{name}[,:]|, {name}:", docs, re.M))


def test_every_public_class_and_function_documents_its_parameters():
    import inspect

    import prebake.augment as A

    missing = []
    for module in (prebake, A):
        for name in module.__all__:
            obj = getattr(module, name)
            is_error = inspect.isclass(obj) and issubclass(obj, BaseException)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or is_error:
                continue
            sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
            for param, p in sig.parameters.items():
                if param != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and not _documents(obj, param):
                    missing.append(f"{module.__name__}.{name}: {param}")
    assert not missing, missing


def test_docstring_examples_run():
    """Every docstring example in src/prebake runs (a failing one fails here)."""
    import importlib
    import pkgutil

    failed, tried = [], 0
    for info in pkgutil.walk_packages(prebake.__path__, "prebake."):
        if info.name.endswith("__main__"):
            continue
        result = doctest.testmod(importlib.import_module(info.name), optionflags=doctest.ELLIPSIS)
        tried += result.attempted
        if result.failed:
            failed.append(info.name)
    assert tried >= 5 and not failed, failed


def test_import_and_the_light_commands_do_not_import_torch(tmp_path):
    """Members load on first use: prebake, its CLI parser and ls/info/verify/clear never need torch (nor PyAV,
    nor ray)."""
    import numpy as np

    prebake.write_arrays(tmp_path / "c", {"x": np.arange(3)})
    code = (
        "import sys, prebake, prebake.cli, prebake.cache.verify, prebake.cache.inventory\n"
        "from prebake.cli import main\n"
        f"for argv in (['ls', {str(tmp_path)!r}], ['info', {str(tmp_path / 'c')!r}], "
        f"['verify', {str(tmp_path / 'c')!r}], ['--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n"
        "assert 'av' not in sys.modules  # PyAV loads when a video is read\n"
        "assert 'ray' not in sys.modules\n"
        "prebake.Loader  # touching a member that needs torch imports it\n"
        "assert 'torch' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_public_name_resolves_in_a_fresh_process():
    code = "import prebake\nfor n in prebake.__all__:\n    getattr(prebake, n)\nprint(sorted(dir(prebake))[:1])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
