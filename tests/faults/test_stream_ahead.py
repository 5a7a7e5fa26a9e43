"""The commit does not write a mixed column a second time: the build wrote it ahead (bake/stream.py), and the
commit only adds the header, checks and moves it. Random mixes: benchmarks/trials/stream_ahead.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.crash import assert_same_cache, build_dataset, run_forked, write_dataset
from benchmarks.trials.schema import Items
from benchmarks.trials.stream_ahead import stream_ahead
from prebake.cache.format import partial_path

MIXED = {"PREBAKE_TEST_MIXED": "1"}  # images of two sizes, a ragged column of two dtypes (benchmarks/trials/crash.py)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked build")
def test_the_build_writes_the_mixed_column_before_the_commit(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    spec = write_dataset(tmp_path / "data")
    ref = tmp_path / "ref"
    os.environ.update(MIXED)
    try:
        build_dataset(spec, ref)
    finally:
        del os.environ["PREBAKE_TEST_MIXED"]
    out = tmp_path / "c"
    cfg = {"spec": spec, "out": str(out), "workers": 2, "env": MIXED}
    assert run_forked({**cfg, "kill": "seal:entry"}) == -signal.SIGKILL  # every chunk baked, nothing committed
    values = (ref / "image.values.npy").stat().st_size
    ahead = partial_path(out) / "_shards" / "image.stream.bin"
    assert ahead.exists() and ahead.stat().st_size == values  # before: no such file, the commit wrote it all
    assert run_forked(cfg) == 0  # a resumed build rewrites at commit, from the spill shards
    assert_same_cache(out, ref)
    assert prebake.verify(out).ok and not list(out.rglob("*.stream.bin*"))


def test_a_dtype_promoted_at_commit_is_rewritten_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    items = [{"image": rng.integers(0, 250, (3, 40 + k % 7, 50 + k % 5)).astype("u2" if k % 4 == 3 else "u1"),
              "label": k} for k in range(40)]
    cache = prebake.build(Items(items, np.arange(len(items)), "photos"), tmp_path / "c", workers=2, chunk_rows=4,
                          progress=False)
    assert cache.manifest["columns"]["image"]["dtype"] == "<u2"  # the stream held uint8 and uint16: not taken
    assert all(np.array_equal(np.asarray(cache[i]["image"]), items[i]["image"]) for i in range(len(items)))
    assert prebake.verify(tmp_path / "c").ok and not list((tmp_path / "c").rglob("*.stream.bin*"))


def test_random_mixed_builds_streamed_ahead_are_exact(tmp_path: Path) -> None:
    row = stream_ahead(tmp_path, trials=8, seed=os.getpid() % 1000)
    assert row.failures == 0, row.examples
