"""The public API is deliberate: this test lists it, so a change to it is a visible decision."""

from __future__ import annotations

import doctest

import pytest

import prebake
import prebake.bake.memory
import prebake.cache.tuples
import prebake.load.signals
import prebake.load.views


def test_public_names():
    assert sorted(prebake.__all__) == sorted([
        "BadItemError", "BuildLockedError", "BuildOptions", "BuildReport", "Cache", "CacheCorruptError",
        "CacheNotFoundError", "Elements", "FormatError", "Loader", "PrebakeError", "Ragged", "ResumeError", "Source",
        "SourceError", "SourceOptions", "StrictModeError", "UnsafePickleError", "VerifyReport", "ViewError", "Watch",
        "WatchReport", "Windows", "__version__", "augment", "build", "crop_or_pad", "open", "verify", "watch",
        "write_arrays",
    ])
    for name in prebake.__all__:
        assert hasattr(prebake, name), name


def test_open_is_a_torch_dataset_factory():
    import torch.utils.data

    assert issubclass(prebake.Cache, torch.utils.data.Dataset)
    assert prebake.open is prebake.cache.reader.open_cache


@pytest.mark.parametrize("module", [prebake.bake.memory, prebake.cache.tuples, prebake.load.views, prebake.load.signals],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted and result.failed == 0
