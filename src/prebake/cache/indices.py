"""Which items an index selects: the one reading of ``cache[...]``, ``view[...]`` and every ``indices=``.

Accepted: a whole number; a 1-D sequence, array or tensor of whole numbers; a slice (a range of
items); a boolean mask with one entry per item (its True positions, as numpy reads it). A
boolean mask read as integers would select items 0 and 1 (``indices=labels == k`` would train
on two items), so a mask of another length, floats, 2-D arrays, strings and out-of-range
indices are an :class:`~prebake.errors.IndicesError` naming the parameter, the value and
what is allowed.
"""

from __future__ import annotations

import numbers
import reprlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import IndicesError

_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist = 60, 60, 8
_ALLOWED = ("whole numbers (a list, an int array or tensor), a slice, or a boolean mask of {n} entries "
            "(one per item: its True positions)")


def shown(value: Any) -> str:
    """``repr(value)``, cut short: a message quotes the value, not a whole array."""
    if isinstance(value, np.ndarray):
        head = ", ".join(str(v) for v in value.reshape(-1)[:8].tolist())
        return f"array([{head}{', ...' if value.size > 8 else ''}], dtype={value.dtype}, shape={value.shape})"
    return _SHOW.repr(value)


def is_many(index: Any) -> bool:
    """Whether ``index`` asks for several items (a batch) rather than one."""
    if isinstance(index, (str, bytes)):
        return False
    if isinstance(index, (np.ndarray, torch.Tensor)):
        return index.ndim > 0
    return isinstance(index, (Sequence, slice))


def item_index(index: Any, n: int, what: str) -> int:
    """One position in ``0..n-1`` (a negative one counts from the end), or an IndicesError."""
    value = index.item() if isinstance(index, (np.ndarray, torch.Tensor)) else index  # a 0-d array or tensor
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        hint = f"; a column is read with .column({index!r})" if isinstance(index, str) else ""
        raise IndicesError(f"index {shown(index)} ({type(index).__name__}) cannot index {what}: use a whole "
                           f"number in -{n}..{n - 1}, or for a batch {_ALLOWED.format(n=n)}{hint}")
    i = int(value)
    j = i + n if i < 0 else i
    if not 0 <= j < n:
        allowed = f"allowed: -{n}..{n - 1}" if n else "it holds none"
        raise IndicesError(f"index {i} out of range for {what} of {n} items ({allowed})")
    return j


def item_indices(indices: Any, n: int, what: str, *, name: str = "index", negative: bool = True) -> np.ndarray:
    """``indices`` as int64 positions in ``0..n-1``, in the order given (repeats kept).

    ``name`` is how the message names the parameter (``indices`` for ``indices=``); with
    ``negative`` a negative index counts from the end (as ``cache[-1]``), else it is refused.
    """
    if isinstance(indices, slice):
        try:
            return np.arange(n, dtype=np.int64)[indices]
        except (TypeError, ValueError) as e:
            raise IndicesError(f"{name} {shown(indices)} is not a slice of whole numbers ({e}); "
                               f"use {_ALLOWED.format(n=n)}") from None
    arr = _as_array(indices, n, name)
    if arr.dtype == np.bool_:
        if len(arr) != n:
            raise IndicesError(f"{name} is a boolean mask of {len(arr)} entries, but {what} has {n} items; a mask "
                               f"needs one entry per item (e.g. cache.targets == k), or pass whole-number indices")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype.kind not in "iu":
        raise IndicesError(f"{name} {shown(indices)} holds {arr.dtype} values; {name} must be "
                           f"{_ALLOWED.format(n=n)}; convert with np.asarray(..., dtype=np.int64) if they are whole")
    low = -n if negative else 0
    bad = (arr < low) | (arr >= n)
    if bad.any():
        first = arr[np.argmax(bad)]
        if name != "indices":
            raise IndicesError(f"index {first} out of range for {what} of {n} items (allowed: {low}..{n - 1})")
        has = f"has items 0..{n - 1}" if n else "has no items"
        why = "; indices= counts from 0, with no negative items" if first < 0 else ""
        raise IndicesError(f"indices holds item {first}, but {what} {has} (out of range{why}); pass indices of "
                           f"items of {what}, or a boolean mask of {n} entries")
    idx = arr.astype(np.int64)
    idx[idx < 0] += n
    return idx


def _as_array(indices: Any, n: int, name: str) -> np.ndarray:
    """``indices`` as a 1-D numpy array, or an IndicesError (a scalar, a string, a 2-D or ragged array)."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    try:
        arr = np.asarray(indices) if not isinstance(indices, (str, bytes)) else None
    except (TypeError, ValueError) as e:
        raise IndicesError(f"{name}={shown(indices)} is not a flat list of whole numbers ({e}); {name} must be "
                           f"{_ALLOWED.format(n=n)}") from None
    if arr is None or arr.ndim == 0:
        raise IndicesError(f"{name}={shown(indices)} is a {type(indices).__name__}; {name} must be "
                           f"{_ALLOWED.format(n=n)}")
    if arr.ndim != 1:
        raise IndicesError(f"{name}={shown(indices)} has shape {arr.shape}; {name} must be 1-D: "
                           f"{_ALLOWED.format(n=n)} (flatten it with .reshape(-1) if that is what you mean)")
    return arr
