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


def _photo_folder(root: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, (h, w) in enumerate(sizes):
        (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"c{k % 2}" / f"{k}.png")
    return root


def _checked(out: Path) -> None:
    """The manifest's checksum of every file is the file's own (what a stream that checksummed itself must give)."""
    from benchmarks.trials.mixed_writes import stored_checksum
    from prebake.cache.verify import verify

    manifest = prebake.open(out).manifest
    meta = manifest["columns"]["image"]["files"]["image.values.npy"]
    assert meta["xxh3_64"] == stored_checksum(out, manifest["columns"]["image"], "image.values.npy")
    assert verify(out).ok


@pytest.mark.parametrize("broken", [False, True])
def test_a_photo_folder_is_checksummed_as_it_is_written_and_a_wrong_guess_costs_nothing(tmp_path, monkeypatch,
                                                                                      broken):
    sizes = [(int(h), int(w)) for h, w in np.random.default_rng(1).integers(20, 200, (40, 2))]
    src = _photo_folder(tmp_path / "photos", sizes)
    if broken:  # its header says 20 x 30; its pixels are cut off: the guess counts it, the build skips it
        victim = src / "c1" / "1.png"
        victim.write_bytes(victim.read_bytes()[:80])
    from prebake.bake import rewrite

    reads = []
    read = rewrite.read_checksum
    monkeypatch.setattr(rewrite, "read_checksum", lambda f: reads.append(f) or read(f))
    out = tmp_path / "out"
    cache = prebake.build(str(src), out, workers=2, chunk_rows=4, progress=False)
    assert len(cache) == 40 - broken
    assert len(reads) == broken  # the guess held: no read-back; it did not: read back, as before
    _checked(out)
    from PIL import Image

    keys = list(cache.source_keys)
    assert len(keys) == 40 - broken and ("c1/1.png" in keys) != broken
    for i, key in enumerate(keys):
        want = np.asarray(Image.open(src / key).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(cache[i]["image"], want), key
