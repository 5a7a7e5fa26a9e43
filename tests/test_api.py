"""The public API is deliberate: this test lists it, so a change to it is a visible decision."""

from __future__ import annotations

import doctest

import prebake
import prebake.bake.memory


def test_public_names():
    assert sorted(prebake.__all__) == sorted([
        "BadItemError", "BuildLockedError", "BuildOptions", "BuildReport", "Cache", "CacheChangedError",
        "CacheCorruptError", "CacheNotFoundError", "DiskFullError", "FormatError", "Loader", "PrebakeError",
        "Ragged", "SamplingError", "Source", "SourceError", "SourceOptions", "StrictModeError",
        "UnsafePickleError", "VerifyReport", "Watch", "WatchReport", "WorkerDiedError", "__version__", "augment",
        "build", "open", "verify", "watch", "write_arrays",
    ])
    for name in prebake.__all__:
        assert hasattr(prebake, name), name


def test_open_is_a_torch_dataset_factory():
    import torch.utils.data

    assert issubclass(prebake.Cache, torch.utils.data.Dataset)
    assert prebake.open is prebake.cache.reader.open_cache


def test_docstring_examples_run():
    assert doctest.testmod(prebake.bake.memory).failed == 0
