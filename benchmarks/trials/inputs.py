"""Bad inputs of many kinds, across images, CSV tables, WAV files, arrays and datasets.

Each bad item must be skipped with its own reason, every other row must be
byte-identical to a build of the same source without the bad items, and ``strict=True``
must stop at the first bad item with a StrictModeError that names it, committing nothing.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import prebake
from prebake.synthetic import write_audio_folder, write_bad_images, write_csv_table, write_image_folder

from . import Row


def big_png(path: Path, width: int, height: int) -> Path:
    """A valid grayscale PNG of ``width`` x ``height`` black pixels, written without holding it in memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(1), b"\x00" * (width + 1)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def jpeg_cut_early(path: Path) -> Path:
    """A JPEG cut where Pillow says only "Truncated File Read"."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[:400])
    return path


def _images(d: Path) -> tuple[Path, Path, dict[str, str], dict[str, Any]]:
    clean = write_image_folder(d / "clean", classes=("a", "b"), per_class=3, size=(20, 20))
    dirty = d / "dirty"
    shutil.copytree(clean, dirty)
    bad = write_bad_images(dirty / "a")
    jpeg_cut_early(dirty / "a" / "cut_early.jpg")
    bad["cut_early.jpg"] = "truncated image file: the JPEG data ends"
    Image.fromarray(np.zeros((120, 120, 3), np.uint8)).save(dirty / "b" / "huge.png")
    bad["huge.png"] = "over the limit of 10,000"
    os.symlink(dirty / "a" / "gone.png", dirty / "b" / "missing.png")
    bad["missing.png"] = "file not found"
    return clean, dirty, bad, {"steps": [prebake.steps.Resize(16)],
                               "source_options": prebake.SourceOptions(max_pixels=10_000)}


def _csv(d: Path) -> tuple[Path, Path, dict[str, str], dict[str, Any]]:
    clean = write_csv_table(d / "clean", n=8)
    dirty = write_csv_table(d / "dirty", n=8, bad_rows=True)  # missing file, empty path, one field short
    with open(dirty, "ab") as f:
        f.write(b"scans/0001.png,benign,extra\n")
        f.write(b"scans/0002.png,\n")
        f.write(b"scans,benign\n")
        f.write(b"scans/0003.png,ben\xffign\n")
    bad = {"row 10": "file not found", "row 11": "empty path", "row 12": "has 1 fields",
           "row 13": "has 3 fields", "row 14": "empty label", "row 15": "is a directory",
           "row 16": "not valid UTF-8 (byte 0xff"}
    return clean, dirty, bad, {}


def _wav(d: Path) -> tuple[Path, Path, dict[str, str], dict[str, Any]]:
    clean = write_audio_folder(d / "clean", per_class=2, seconds=(0.2, 0.4))
    dirty = d / "dirty"
    shutil.copytree(clean, dirty)
    good = sorted((dirty / "normal").glob("*.wav"))[0].read_bytes()
    (dirty / "normal" / "cut.wav").write_bytes(good[: len(good) // 2])
    (dirty / "normal" / "noise.wav").write_bytes(b"RIFX" + os.urandom(60))
    (dirty / "normal" / "empty.wav").write_bytes(b"")
    fmt = struct.pack("<HHIIHH", 3, 1, 2000, 8000, 4, 32)  # IEEE float, readable, but with a NaN sample
    data = np.r_[np.zeros(99, np.float32), np.float32("nan")].tobytes()
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (dirty / "normal" / "nan.wav").write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    bad = {"cut.wav": "truncated WAV", "noise.wav": "not a readable audio file", "empty.wav": "empty file",
           "nan.wav": "contains NaN or Inf samples"}
    return clean, dirty, bad, {}


def _arrays(d: Path) -> tuple[Path, Path, dict[str, str], dict[str, Any]]:
    rng = np.random.default_rng(0)
    x = rng.random((6, 2, 4, 4), dtype=np.float32)
    (d / "clean").mkdir(parents=True)
    (d / "dirty").mkdir()
    np.savez(d / "clean" / "data.npz", images=x, labels=np.arange(6) % 2)
    x_bad = np.concatenate([x, np.full((1, 2, 4, 4), np.nan, np.float32), np.full((1, 2, 4, 4), np.inf, np.float32)])
    np.savez(d / "dirty" / "data.npz", images=x_bad, labels=np.arange(8) % 2)
    return d / "clean" / "data.npz", d / "dirty" / "data.npz", {"data.npz[6]": "NaN", "data.npz[7]": "Inf"}, {}


class _Items:
    """A dataset whose items 3..8 are each bad in a different way; the rest are clean."""

    def __init__(self, bad: bool):
        self.bad = bad

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> Any:
        x = np.full((2, 4), i, dtype=np.float32)
        if not self.bad or i not in range(3, 10):
            return {"x": x, "label": i}
        return {3: lambda: {"x": np.full((2, 4), None, dtype=object), "label": i},  # another shape is no fault
                4: lambda: {"x": np.where(np.eye(2, 4) > 0, np.nan, x).astype(np.float32), "label": i},
                5: lambda: _raise(OSError(f"cannot read record {i}")),
                6: lambda: {"x": x, "label": i, "refuse": True},  # (other keys than the items' stop the build)
                7: lambda: {"x": np.zeros((2, 4), [("a", "<f4")]), "label": i},  # nor another dtype
                8: lambda: {"x": x, "label": 2**70},  # no integer dtype holds it: a Python object
                9: lambda: {"x": x, "label": i, "drop": True}}[i]()


def _raise(e: Exception) -> Any:
    raise e


def _transform(item: dict[str, Any]) -> Any:
    if item.pop("drop", False):
        return "not a dict"
    if item.pop("refuse", False):
        raise ValueError("the transform refused it")
    return item


def _datasets(d: Path) -> tuple[Any, Any, dict[str, str], dict[str, Any]]:
    bad = {"3": "which holds Python objects", "4": "NaN", "5": "OSError: cannot read record 5",
           "6": "ValueError: the transform refused it", "7": "has structured dtype", "8": "column 'label'",
           "9": "returned str, expected a dict"}
    return _Items(False), _Items(True), bad, {"steps": [_transform]}


FAMILIES: dict[str, Callable[[Path], tuple[Any, Any, dict[str, str], dict[str, Any]]]] = {
    "images": _images, "csv": _csv, "wav": _wav, "arrays": _arrays, "datasets": _datasets,
}


def bad_inputs(workdir: Path) -> Row:
    row = Row("bad inputs (images, CSV, WAV, arrays, datasets): a reason each, other rows identical, --strict fails")
    kinds = 0
    for family, make in FAMILIES.items():
        d = workdir / f"bad-{family}"
        shutil.rmtree(d, ignore_errors=True)
        clean, dirty, bad, options = make(d)
        kinds += len(bad)
        try:
            good = prebake.build(clean, d / "c-clean", workers=0, **options)
            got = prebake.build(dirty, d / "c-dirty", workers=2, chunk_rows=3, **options)
        except prebake.PrebakeError as e:
            row.fail(f"{family}: the build failed: {e}")
            continue
        reasons = {s["key"]: s["reason"] for s in got.manifest["skipped"]}
        for name, want in bad.items():
            key = next((k for k in reasons if k == name or k.endswith("/" + name) or k.startswith(name + ":")), None)
            row.check(key is not None and want in reasons[key], f"{family} {name}: want {want!r}, got "
                                                                 f"{reasons.get(key) if key else sorted(reasons)}")
        row.check(len(reasons) == len(bad), f"{family}: {len(reasons)} skipped, expected {len(bad)}: {reasons}")
        row.check(_same_rows(clean, good, dirty, got), f"{family}: the good rows differ from a clean build")
        row.check(_strict_fails(dirty, d / "c-strict", options), f"{family}: strict did not fail clearly")
    row.notes["kinds"] = kinds
    return row


def _same_rows(clean: Any, a: prebake.Cache, dirty: Any, b: prebake.Cache) -> bool:
    """Every row of ``b`` equals, byte for byte, the row of ``a`` with the same source key."""
    rows_a, rows_b = _rows_by_key(clean, a), _rows_by_key(dirty, b)
    if not rows_b or a.columns != b.columns:
        return False
    return all(k in rows_a and all(np.array_equal(rows_a[k][c], v[c]) and rows_a[k][c].dtype == v[c].dtype
                                   for c in a.columns) for k, v in rows_b.items())


def _rows_by_key(source: Any, cache: prebake.Cache) -> dict[str, dict[str, Any]]:
    from prebake.bake.build import resolve_sources

    skipped = {s["index"] for s in cache.manifest["skipped"]}
    keys = [k for i, k in enumerate(resolve_sources(source)[""].keys()) if i not in skipped]
    key_of = {k.split(": ", 1)[-1] if isinstance(source, Path) and source.suffix == ".csv" else k: j
              for j, k in enumerate(keys)}
    return {k: cache[j] for k, j in key_of.items()}


def _strict_fails(dirty: Any, out: Path, options: dict[str, Any]) -> bool:
    try:
        prebake.build(dirty, out, workers=0, strict=True, **options)
    except prebake.StrictModeError as e:
        try:
            prebake.open(out)
        except prebake.CacheNotFoundError:
            return "`strict=True` stops at the first bad item" in str(e)  # the Python spelling of --strict
    return False
