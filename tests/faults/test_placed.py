"""Workers write a photo folder's column straight to its place (bake/placed.py): the commit takes that file, a
kill -9 resumes from it, a damaged one is refused by name. Random mixes: benchmarks/trials/placed.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import prebake
from benchmarks.trials.crash import install_kill, join_forked
from benchmarks.trials.mixed_writes import stored_checksum
from benchmarks.trials.placed import counting_read_backs, trial_placed
from prebake.cache.format import partial_path
from prebake.errors import CacheCorruptError


def _photos(root: Path, n: int = 30, seed: int = 0, grey16: int = -1) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(8, 90, 2))
        (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        if k == grey16:  # 16-bit grey: (1, H, W) uint16, not the 3 x H x W bytes its header suggests
            Image.fromarray(rng.integers(0, 65535, (h, w)).astype(np.uint16)).save(root / f"c{k % 2}" / f"{k}.png")
        else:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"c{k % 2}" / f"{k}.png")
    return root


def _killed_at_commit(src: Path, out: Path, where: str = "entry") -> int:
    """Build ``src`` with 2 workers in a forked process that SIGKILLs itself as the commit begins (``entry``), or
    once the commit took the placed file as the column's and before it marked the rewrite done (``taken``); its
    exit code; ``half``: once half the items are baked."""
    import multiprocessing as mp

    def child() -> None:  # pragma: no cover - runs forked
        os.setsid()
        import prebake.bake.build as build
        from prebake.bake import rewrite

        build._CHECKPOINT_S = 0.0  # every finished chunk journaled
        progress: Any = False
        if where == "entry":
            install_kill("seal:entry")
        elif where == "half":
            progress = install_kill("progress:0.5")
        else:
            take = rewrite.take_stream
            rewrite.take_stream = lambda *a: [take(*a), os.kill(os.getpid(), signal.SIGKILL)][0]
        prebake.build(str(src), out, workers=2, chunk_rows=4, progress=progress)

    p = mp.get_context("fork").Process(target=child)
    p.start()
    return join_forked(p)


def _same_as_pillow(cache: prebake.Cache, src: Path) -> None:
    from PIL import Image, ImageOps

    for i, key in enumerate(cache.source_keys or ()):
        im = ImageOps.exif_transpose(Image.open(src / key))
        want = np.asarray(im)[None] if im.mode.startswith("I;16") else np.asarray(im.convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(cache[i]["image"], want), key


def test_photos_turned_by_their_exif_are_placed_turned(tmp_path: Path) -> None:
    from PIL import Image

    src = _photos(tmp_path / "photos", n=20, seed=6)
    rng = np.random.default_rng(6)
    for k in (3, 4, 11):  # stored 30 x 50, shown 50 x 30: the header's count, another shape
        exif = Image.Exif()
        exif[0x0112] = 6 if k != 4 else 8
        photo = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
        (src / f"c{k % 2}" / f"{k}.png").unlink()
        photo.save(src / f"c{k % 2}" / f"{k}.jpg", exif=exif, quality=95)
    with counting_read_backs() as reads:
        cache = prebake.build(str(src), tmp_path / "out", workers=2, chunk_rows=3, progress=False)
    assert not reads and len(cache) == 20 and prebake.verify(tmp_path / "out").ok  # placed, taken as is
    assert cache[[str(k) for k in cache.source_keys or ()].index("c1/3.jpg")]["image"].shape == (3, 50, 30)
    _same_as_pillow(cache, src)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked build")
def test_the_workers_write_the_column_where_it_goes_and_the_commit_takes_it(tmp_path: Path) -> None:
    src = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    assert _killed_at_commit(src, out) == -signal.SIGKILL  # every chunk baked, nothing committed
    shards = partial_path(out) / "_shards"
    names = sorted(p.name for p in shards.iterdir())
    assert "image.placed.bin" in names and not [n for n in names if n.endswith(".spill.bin")]  # nothing spilled
    placed = (shards / "image.placed.bin").read_bytes()
    prebake.build(str(src), out, workers=2, chunk_rows=4, progress=False)  # resumed: items read from the placed file
    assert (out / "image.values.npy").read_bytes() == placed  # the file the workers wrote, header and all
    cache = prebake.open(out)
    assert len(cache) == 30 and prebake.verify(out).ok
    _same_as_pillow(cache, src)


def test_a_fresh_build_takes_the_placed_file_without_reading_it_back(tmp_path: Path) -> None:
    src = _photos(tmp_path / "photos", seed=1)
    with counting_read_backs() as reads:
        cache = prebake.build(str(src), tmp_path / "out", workers=2, chunk_rows=3, progress=False)
    assert not reads and prebake.verify(tmp_path / "out").ok
    meta = cache.manifest["columns"]["image"]["files"]["image.values.npy"]
    assert meta["span_rows"] == 3  # hashed by the workers as they wrote, by spans of a chunk's rows
    assert meta["xxh3_64"] == stored_checksum(tmp_path / "out", cache.manifest["columns"]["image"], "image.values.npy")
    assert not [p for p in (tmp_path / "out").rglob("*") if ".placed." in p.name]
    _same_as_pillow(cache, src)


@pytest.mark.parametrize("direct", ["1", "0"])
def test_an_item_the_guess_missed_is_spilled_and_the_column_written_in_order(tmp_path, monkeypatch, direct) -> None:
    monkeypatch.setenv("PREBAKE_DIRECT_IO", direct)
    src = _photos(tmp_path / "photos", n=24, seed=2, grey16=9)
    cache = prebake.build(str(src), tmp_path / "out", workers=2, chunk_rows=5, progress=False)
    assert len(cache) == 24 and cache.manifest["columns"]["image"]["dtype"] == "<u2"
    assert prebake.verify(tmp_path / "out").ok
    _same_as_pillow(cache, src)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked build")
def test_a_commit_killed_after_taking_the_placed_file_resumes_from_it(tmp_path: Path) -> None:
    src = _photos(tmp_path / "photos", seed=4)
    out = tmp_path / "out"
    assert _killed_at_commit(src, out, "taken") == -signal.SIGKILL  # the column taken, its rewrite not marked done
    cache = prebake.build(str(src), out, workers=2, chunk_rows=4, progress=False)  # before: CacheCorruptError,
    assert len(cache) == 30 and prebake.verify(out).ok  # "image.placed.bin is missing"
    _same_as_pillow(cache, src)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked build")
@pytest.mark.parametrize("damage", ["cut", "gone", "table garbage", "table short", "table decreasing",
                                    "table float", "table gone"])
def test_a_damaged_placed_file_is_refused_by_name(tmp_path: Path, damage: str) -> None:
    src = _photos(tmp_path / "photos", seed=3)
    out = tmp_path / "out"
    assert _killed_at_commit(src, out) == -signal.SIGKILL
    placed = partial_path(out) / "_shards" / "image.placed.bin"
    table = placed.with_suffix(".npy")
    offsets = np.load(table)
    if damage == "cut":
        os.truncate(placed, placed.stat().st_size // 2)
    elif damage == "gone":
        placed.unlink()
    elif damage == "table garbage":
        table.write_bytes(b"\x93NUMPY not a table")
    elif damage == "table short":
        np.save(table, offsets[:-3])
    elif damage == "table decreasing":  # rows whose bytes overlap: the workers would write one over another
        offsets[5] = offsets[7]
        np.save(table, offsets)
    elif damage == "table float":
        np.save(table, offsets.astype(np.float64))
    else:
        table.unlink()
    name = "placed.bin" if damage in ("cut", "gone") else "placed.npy"
    with pytest.raises(CacheCorruptError, match=rf"image\.{name.replace('.', '[.]')}.*prebake clear"):
        prebake.build(str(src), out, workers=2, chunk_rows=4, progress=False)


def test_random_mixes_placed_by_guess_are_exact(tmp_path: Path) -> None:
    row = trial_placed(tmp_path, trials=10, seed=os.getpid() % 1000)
    assert row.failures == 0, row.examples


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked build")
def test_a_layout_that_lies_stops_the_resumed_workers_by_name(tmp_path: Path) -> None:
    src = _photos(tmp_path / "photos", seed=5)
    out = tmp_path / "out"
    assert _killed_at_commit(src, out, "half") == -signal.SIGKILL  # half the chunks journaled, half to bake
    table = partial_path(out) / "_shards" / "image.placed.npy"
    offsets = np.load(table)
    offsets[-5] = offsets[-9]  # the last rows' bytes would overlap
    np.save(table, offsets)
    with pytest.raises(CacheCorruptError, match=r"image[.]placed[.]npy is not a layout of 30 rows.*prebake clear"):
        prebake.build(str(src), out, workers=2, chunk_rows=4, progress=False)
