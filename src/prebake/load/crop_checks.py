"""The checks ``prebake.Crops`` makes when it is built: each bad value a ViewError that names the parameter,
the value (and the item, where one item is the cause), what is allowed, and the fix."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cache.indices import shown
from ..cache.reader import Cache
from ..errors import ViewError
from .patch_checks import geometry, item_shape, refuse_empty

#: The largest output side: 8192^2 pixels of 3 float32 channels are 805 MB a sample before the cast.
MAX_SIZE = 8192


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def check_source(cache: Any, column: Any) -> tuple[int, ...]:
    """``cache`` an open Cache, ``column`` a column of images ``(H, W)`` or ``(C, H, W)``; its lead axes."""
    if not isinstance(cache, Cache):
        raise ViewError(f"Crops(cache={shown(cache)}): cache must be an open prebake Cache; pass prebake.open(path), "
                        "e.g. prebake.Crops(prebake.open('cache/photos'), 'image', size=224)")
    if not isinstance(column, str) or column not in cache.specs:
        raise ViewError(f"Crops(column={shown(column)}): column must name a column of {cache.path}: one of "
                        f"{cache.columns}")
    spec = cache.specs[column]
    shape = item_shape(spec)
    images = [n for n, s in cache.specs.items() if s.dtype[1] in "iuf" and len(item_shape(s)) in (2, 3)]
    if spec.dtype[1] == "b":
        raise ViewError(f"Crops(column={column!r}): column {column!r} of {cache.path} holds bool (a mask); crops are "
                        "resized by interpolation, which needs values between False and True: bake it as uint8 "
                        "(e.g. mask.astype(np.uint8) * 255), or crop it with prebake.Patches, which never resizes")
    if spec.dtype[1] not in "iuf" or len(shape) not in (2, 3):
        raise ViewError(f"Crops(column={column!r}): column {column!r} of {cache.path} has items of shape {list(shape)} "
                        f"and dtype {spec.dtype}; Crops cuts images of numbers, (H, W) or (C, H, W): one of {images}")
    lead = shape[:-2]
    if None in lead:  # a ragged column of rows (C, H, W): its C may still be one count (a list of one size)
        counts = geometry(cache, column)[1][:, 0]
        if len(counts) and (counts == counts[0]).all():
            return (int(counts[0]),)
        other = int(np.argmax(counts != counts[0])) if len(counts) else 0
        raise ViewError(f"Crops(column={column!r}): column {column!r} of {cache.path} has shape {list(shape)}: its "
                        f"channel count varies per item (item 0: {int(counts[0]) if len(counts) else 0}, item {other}: "
                        f"{int(counts[other]) if len(counts) else 0}; grey beside colour), so crops cannot share a "
                        "batch; bake one channel count, e.g. steps=[prebake.steps.ToRGB8(), ...]")
    return tuple(int(x) for x in lead)  # type: ignore[arg-type]


def check_size(size: Any) -> int:
    """``size``: the output side, a whole number in 1..MAX_SIZE."""
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral) or not 1 <= int(size) <= MAX_SIZE:
        raise ViewError(f"Crops(size={shown(size)}): size is the side of the square crops, a whole number from 1 to "
                        f"{MAX_SIZE}, e.g. size=224")
    return int(size)


def check_range(value: Any, name: str, lowest: float, highest: float | None, example: str) -> tuple[float, float]:
    """``scale`` / ``ratio``: two finite numbers ``lo <= hi``, ``lo > lowest`` and ``hi <= highest``."""
    ok = isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes)) and len(value) == 2 \
        and all(_number(v) for v in value)
    if ok:
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise ViewError(f"Crops({name}={shown(value)}): the range is reversed ({lo} > {hi}); give it low first, "
                            f"e.g. {name}={example}")
        ok = lo > lowest and (highest is None or hi <= highest)
    if not ok:
        top = "" if highest is None else f" and at most {highest}"
        raise ViewError(f"Crops({name}={shown(value)}): {name} is a (low, high) pair of numbers above {lowest}{top}, "
                        f"e.g. {name}={example}")
    return lo, hi


def check_extents(dims: np.ndarray, items: np.ndarray, cache: Cache, column: str) -> None:
    """No image of zero height or width: it holds no crop."""
    refuse_empty(dims, items, f"Crops over {cache.path}", f"image(s) of {column!r} have zero height or width", "",
                 "hold no crop")


def check_columns(cache: Cache, column: str, columns: list[str] | None) -> list[str]:
    """The fixed columns repeated beside the crops (default: every fixed column but ``column``)."""
    if columns is None:
        return [n for n, s in cache.specs.items() if not s.ragged and n != column]
    twice = [c for i, c in enumerate(columns) if c in columns[:i]]
    if twice:
        raise ViewError(f"Crops(columns={list(columns)}): {twice[0]!r} is named twice; name each column once")
    out = []
    for name in columns:
        if name not in cache.specs:
            raise ViewError(f"Crops(columns=...): {cache.path} has no column {name!r}; its columns are {cache.columns}")
        if name == column:
            continue
        if cache.specs[name].ragged:
            raise ViewError(f"Crops(columns=[..., {name!r}]): column {name!r} of {cache.path} is ragged (its items "
                            "vary in length), and only one value per item is repeated beside a crop; leave it out")
        out.append(name)
    return out
