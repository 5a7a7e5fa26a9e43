"""prebake's C loops (src/prebake/native.py) against the ways they stand in for, and against hostile arguments.

- planes: random RGB and RGBA images of odd sizes, read from Pillow's memory (its Arrow export) and from a copy of
  its bytes, against Pillow's own band packer, band by band;
- byte stats: random, constant and extreme uint8 arrays at every alignment, against numpy's min, max and sum;
- hostile calls to the extension: wrong sizes (pixel counts whose byte counts overflow among them), wrong band
  counts, read-only or strided outputs, capsules that are not 4-byte pixels, objects that are no buffer. Each must
  raise ValueError, TypeError or BufferError.

A trial fails on a differing value, on another exception, or on no exception where one is due (a crash ends the
run, which fails it too). Without the extension (no compiler, ``PREBAKE_NATIVE=0``) the row is empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from prebake import native

from . import Row

_REFUSALS = (ValueError, TypeError, BufferError)


def random_image(rng: np.random.Generator, mode: str, largest: int = 300) -> Image.Image:
    h, w = (int(v) for v in rng.integers(1, largest, 2))
    return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)


def bands_of(img: Image.Image) -> np.ndarray:
    """Pillow's band packer, one band at a time: the reference for :func:`native.image_planes`."""
    w, h = img.size
    return np.stack([np.frombuffer(img.tobytes("raw", b), np.uint8).reshape(h, w) for b in img.mode])


def _hostile(rng: np.random.Generator) -> tuple[str, Any]:
    """One bad call to the extension: (what it is, a function making it)."""
    ext = native._native
    img = random_image(rng, "RGB", 40)
    w, h = img.size
    n = w * h
    raw = img.tobytes("raw", "RGBX")
    cases: list[tuple[str, Any]] = [
        ("out one byte short", lambda: ext.planes(raw, np.empty(3 * n - 1, np.uint8), n, 3)),
        ("in one byte short", lambda: ext.planes(raw[:-1], np.empty(3 * n, np.uint8), n, 3)),
        ("pixels negative", lambda: ext.planes(raw, np.empty(0, np.uint8), -n, 3)),
        ("pixels whose byte count wraps to 0", lambda: ext.planes(b"", np.empty(0, np.uint8), 2**62, 4)),
        ("pixels whose byte count wraps", lambda: ext.planes(raw, np.empty(3 * n, np.uint8), 2**62 + n, 3)),
        ("pixels over the input", lambda: ext.planes(raw, np.empty(3 * (n + 16), np.uint8), n + 16, 3)),
        ("5 bands", lambda: ext.planes(raw, np.empty(5 * n, np.uint8), n, 5)),
        ("0 bands", lambda: ext.planes(raw, np.empty(0, np.uint8), n, 0)),
        ("read-only out", lambda: ext.planes(raw, bytes(3 * n), n, 3)),
        ("strided out", lambda: ext.planes(raw, np.empty(6 * n, np.uint8)[::2], n, 3)),
        ("an int for the pixels", lambda: ext.planes(12345, np.empty(3 * n, np.uint8), n, 3)),
        ("a capsule of grey pixels", lambda: ext.planes(img.convert("L").__arrow_c_array__()[1],
                                                          np.empty(3 * n, np.uint8), n, 3)),
        ("an Arrow capsule of another size", lambda: ext.planes(img.__arrow_c_array__()[1],
                                                                 np.empty(3 * (n + 1), np.uint8), n + 1, 3)),
        ("the schema capsule", lambda: ext.planes(img.__arrow_c_array__()[0], np.empty(3 * n, np.uint8), n, 3)),
        ("stats of nothing", lambda: ext.u8_stats(b"")),
        ("stats of an int", lambda: ext.u8_stats(7)),
        ("stats of a strided array", lambda: ext.u8_stats(np.zeros(64, np.uint8)[::2])),
    ]
    if not hasattr(img, "__arrow_c_array__"):  # Pillow before 11.2.1
        cases = [c for c in cases if "capsule" not in c[0]]
    return cases[int(rng.integers(len(cases)))]


def native_loops(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    row = Row("prebake's C loops: planes and byte stats equal Pillow's and numpy's; hostile calls refused")
    if not native.NATIVE:
        row.notes["skipped"] = "prebake was built without its C extension (or PREBAKE_NATIVE=0)"
        return row
    rng = np.random.default_rng(seed)
    for k in range(trials):
        kind = k % 3
        if kind == 0:
            mode = ("RGB", "RGBA")[int(rng.integers(2))]
            img = random_image(rng, mode)
            want = bands_of(img)
            got = native.image_planes(img)
            src = img.tobytes("raw", "RGBX" if mode == "RGB" else "RGBA")
            copied = np.empty_like(want)
            native._native.planes(src, copied, want.shape[1] * want.shape[2], len(mode))
            row.check(got is not None and np.array_equal(got, want) and np.array_equal(copied, want),
                      f"planes of a {mode} image of {img.size} differ from Pillow's bands")
        elif kind == 1:
            n, at = int(rng.integers(1, 5000)), int(rng.integers(0, 16))
            fill = int(rng.integers(3))
            if fill == 0:  # any byte
                buf = rng.integers(0, 256, n + 16, dtype=np.uint8)
            elif fill == 1:  # one value throughout: 0, 255 or another
                buf = np.full(n + 16, (0, 255, int(rng.integers(256)))[int(rng.integers(3))], np.uint8)
            else:  # a narrow range, neither bound reached
                buf = rng.integers(100, 110, n + 16, dtype=np.uint8)
            values = buf[at:at + n]
            want = (int(values.min()), int(values.max()), int(values.sum(dtype=np.uint64)))
            row.check(native.byte_stats(values) == want, f"byte stats of {n} bytes at offset {at} differ from numpy's")
        else:
            what, call = _hostile(rng)
            try:
                call()
                row.fail(f"{what}: no exception")
            except _REFUSALS:
                row.ok()
            except Exception as e:  # noqa: BLE001 - any other type is the failure being counted
                row.fail(f"{what}: {type(e).__name__}: {e}")
    return row
