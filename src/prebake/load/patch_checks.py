"""The checks ``prebake.Patches`` makes when it is built: each bad value a ViewError that names the
parameter, the value (and the item, where one item is the cause), what is allowed, and the fix."""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..cache.format import ColumnSpec
from ..cache.indices import shown
from ..cache.reader import Cache, Shaped
from ..errors import ViewError

log = logging.getLogger(__name__)
#: The most elements of one patch, and the most patches of an epoch: 2 GiB of uint8 for one sample, and past
#: int32 counts numpy and torch index arrays take more memory than the volumes do.
MAX_COUNT = 2**31
_RUNS = re.compile(r".+_runs_\d+")  # FgBgIndices' columns: rows of (start, length), never cut


def item_shape(spec: ColumnSpec) -> tuple[int | None, ...]:
    """An item's shape with None where it varies: a ragged column of rows is ``(None, *row)``."""
    return (None, *spec.shape) if spec.ragged and not spec.shaped else spec.shape


def geometry(cache: Cache, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(element offsets (N + 1,), item shapes (N, ndim))`` of a column, in RAM: a ragged N-D column's own; a
    ragged column of rows seen as items of ``(rows, *row)`` elements; a fixed column as items of one shape."""
    col, spec, n = cache.column(name), cache.specs[name], len(cache)
    if isinstance(col, Shaped):
        return np.array(col.offsets), np.array(col.shapes)
    if not spec.ragged:
        shape = np.array(spec.shape, np.int64)
        return np.arange(n + 1, dtype=np.int64) * math.prod(spec.shape), np.tile(shape, (n, 1))  # type: ignore[arg-type]
    offsets, row = np.array(col.offsets), spec.shape  # type: ignore[union-attr]
    shapes = np.concatenate([np.diff(offsets)[:, None], np.tile(np.array(row, np.int64), (n, 1))], 1)
    return offsets * math.prod(row), shapes.astype(np.int64)  # type: ignore[arg-type]


def _cuttable(cache: Cache) -> list[str]:
    return [n for n, s in cache.specs.items() if s.ndim and not _RUNS.fullmatch(n) and s.dtype[1] in "biuf"]


def check_source(cache: Any, column: Any) -> None:
    """``cache`` an open Cache, ``column`` one of its ragged N-D columns."""
    if not isinstance(cache, Cache):
        raise ViewError(f"Patches(cache={shown(cache)}): cache must be an open prebake Cache; pass prebake.open(path), "
                        "e.g. prebake.Patches(prebake.open('cache/ct'), 'image', size=(96, 96, 96))")
    if not isinstance(column, str) or column not in cache.specs:
        raise ViewError(f"Patches(column={shown(column)}): column must name a column of {cache.path}: one of "
                        f"{cache.columns}")
    if column not in _cuttable(cache):
        raise ViewError(f"Patches(column={column!r}): column {column!r} of {cache.path} has items of shape "
                        f"{list(item_shape(cache.specs[column]))} and dtype {cache.specs[column].dtype}, which hold no "
                        f"box; Patches cuts arrays of numbers, volumes of any extents: one of {_cuttable(cache)}")


def check_size(size: Any, cache: Cache, column: str) -> tuple[int, ...]:
    """``size`` as a tuple of whole numbers >= 1, one per spatial axis, no more axes than the items have."""
    ndim, shape = cache.specs[column].ndim, item_shape(cache.specs[column])
    ok = isinstance(size, (Sequence, np.ndarray)) and not isinstance(size, (str, bytes)) and 0 < len(size) <= ndim \
        and all(isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)) and int(s) >= 1 for s in size)
    if not ok:
        raise ViewError(f"Patches(size={shown(size)}): size is the patch's extent along the last axes of {column!r} "
                        f"(items of {ndim} axes), 1 to {ndim} whole numbers >= 1, e.g. size=(96, 96, 96)")
    lead = shape[:ndim - len(size)]
    if None in lead:
        at = lead.index(None)
        example = (1,) * (len(lead) - at) + tuple(int(s) for s in size)
        raise ViewError(f"Patches(size={shown(size)}): {column!r} has shape {list(shape)}: a ragged column of rows, "
                        f"whose axis {at} (its row count) may differ per item and is not cut; give size an extent "
                        f"for every axis from {at} on, e.g. size={example}")
    elements = math.prod(int(x) for x in lead if x is not None) * math.prod(int(s) for s in size)
    if elements > MAX_COUNT:
        raise ViewError(f"Patches(size={[int(s) for s in size]}): a patch of {elements:,} elements (items of "
                        f"{column!r} are {list(shape)}) is more than one sample can hold, at most {MAX_COUNT:,}; "
                        "pass a smaller size")
    return tuple(int(s) for s in size)


def check_count(count: int, what: str) -> None:
    """A ViewError when an epoch would hold more than MAX_COUNT patches (``what`` says how it came to that many)."""
    if count > MAX_COUNT:
        raise ViewError(f"Patches({what} are {count:,} patches an epoch, more than its index arrays can hold, at "
                        f"most {MAX_COUNT:,}; pass fewer, or cut the items with indices=")


def check_unique(items: np.ndarray) -> None:
    """The grid's items, each once: a tile twice would be stitched twice."""
    uniq, counts = np.unique(items, return_counts=True)
    if (counts > 1).any():
        k = int(np.argmax(counts > 1))
        raise ViewError(f"Patches(sampler='grid'): indices= holds item {int(uniq[k])} {int(counts[k])} times; a grid "
                        "covers each volume once, and its stitcher takes each tile once: pass np.unique(indices)")


def refuse_empty(dims: np.ndarray, items: np.ndarray, view: str, what: str, shape: str, holds: str) -> None:
    """A ViewError naming the ``items`` whose ``dims`` (N, k) have a zero axis, and the ``indices=`` that leaves
    them out (Patches and Crops word it for volumes and for images)."""
    empty = items[(dims[items] == 0).any(axis=1)]
    if len(empty):
        raise ViewError(f"{view}: {len(empty)} {what} (item {int(empty[0])}: {shape}{dims[empty[0]].tolist()}), "
                        f"which {holds}: items {empty.tolist() if len(empty) <= 8 else shown(empty)}; leave them "
                        "out with indices=np.setdiff1d(np.arange(len(cache)), EMPTY), EMPTY those items")


def check_extents(dims: np.ndarray, items: np.ndarray, size: tuple[int, ...], pad: bool, cache: Cache,
                  column: str) -> None:
    """No item of zero extent; with ``pad=False`` none smaller than the patch."""
    sub = dims[items]
    refuse_empty(dims, items, f"Patches over {cache.path}", f"item(s) of {column!r} have an axis of zero extent",
                 "spatial shape ", "holds no patch")
    if pad:
        return
    small = items[(sub < np.array(size)).any(axis=1)]
    if len(small) == len(items) and len(items):
        raise ViewError(f"Patches(size={list(size)}, pad=False): the patch is larger than every item of {column!r} "
                        f"(the largest is {sub.max(axis=0).tolist()}); pass pad=True (padded with pad_value, marked "
                        "in the batch's 'padded') or a smaller size")
    if len(small):
        raise ViewError(f"Patches(size={list(size)}, pad=False): {len(small)} of {len(items)} items of {column!r} are "
                        f"smaller than the patch (item {int(small[0])}: {dims[small[0]].tolist()}); pass pad=True, "
                        "a smaller size, or indices= without them")


def check_columns(cache: Cache, column: str, dims: np.ndarray, label: str | None, columns: list[str] | None
                  ) -> tuple[list[str], list[str]]:
    """(ragged N-D columns cut at the box, fixed columns repeated) of ``columns`` (default: every one that fits)."""
    k = dims.shape[1]
    twice = [c for i, c in enumerate(columns or []) if c in columns[:i]]  # type: ignore[index]
    if twice:
        raise ViewError(f"Patches(columns={list(columns)}): {twice[0]!r} is named twice; name each column once")  # type: ignore[arg-type]
    names = list(cache.columns) if columns is None else list(columns)
    if label is not None and label not in names:
        names.append(label)
    cut, fixed = [], []
    for name in names:
        if name not in cache.specs:
            raise ViewError(f"Patches(columns=...): {cache.path} has no column {name!r}; its columns are "
                            f"{cache.columns}")
        spec, why = cache.specs[name], ""
        if not spec.ragged and name != column and not _same_shape(cache, name, dims):
            fixed.append(name)  # one value per item (a class, a spacing): repeated for each of its patches
            continue
        if _RUNS.fullmatch(name) and columns is None:
            why = "holds the runs of a class (FgBgIndices), not voxels"
        elif spec.ndim < k or None in item_shape(spec)[:spec.ndim - k]:
            why = f"has shape {list(item_shape(spec))}, whose axes before the last {k} vary"
        else:
            other = geometry(cache, name)[1][:, -k:]
            bad = np.flatnonzero((other != dims).any(axis=1))
            why = f"item {int(bad[0])} is {other[bad[0]].tolist()} where {column!r} is {dims[bad[0]].tolist()}" \
                if len(bad) else ""
        if not why:
            cut.append(name)
        elif name == label or columns is not None:
            what = "label" if name == label else "columns"
            raise ViewError(f"Patches({what}={name!r}): column {name!r} of {cache.path} {why}; a column cut with "
                            f"{column!r} has its spatial shape in every item: leave it out of {what}=, or bake it "
                            "at the volume's shape")
        else:
            log.debug("Patches over %r leaves out %r: it %s", column, name, why)
    if label is not None and math.prod(item_shape(cache.specs[label])[:cache.specs[label].ndim - k]) != 1:  # type: ignore[arg-type]
        raise ViewError(f"Patches(label={label!r}): the label map has shape {list(item_shape(cache.specs[label]))}, "
                        "more than one channel; it must be (1, *spatial) or (*spatial), one class number per voxel")
    return cut, fixed


def _same_shape(cache: Cache, name: str, dims: np.ndarray) -> bool:
    """Whether a fixed column's items are arrays of numbers whose last axes are every item's spatial shape."""
    spec, k = cache.specs[name], dims.shape[1]
    return spec.ndim >= k and spec.dtype[1] in "biuf" and bool((np.array(spec.shape[-k:]) == dims).all())


def check_fill(pad_value: Any, cut: list[str], cache: Cache) -> dict[str, float | int]:
    """``pad_value`` per cut column: a number each column's dtype holds exactly."""
    if isinstance(pad_value, Mapping):
        unknown = [c for c in pad_value if c not in cut]
        if unknown:
            raise ViewError(f"Patches(pad_value={shown(pad_value)}): {unknown[0]!r} is not a column this view cuts "
                            f"({cut}); name those columns only")
        values = {c: pad_value.get(c, 0) for c in cut}
    else:
        values = {c: pad_value for c in cut}
    out: dict[str, float | int] = {}
    for name, v in values.items():
        dtype = np.dtype(cache.specs[name].dtype)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or np.asarray(v).astype(dtype).item() != v:
            raise ViewError(f"Patches(pad_value={shown(pad_value)}): {shown(v)} for column {name!r}, which holds "
                            f"{dtype}; the pad value must be a finite number that {dtype} holds exactly (give a "
                            "dict {column: value} for columns of other dtypes, e.g. pad_value={'image': -1024})")
        out[name] = v.item() if isinstance(v, np.generic) else float(v) if not isinstance(v, int) else v
    return out
