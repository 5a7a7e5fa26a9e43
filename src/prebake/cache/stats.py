"""Cheap per-column statistics, computed per chunk in the workers and combined at commit.

A chunk's statistics are ``[min, max, sum, count]`` over its good rows. Integer
sums are exact Python ints; float sums are float64 added in chunk order, so a
resumed build reports the same numbers as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..native import byte_stats

_NUMERIC = "biuf"


def chunk_stats(values: np.ndarray, bounds_held: bool = False) -> list[Any] | None:
    """``[min, max, sum, count]`` of all elements, or None for non-numeric or empty data.

    ``bounds_held``: the caller's running ``[min, max]`` of this integer dtype already spans the whole dtype, which
    no value can widen, so the dtype's bounds stand in for this array's (the fold, :func:`add_stats`, is the same):
    only the sum is taken. Photos reach 0 and 255 in their first item: 51 us for a 600 KB photo's statistics against
    69 (benchmarks/realdata.py's photos: 0.07 s of a worker's, against 0.09)."""
    if values.dtype.kind not in _NUMERIC or values.size == 0:
        return None
    fast = byte_stats(values)  # uint8 (photos): min, max and sum in one pass, native.py
    if fast is not None:
        return [0 if bounds_held else fast[0], 255 if bounds_held else fast[1], fast[2], int(values.size)]
    acc: Any = {"f": np.float64, "u": np.uint64}.get(values.dtype.kind, np.int64)
    if bounds_held and values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        return [int(info.min), int(info.max), _py(_sum(values, acc)), int(values.size)]
    return [_py(values.min()), _py(values.max()), _py(_sum(values, acc)), int(values.size)]


def spans_dtype(span: Sequence[int] | None, dtype: np.dtype) -> bool:
    """Whether the integer range ``span`` (``[lo, hi]``) already covers every value of ``dtype``."""
    if span is None or dtype.kind not in "iu":
        return False
    info = np.iinfo(dtype)
    return span[0] <= info.min and span[1] >= info.max


def _sum(values: np.ndarray, acc: Any) -> Any:
    """``values.sum(dtype=acc)``; 8-bit integers first as 256 rows added element by element in 16 bits, which
    cannot overflow (a 600 KB photo: 44 us, against 71 summing each run of 256 and 164 in 64 bits; benchmarks/
    realdata.py's images: each spilled or placed item is summed)."""
    if values.dtype.itemsize != 1 or values.dtype.kind not in "iu" or values.size < 4096:
        return values.sum(dtype=acc)
    flat = values.reshape(-1)
    n = flat.size - flat.size % 256
    rows = flat[:n].reshape(256, -1).sum(axis=0, dtype=np.int16 if values.dtype.kind == "i" else np.uint16)
    return rows.sum(dtype=acc) + flat[n:].sum(dtype=acc)


def add_stats(a: list[Any] | None, b: list[Any]) -> list[Any]:
    """Two ``[min, max, sum, count]`` folded into one (``a`` None: just ``b``)."""
    if a is None:
        return list(b)
    return [min(a[0], b[0]), max(a[1], b[1]), a[2] + b[2], a[3] + b[3]]


def combine_stats(chunks: Sequence[dict[str, list[Any]]]) -> dict[str, dict[str, Any]]:
    """Fold per-chunk stats into ``{column: {min, max, mean}}`` (in chunk order)."""
    acc: dict[str, list[Any]] = {}
    for stats in chunks:
        for name, s in stats.items():
            acc[name] = add_stats(acc.get(name), s)
    return {n: {"min": lo, "max": hi, "mean": total / count} for n, (lo, hi, total, count) in acc.items()}


def label_histogram(labels: np.ndarray, classes: Sequence[str] | None) -> dict[str, int]:
    """``{label value: count}``; every class appears, with 0 when it has no items."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    hist = {str(int(v)): int(c) for v, c in zip(values, counts)}
    for i in range(len(classes or ())):
        hist.setdefault(str(i), 0)
    return dict(sorted(hist.items(), key=lambda kv: int(kv[0])))


def _py(x: Any) -> Any:
    v = x.item() if hasattr(x, "item") else x
    if isinstance(v, np.floating):  # a long double's item() is itself, which JSON cannot write: its nearest float
        return float(v)
    return bool(v) if isinstance(v, (bool, np.bool_)) else v
