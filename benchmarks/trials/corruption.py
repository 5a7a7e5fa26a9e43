"""Damaged caches: single-byte flips of data files and of every manifest byte, truncations.

A damaged cache must be caught: ``prebake verify`` reports a problem, ``prebake.open``
refuses what it checks at open (sizes, .npy headers, the manifest), and nothing raises an
exception that is not a :class:`prebake.PrebakeError`.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np

import prebake
from prebake.cache.format import ITEM_IDS, MANIFEST, committed_files
from prebake.synthetic import write_image_folder

from . import Row


def sample_caches(workdir: Path) -> list[Path]:
    """Three small committed caches that use every part of the format: an image folder with a
    skipped item (classes, item ids, label histogram), arrays with a ragged float column, and photos
    of many sizes that the workers placed, whose values file is checksummed by spans (cache/spans.py)."""
    folder, arrays, placed = workdir / "cache-folder", workdir / "cache-arrays", workdir / "cache-placed"
    if not (placed / MANIFEST).exists():
        from PIL import Image

        rng = np.random.default_rng(1)
        src = workdir / "src-placed"
        for k in range(9):
            (src / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
            h, w = (int(v) for v in rng.integers(3, 9, 2))
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / f"c{k % 2}" / f"{k}.png")
        made = prebake.build(src, placed, workers=0, chunk_rows=2)
        assert made.manifest["columns"]["image"]["files"]["image.values.npy"].get("span_rows") == 2
    if not (folder / MANIFEST).exists():
        src = write_image_folder(workdir / "src-folder", classes=("cat", "dog"), per_class=5, size=(12, 10))
        (src / "dog" / "zz_bad.png").write_bytes(b"not a png")
        prebake.build(src, folder, workers=0)
    if not (arrays / MANIFEST).exists():
        rng = np.random.default_rng(0)
        prebake.write_arrays(arrays, {
            "x": rng.standard_normal((9, 3)).astype(np.float32),
            "label": np.arange(9) % 3,
            "sig": [rng.integers(-100, 100, (k % 4, 2)).astype(np.int16) for k in range(9)],
        }, classes=["a", "b", "c"])
    return [folder, arrays, placed]


def judge(path: Path) -> tuple[bool, bool, str | None]:
    """``(verify ok, open and read ok, untyped error or None)`` for the cache at ``path``."""
    try:
        verified = prebake.verify(path).ok
    except Exception as e:  # noqa: BLE001 - the point is to catch any untyped exception
        return False, False, f"verify raised {type(e).__name__}: {e}"
    try:
        cache = prebake.open(path)
        n = len(cache)
        if n:
            cache[0], cache[n - 1], cache[[n - 1, 0]]
        cache.classes, cache.columns
    except prebake.PrebakeError:
        return verified, False, None
    except Exception as e:  # noqa: BLE001
        return verified, True, f"open/read raised {type(e).__name__}: {e}"
    return verified, True, None


def manifest_flips(workdir: Path, stride: int = 1, masks: tuple[int, ...] = (0x01,)) -> Row:
    """Flip every ``stride``-th byte of each sample cache's manifest with each mask.

    A flip that changes the parsed content (or breaks the JSON) must fail verify and be
    refused at open. A flip that leaves the content equal (none were found) may pass.
    """
    row = Row("single-byte flips of every manifest byte: verify fails, open refuses")
    for cache in sample_caches(workdir):
        path = cache / MANIFEST
        original = path.read_bytes()
        content = json.loads(original)
        try:
            for pos in range(0, len(original), stride):
                for mask in masks:
                    data = bytearray(original)
                    data[pos] ^= mask
                    path.write_bytes(bytes(data))
                    changed = _parsed(bytes(data)) != content
                    verified, opened, untyped = judge(cache)
                    where = f"{cache.name} manifest byte {pos} ^ {mask:#04x}"
                    if untyped:
                        row.fail(f"{where}: {untyped}")
                    elif changed and (verified or opened):
                        row.fail(f"{where}: content changed, but verify ok={verified}, open ok={opened}")
                    else:
                        row.ok()
        finally:
            path.write_bytes(original)
    return row


def _parsed(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def data_flips(workdir: Path, trials: int, seed: int = 0) -> Row:
    """Flip one random bit of one random byte of a random data file (headers included)."""
    row = Row("single-byte flips of data files (.npy headers and data): verify fails")
    rng = random.Random(seed)
    caches = sample_caches(workdir)
    for _ in range(trials):
        cache = rng.choice(caches)
        name = rng.choice(sorted(committed_files(prebake.open(cache).manifest)))
        path = cache / name
        original = path.read_bytes()
        pos, mask = rng.randrange(len(original)), 1 << rng.randrange(8)
        data = bytearray(original)
        data[pos] ^= mask
        try:
            path.write_bytes(bytes(data))
            verified, opened, untyped = judge(cache)
        finally:
            path.write_bytes(original)
        header = pos < _header_end(original) and name != ITEM_IDS  # the reader maps every column, not the ids
        where = f"{cache.name}/{name} byte {pos} ^ {mask:#04x}{' (header)' if header else ''}"
        if untyped:
            row.fail(f"{where}: {untyped}")
        elif verified:
            row.fail(f"{where}: verify passed")
        elif header and opened and _layout(original) != _layout(bytes(data)):
            row.fail(f"{where}: a header that reads differently was opened")
        else:
            row.ok()
    return row


def _header_end(npy: bytes) -> int:
    major = npy[6]
    return (10 + int.from_bytes(npy[8:10], "little")) if major == 1 else (12 + int.from_bytes(npy[8:12], "little"))


def _layout(npy: bytes) -> object:
    """What a header means (shape, dtype, data offset): '|i8' and '<i8' mean the same on this machine."""
    f = io.BytesIO(npy)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            major, minor = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
    except Exception:  # noqa: BLE001 - an unreadable header means "different" here
        return None
    return (major, minor), shape, fortran, dtype, f.tell()


def truncations(workdir: Path, trials: int, seed: int = 0) -> Row:
    """Cut a random file (a column, the item ids or the manifest) at a random length."""
    row = Row("truncations of any file: verify fails, open refuses")
    rng = random.Random(seed)
    caches = sample_caches(workdir)
    for _ in range(trials):
        cache = rng.choice(caches)
        name = rng.choice([MANIFEST, *sorted(committed_files(prebake.open(cache).manifest))])
        path = cache / name
        original = path.read_bytes()
        size = rng.randrange(len(original))
        try:
            os.truncate(path, size)
            verified, opened, untyped = judge(cache)
        finally:
            path.write_bytes(original)
        where = f"{cache.name}/{name} cut to {size} of {len(original)} bytes"
        if untyped:
            row.fail(f"{where}: {untyped}")
        elif name == MANIFEST and _parsed(original[:size]) == json.loads(original):
            row.ok()  # only the final newline was cut: the same manifest
        else:
            row.check(not verified and not opened, f"{where}: verify ok={verified}, open ok={opened}")
    return row


def fresh_copy(cache: Path, to: Path) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(cache, to)
    return to
