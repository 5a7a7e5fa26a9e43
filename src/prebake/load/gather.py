"""How a batch is read: a :class:`Plan` of row positions, executed as one gather per column.

A view (``load/views.py``) turns the indices of a batch into a plan: for each column, the
rows to read, computed with numpy from the offsets (``offsets[item] + start + arange(L)``
for a window), never by a loop over the samples. Executing a plan is one ``np.take`` per
column from its memory map (or RAM copy), or one ``index_select`` per column for columns
preloaded on a device. A column whose rows split into several outputs (a window and the
context rows before it) is still read by one gather: the plan lists the rows of each output
back to back, so each output is a contiguous slice of what was read.

On the host the Loader sorts a batch by its first row before planning it (memory maps read
fastest in file order) and restores the drawn order afterwards; see ``load/loader.py``.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..cache.reader import Ragged, Shaped, native

Column = Any  # np.ndarray | Ragged | Shaped | torch.Tensor | a Ragged (or Shaped) of tensors


@dataclass(frozen=True)
class Part:
    """One output of a column: ``rows`` (``(B,)`` or ``(B, r)``) of its values; ``valid`` marks rows that exist.

    Rows where ``valid`` is False (context before the start of a sequence, padding past the end
    of an item) point at any existing row and are filled with zeros after the gather.
    """

    key: str
    rows: np.ndarray
    valid: np.ndarray | torch.Tensor | None = None  # a tensor once moved to the device


@dataclass(frozen=True)
class Take:
    """Everything one column gives a batch: its parts, read by one gather.

    ``lengths`` is set for whole ragged items without padding: the one part holds every
    sample's rows back to back, and the output is a list of per-sample pieces.

    ``shapes`` is set for whole items of a ragged N-D column (:class:`~prebake.cache.reader.Shaped`):
    the one part's ``rows`` are the items, ``lengths`` their element counts, and the output is a
    list of per-sample arrays at those shapes, or with ``pad`` one array zero-padded on every axis
    to the batch's largest (:func:`read_shaped`).
    """

    column: str
    parts: tuple[Part, ...]
    lengths: np.ndarray | None = None
    shapes: np.ndarray | None = None
    pad: bool = False
    #: A box per sample in a ragged N-D column (:class:`~prebake.load.boxes.Boxes`), read by its own
    #: one gather; the one part's key names the output.
    boxes: Any = None

    def flat_rows(self) -> np.ndarray:
        if len(self.parts) == 1:
            return self.parts[0].rows.reshape(-1)
        return np.concatenate([p.rows.reshape(-1) for p in self.parts])


@dataclass(frozen=True)
class Plan:
    """The takes of a batch, plus per-sample values computed from the indices alone (``item``, ``start``...)."""

    takes: tuple[Take, ...]
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Pieces:
    """Whole ragged items read in one gather: ``flat`` holds them back to back, ``lengths`` cuts it
    (and, for a ragged N-D column, ``shapes`` gives each piece its shape)."""

    flat: Any  # np.ndarray or torch.Tensor
    lengths: np.ndarray
    shapes: np.ndarray | None = None

    def cut(self, flat: Any = None) -> list[Any]:
        """``flat`` (default: this batch's; numpy or torch, on any device) cut into the per-item pieces."""
        flat = self.flat if flat is None else flat
        if isinstance(flat, torch.Tensor):
            pieces = list(flat.split(self.lengths.tolist()))
        else:
            pieces = np.split(flat, np.cumsum(self.lengths)[:-1]) if len(self.lengths) else []
        if self.shapes is not None:
            pieces = [p.reshape(tuple(s)) for p, s in zip(pieces, self.shapes.tolist())]
        return pieces


def values_of(col: Column) -> Any:
    """The array a gather reads from: a fixed column itself, a ragged column's ``values``.

    A memory map is seen as a plain ndarray over the same pages (no copy), so what a gather
    returns is a plain array too, not a ``np.memmap`` that is backed by no file.
    """
    values = col.values if isinstance(col, (Ragged, Shaped)) else col
    return np.asarray(values) if isinstance(values, np.memmap) else values


class Buffers:
    """Output arrays for the Loader's host gathers, reused once nothing refers to them any more.

    A fresh array the size of a batch arrives as untouched pages, each faulted in on first
    write (about 1 µs per 4 KiB page here), and glibc gives large freed blocks back to the
    kernel, so every batch would pay that again. A batch of 64 windows of 32 x 3x64x64 frames
    read at 25,300 windows/s that way and at 37,700/s with freed memory retained (2 threads,
    benchmarks/views.py data). The Loader hands out tensors over these arrays; when the last
    reference to one (tensor or view) is dropped, a weakref callback returns its memory here
    and the next batch of the same size is gathered into it. At most ``keep`` free buffers
    of each size are kept.
    """

    def __init__(self, keep: int):
        self.keep = keep
        self._free: dict[int, deque[bytearray]] = {}

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = math.prod(shape) * dtype.itemsize  # not np.prod: an epoch of 8-byte Elements, batch 64, 7.8 -> 5.8 ms
        free = self._free.setdefault(nbytes, deque())
        try:
            raw = free.pop()  # deque.pop and .append are atomic: gather threads and callbacks need no lock
        except IndexError:
            raw = bytearray(nbytes)
        flat = np.frombuffer(raw, dtype=dtype)
        weakref.finalize(flat, self._give_back, free, raw)  # every view (and tensor) of it keeps `flat` as its base
        return flat.reshape(shape)

    def _give_back(self, free: deque[bytearray], raw: bytearray) -> None:
        if len(free) < self.keep:
            free.append(raw)


def read_host(plan: Plan, data: Mapping[str, Column], buffers: Buffers | None = None) -> dict[str, Any]:
    """Execute ``plan`` against numpy columns (memory maps or RAM): one ``np.take`` per column.

    Returns numpy arrays in the plan's sample order (``Pieces`` for whole ragged items), in the
    machine's byte order, with invalid rows zeroed; gathered into ``buffers`` when given.
    """
    out: dict[str, Any] = {}
    for take in plan.takes:
        if take.shapes is not None:
            out[take.parts[0].key] = read_shaped(take, data[take.column])
            continue
        values = values_of(data[take.column])
        if take.boxes is not None:
            out[take.parts[0].key] = take.boxes.host(values)
            continue
        got = take_rows(values, take.flat_rows(), buffers)  # the one gather of this column
        out.update(_split(got, take))
    return {**out, **plan.extra}


def read_shaped(take: Take, col: Any) -> Any:
    """Whole items of a ragged N-D column: :class:`Pieces` (each item's elements back to back, with its
    shape), or with ``take.pad`` one array (numpy or torch, where the column is) zero-padded on every axis
    to the batch's largest item.

    One contiguous slice per item: items of different shapes have no common row to gather by, and a
    gather by element positions would build an index the size of the batch's pixels.
    """
    assert take.lengths is not None and take.shapes is not None
    starts = np.asarray(col.offsets)[take.parts[0].rows].tolist()
    lengths, values = take.lengths.tolist(), col.values
    slices = [values[s : s + n] for s, n in zip(starts, lengths)]
    on_torch = isinstance(values, torch.Tensor)
    if not take.pad:
        if on_torch:
            return Pieces(torch.cat(slices) if slices else values[:0], take.lengths, take.shapes)
        return Pieces(native(np.concatenate(slices) if slices else np.asarray(values[:0])), take.lengths, take.shapes)
    box = tuple(int(x) for x in take.shapes.max(axis=0)) if len(lengths) else (0,) * take.shapes.shape[1]
    shape = (len(lengths), *box)
    out = torch.zeros(shape, dtype=values.dtype, device=values.device) if on_torch else \
        np.zeros(shape, values.dtype.newbyteorder("="))
    for b, (piece, item_shape) in enumerate(zip(slices, take.shapes.tolist())):
        out[(b,) + tuple(slice(0, n) for n in item_shape)] = piece.reshape(item_shape)
    return out


def take_rows(values: np.ndarray, rows: np.ndarray, buffers: Buffers | None = None) -> np.ndarray:
    """``values[rows]`` in the machine's byte order, into a reused buffer when ``buffers`` is given."""
    if buffers is None or not values.dtype.isnative:
        return native(np.take(values, rows, axis=0))
    out = buffers.empty((len(rows), *values.shape[1:]), values.dtype)
    return values.take(rows, axis=0, out=out, mode="clip")  # rows are in range; "raise" would buffer `out`


def _split(got: Any, take: Take) -> list[tuple[str, Any]]:
    """Cut what one gather read into the take's outputs (a loop over its one or two parts)."""
    pieces, first = [], 0
    for part in take.parts:
        n = part.rows.size
        arr = got[first:first + n].reshape(*part.rows.shape, *got.shape[1:])
        first += n
        if part.valid is not None:
            _zero(arr, part.valid)
        pieces.append((part.key, arr if take.lengths is None else Pieces(arr, take.lengths)))
    return pieces


def _zero(arr: Any, valid: Any) -> None:
    """Fill the rows where ``valid`` is False with zeros ('' for str), in place, with no host sync."""
    if isinstance(arr, torch.Tensor):
        mask = valid.reshape(*valid.shape, *([1] * (arr.ndim - valid.ndim)))
        arr.masked_fill_(~mask, 0)
    else:
        arr[~valid] = np.zeros((), arr.dtype)


def read_device(plan: Plan, data: Mapping[str, Column], device: torch.device) -> dict[str, Any]:
    """Execute ``plan`` against columns preloaded on ``device``: one ``index_select`` per column.

    Only the plan's row positions (a few integers per sample) cross from the host. Columns that
    torch cannot hold (str, bytes) were preloaded to RAM and are read there, as numpy arrays.
    """
    out: dict[str, Any] = {}
    for take in plan.takes:
        values = values_of(data[take.column])
        if take.boxes is not None and isinstance(values, torch.Tensor):
            out[take.parts[0].key] = take.boxes.device(values)
            continue
        if not isinstance(values, torch.Tensor) or take.shapes is not None:
            out.update(read_host(Plan((take,)), data))
            continue
        rows = torch.from_numpy(take.flat_rows()).to(device, non_blocking=True)
        got = values.index_select(0, rows)
        device_take = Take(take.column, tuple(
            Part(p.key, p.rows, None if p.valid is None else torch.from_numpy(p.valid).to(device, non_blocking=True))
            for p in take.parts), take.lengths)
        out.update(_split(got, device_take))
    return {**out, **{k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in plan.extra.items()}}


def reorder_host(value: Any, inverse: np.ndarray | None) -> Any:
    """Put a sorted batch output back in the drawn order (numpy; None: it already is); whole ragged items
    become a list."""
    if isinstance(value, Pieces):
        pieces = value.cut()
        return pieces if inverse is None else [pieces[j] for j in inverse]
    return value if inverse is None else np.take(value, inverse, axis=0)
