"""Overlapping processes: a Cache serves one committed version for its whole life;
concurrent builders commit once."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import prebake
from benchmarks.trials.concurrency import concurrent_builders, reader_during_swap
from prebake.errors import CacheChangedError


def _write(path, v, n):
    return prebake.write_arrays(path, {"x": np.full((n, 3), v, np.int32), "label": np.full(n, v)},
                                classes=[f"v{v}", "other"])


def test_an_open_cache_keeps_its_version_after_a_rebuild(tmp_path):
    path = tmp_path / "c"
    _write(path, 0, 10)
    old = prebake.open(path)  # nothing read yet
    _write(path, 1, 7)  # rebuilt: other data, other size, other manifest
    assert len(old) == 10 and old.classes[0] == "v0"
    assert old[9]["x"].tolist() == [0, 0, 0]
    assert old.targets.tolist() == [0] * 10
    assert np.asarray(old.column("x")).sum() == 0
    assert prebake.open(path)[0]["x"].tolist() == [1, 1, 1]


def test_a_pickled_cache_refuses_a_rebuilt_directory(tmp_path):
    path = tmp_path / "c"
    _write(path, 0, 10)
    blob = pickle.dumps(prebake.open(path))  # what a spawn DataLoader worker receives
    assert pickle.loads(blob)[3]["x"].tolist() == [0, 0, 0]  # same version: fine
    _write(path, 1, 10)
    with pytest.raises(CacheChangedError, match="rebuilt after this Cache was opened.*prebake.open"):
        pickle.loads(blob)


def test_a_reader_during_rebuilds_never_sees_a_mixed_version(tmp_path):
    row = reader_during_swap(tmp_path, rounds=40)
    assert row.trials >= 20 and row.failures == 0, row.examples


def test_concurrent_builders_commit_once(tmp_path):
    row = concurrent_builders(tmp_path, rounds=2, builders=3)
    assert row.failures == 0, row.examples
