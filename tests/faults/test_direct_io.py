"""Spill shards and rewritten columns go past the page cache (bake/direct.py): exact bytes at every size, in forked
workers that share nothing, under a file size limit, and the same cache with it as without. Random trials:
benchmarks/trials/direct_io.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import prebake
from benchmarks.trials.direct_io import trial_direct_io, write_file
from prebake.bake import direct
from prebake.bake.direct import BLOCK, DirectReader

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


@needs_fork
def test_direct_io_trials(tmp_path):
    row = trial_direct_io(tmp_path, trials=12, seed=os.getpid() % 1000)
    assert row.failures == 0, row.examples


@needs_fork
def test_buffers_are_not_shared_with_forked_writers(tmp_path):
    """A buffer the parent used before forking is each child's own copy (an anonymous map is shared by default:
    two workers spilling at once wrote into one buffer, and real medical files came back with other rows' values)."""
    write_file(tmp_path / "warm", [b"w" * (BLOCK + 7)], True)
    rng = np.random.default_rng(0)
    mine = [rng.integers(0, 256, 3 * BLOCK + 5, dtype=np.uint8).tobytes() for _ in range(2)]
    pids = []
    for j, m in enumerate(mine):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                write_file(tmp_path / f"c{j}", [m[i:i + 4096] for i in range(0, len(m), 4096)], True)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    assert [(tmp_path / f"c{j}").read_bytes() == m for j, m in enumerate(mine)] == [True, True]


def test_a_read_past_the_end_gives_what_there_is(tmp_path):
    data = bytes(range(256)) * 40  # 10,240 bytes: two blocks and a half of the alignment
    write_file(tmp_path / "f", [data], True)
    r = DirectReader(lambda flags: os.open(tmp_path / "f", flags))
    try:
        out = np.zeros(5000, np.uint8)
        assert r.read_into(out, 8000) == 2240 and out[:2240].tobytes() == data[8000:]
        assert r.read_into(out, 20000) == 0
    finally:
        r.close()


def _photos(root, n=24):
    rng = np.random.default_rng(3)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(20, 300, 2))
        folder = root / f"c{k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_the_same_cache_with_and_without_direct_io(tmp_path, monkeypatch, workers):
    src = _photos(tmp_path / "photos")
    files = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("PREBAKE_DIRECT_IO", mode)
        assert direct.enabled() == (mode == "1" and bool(getattr(os, "O_DIRECT", 0)))
        out = tmp_path / f"out{mode}"
        cache = prebake.build(str(src), out, workers=workers, chunk_rows=4, progress=False)
        assert len(cache) == 24
        files[mode] = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".npy"}
    assert files["0"].keys() == files["1"].keys() and "image.values.npy" in files["1"]
    assert all(files["0"][k] == files["1"][k] for k in files["0"])


@pytest.mark.parametrize("value, on", [("0", False), ("false", False), ("OFF", False), (" no ", False),
                                       ("1", True), ("yes", True), ("", True)])
def test_the_switch_reads_the_usual_spellings(monkeypatch, value, on):
    monkeypatch.setenv("PREBAKE_DIRECT_IO", value)  # before: only "0" was off; "false" left it on
    assert direct.enabled() == (on and bool(getattr(os, "O_DIRECT", 0)))


def test_a_switch_that_is_neither_on_nor_off_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("PREBAKE_DIRECT_IO", "sometimes")
    with pytest.raises(prebake.OptionError, match=r"PREBAKE_DIRECT_IO='sometimes'.*0 .*or 1"):
        prebake.build(str(_photos(tmp_path / "photos", 4)), tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()
