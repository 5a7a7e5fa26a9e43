"""prebake's two C loops (``_native.c``), each beside the numpy or Pillow way it stands in for, with the same result.

- :func:`image_planes`: an RGB or RGBA image's channels, first (``ToCHW``), from Pillow's own pixel memory;
- :func:`byte_stats`: ``(min, max, sum)`` of a uint8 array (the per-chunk statistics, cache/stats.py).

A photo build spends most of its time in Pillow's decoder; of the rest, these two loops were the largest part
(benchmarks/realdata.py). The extension is built where a C compiler is at hand (``pip install`` from the source);
where it is not, or with ``PREBAKE_NATIVE=0`` in the environment, prebake does the same work with Pillow and numpy.
:data:`NATIVE` says which.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

_native: Any
try:
    if os.environ.get("PREBAKE_NATIVE", "1").strip() == "0":
        raise ImportError("PREBAKE_NATIVE=0")
    _native = importlib.import_module("prebake._native")
except ImportError:
    _native = None

#: Whether the C loops are in use (False: built without a compiler, or ``PREBAKE_NATIVE=0``).
NATIVE = _native is not None

_PACKED = {"RGB": "RGBX", "RGBA": "RGBA"}  # Pillow stores both 4 bytes a pixel; the raw mode that copies them out


def image_planes(img: Any) -> np.ndarray | None:
    """An RGB or RGBA ``PIL.Image`` as a ``(C, H, W)`` uint8 array, from Pillow's pixel memory in one pass (its
    Arrow export, read in place; a copy of its rows where the image is not in one block); None without the C loops
    or for another mode."""
    raw = _PACKED.get(img.mode)
    if _native is None or raw is None:
        return None
    w, h = img.size
    bands = len(img.mode)
    out = np.empty((bands, h, w), np.uint8)
    if w * h == 0:  # no pixels: nothing to lay out (an empty image has no Arrow buffer)
        return out
    if hasattr(img, "__arrow_c_array__"):  # Pillow 11.2.1 and newer
        try:
            _native.planes(img.__arrow_c_array__()[1], out, w * h, bands)
            return out
        except (ValueError, TypeError, OSError, NotImplementedError):
            pass  # rows in more than one block (an image over Pillow's block size, 16 MB by default), or an export
            # that is not 4 bytes a pixel (the C loop checks its layout): a copy of the rows instead
    _native.planes(img.tobytes("raw", raw), out, w * h, bands)
    return out


def byte_stats(values: np.ndarray) -> tuple[int, int, int] | None:
    """``(min, max, sum)`` of a non-empty uint8 array in one pass; None without the C loops or for other arrays."""
    if _native is None or values.dtype != np.uint8 or values.size == 0 or not values.flags.c_contiguous:
        return None
    lo, hi, total = _native.u8_stats(values)
    return int(lo), int(hi), int(total)
