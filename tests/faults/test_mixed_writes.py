"""Mixed items reach the disk once per place (bake/spill.py, bake/rewrite.py, bake/streamed.py): a column a
chunk spilled is spilled whole by the chunks after it, a spill shard cut short is refused by name, and the
commit's streamed values files and checksums are exact. Random mixes: trials/mixed_writes.py."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import prebake
from benchmarks.trials.mixed_writes import mixed_writes
from benchmarks.trials.schema import Items
from prebake.cache.format import partial_path
from prebake.errors import CacheCorruptError, TooManySkippedError


def _stopped(tmp_path, items):
    """A build of ``items`` in chunks of 2, stopped with its chunks journaled (a planted bad item, max_skipped=0)."""
    with pytest.raises(TooManySkippedError):
        prebake.build(Items(items, np.arange(len(items)), "stopped"), tmp_path / "c", workers=0, chunk_rows=2,
                      max_skipped=0, progress=False)
    return partial_path(tmp_path / "c")


def test_after_a_chunk_spills_a_column_later_chunks_spill_all_of_it(tmp_path):
    sizes = [(4, 4), (5, 3), (4, 4), (4, 4), (4, 4), (4, 4)]  # item 1 spills; items 2.. fit the first's shape
    items = [{"x": np.full((2, *s), k, np.uint8), "label": k} for k, s in enumerate(sizes)] + [None]
    part = _stopped(tmp_path, items)
    spilled = sorted(int(p.name.split(".")[1]) for p in (part / "_shards").glob("x.*.spill.bin"))
    assert spilled == [0, 1, 2]  # before: [0] only, rows 2..5 written into the provisional rows, then rewritten
    cache = prebake.build(Items(items, np.arange(len(items)), "stopped"), tmp_path / "c", workers=0, chunk_rows=2,
                          progress=False)
    assert [cache[i]["x"].shape[1:] for i in range(6)] == sizes and cache[3]["x"][0, 0, 0] == 3


def test_a_spill_shard_cut_short_is_refused_by_name(tmp_path):
    items = [{"x": np.full((2, 3 + k % 2, 4), k, np.uint8), "label": k} for k in range(6)] + [None]
    part = _stopped(tmp_path, items)
    shard = part / "_shards" / "x.000000.spill.bin"
    os.truncate(shard, shard.stat().st_size - 5)
    with pytest.raises(CacheCorruptError, match=r"x\.000000\.spill\.bin.*prebake clear"):  # before: a ValueError
        prebake.build(Items(items, np.arange(len(items)), "stopped"), tmp_path / "c", workers=0, chunk_rows=2,
                      progress=False)
    assert not [t for t in threading.enumerate() if t.name == "prebake-read-ahead"]  # the commit's reader ended too


def test_random_mixed_builds_write_exact_bytes(tmp_path):
    row = mixed_writes(tmp_path, trials=8, seed=os.getpid() % 1000)
    assert row.failures == 0, row.examples
