"""Reading boxes of a ragged N-D column: every patch of a batch in one gather, on the host or the device.

Item ``i`` of a ragged N-D column is ``values[offsets[i]:offsets[i+1]]`` at shape ``shapes[i]``, in C
order, so a box of ``size`` ``(pz, py, px)`` at ``start`` ``(z0, y0, x0)`` is ``pz * py`` runs of
``px`` consecutive elements. :class:`Boxes` computes the first element of every run of every
sample with broadcasting (the item's offset, plus each axis' coordinates times its stride) and
reads them all with one fancy index into a strided view of ``values`` whose row ``r`` is
``values[r:r + px]`` (no copy: the rows overlap). That reads the same elements as a gather of
flat element indices, 4.6x as fast: 8 int16 patches of 96^3 from volumes of 110-180 a side
took 11.1 ms by ``np.take`` of 7 M element indices and 2.4 ms by 74 K run starts (a loop of
per-sample slices, 1.5 ms, is what the view avoids: its cost grows with the batch in Python).

Coordinates outside the item (a box larger than the volume, or partly outside it) are
clipped to its edge for the read and then overwritten with the fill value, so a box is
padded, never wrapped. Where a run would start before the values or end past them (x-padding
of the first or last item of the column) the batch is read by flat element indices instead:
still one gather. On a device (``preload="device"``) the same arithmetic runs in torch
there, from the boxes alone: a few integers per sample cross from the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..cache.reader import native
from .convert import CHUNK


@dataclass(frozen=True)
class Boxes:
    """The boxes of one batch in one column.

    ``offset`` ``(B,)``: each sample's item offset into ``values``; ``shape`` ``(B, L + k)``: its item's
    shape (``L`` lead axes read whole, such as channels, then ``k`` spatial axes); ``start`` ``(B, k)``: the
    box's first voxel per spatial axis (negative, or running past the item: padded); ``size``: the box's
    extent per spatial axis; ``lead``: the lead axes' extents (one for the whole column); ``fill``: the
    value of voxels outside the item.
    """

    offset: np.ndarray
    shape: np.ndarray
    start: np.ndarray
    size: tuple[int, ...]
    lead: tuple[int, ...]
    fill: float | int = 0

    def out_shape(self) -> tuple[int, ...]:
        return (len(self.offset), *self.lead, *self.size)

    def padded(self) -> np.ndarray:
        """``(B,)`` bool: the samples whose box reaches outside their item."""
        dims = self.shape[:, -len(self.size):]
        return ((self.start < 0) | (self.start + np.array(self.size) > dims)).any(axis=1)

    def runs_fit(self, total: int) -> bool:
        """Whether every run of ``size[-1]`` elements starts and ends inside ``values`` (of ``total``)."""
        if not len(self.offset):
            return True
        px, x0 = self.size[-1], self.start[:, -1]
        count = np.prod(self.shape, axis=1)
        first = self.offset + np.minimum(x0, 0)
        last = self.offset + count - self.shape[:, -1] + x0 + px  # one past the last element a run may read
        return bool(first.min() >= 0 and last.max() <= total and total >= px)

    # -- execution -----------------------------------------------------------------------------

    def host(self, values: np.ndarray) -> np.ndarray:
        """The batch's patches from a numpy column (memory map or RAM): ``(B, *lead, *size)``, native byte order."""
        values = np.asarray(values).reshape(-1)  # a ragged column of rows: its elements (a view)
        return native(_read(self, values, np, _np_arange, self.padded().any(), self.runs_fit(len(values))))

    def device(self, values: torch.Tensor) -> torch.Tensor:
        """The batch's patches from a column preloaded on ``values.device``, computed there."""
        dev, values = values.device, values.reshape(-1)

        def arange(n: int) -> torch.Tensor:
            return torch.arange(n, device=dev)

        offset, shape, start = (torch.from_numpy(np.ascontiguousarray(a, np.int64)).to(dev, non_blocking=True)
                                for a in (self.offset, self.shape, self.start))
        on = Boxes(offset, shape, start, self.size, self.lead, self.fill)  # type: ignore[arg-type]  # the same, in torch
        return _read(on, values, torch, arange, self.padded().any(), self.runs_fit(len(values)))


    def converted(self, values: np.ndarray, conv: Any, dtype: np.dtype, buffers: Any = None) -> np.ndarray:
        """:meth:`host`, then ``Loader(convert=...)``'s conversion into an output of ``dtype``, a cache-sized
        chunk at a time; the fill is converted with the rest (a pad of -1024 HU windows like air)."""
        got = torch.from_numpy(self.host(values)).reshape(-1)
        out = buffers.empty(self.out_shape(), dtype) if buffers is not None else np.empty(self.out_shape(), dtype)
        flat = torch.from_numpy(out).reshape(-1)
        for s in range(0, flat.numel(), CHUNK):
            piece = flat[s:s + CHUNK]
            piece.copy_(got[s:s + CHUNK])
            conv.apply_(piece)
        return out


def _np_arange(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def _read(b: Boxes, values: Any, xp: Any, arange: Any, pad: Any, fits: bool) -> Any:
    """Every box of ``b`` from 1-D ``values`` with ``xp`` (numpy or torch): one gather, then the fill."""
    if not b.offset.shape[0]:
        return values[:0].reshape(0, *b.lead, *b.size) if xp is torch else np.zeros(b.out_shape(), values.dtype)
    lead = b.lead
    k, m = len(b.size), len(lead) + len(b.size) - 1  # m: the axes of a run's row
    n = b.offset.shape[0]
    strides = _strides(b.shape, xp)
    rows, valid = b.offset.reshape(n, *([1] * m)), []
    for a in range(m):
        if a < len(lead):  # a lead axis (channels) is read whole
            coord = arange(lead[a]).reshape(1, -1)
        else:
            j = a - len(lead)
            coord = b.start[:, j:j + 1] + arange(b.size[j])
            dim = b.shape[:, a:a + 1]
            valid.append((coord >= 0) & (coord < dim))
            coord = _clip(coord, dim, xp)
        rows = rows + _along(coord * strides[:, a:a + 1], a, m)
    x0, px = b.start[:, -1], b.size[-1]
    x = x0[:, None] + arange(px)
    valid.append((x >= 0) & (x < b.shape[:, -1:]))
    if fits:
        out = _runs(values, px, rows + x0.reshape(n, *([1] * m)), xp)
    else:  # a run would leave the values: flat element indices instead (x-padding at a column's ends)
        out = values[rows[..., None] + _along(_clip(x, b.shape[:, -1:], xp), m, m + 1)]
    if pad:
        mask = valid[0].reshape(n, *([1] * len(lead)), -1, *([1] * (k - 1)))
        for j in range(1, k):
            mask = mask & valid[j].reshape(n, *([1] * (len(lead) + j)), -1, *([1] * (k - 1 - j)))
        _fill(out, ~mask, b.fill)
    return out


def _clip(coord: Any, dim: Any, xp: Any) -> Any:
    """Coordinates clipped into ``0..dim-1``: a voxel outside is read at the edge, then filled."""
    if xp is np:
        return np.clip(coord, 0, dim - 1)
    return torch.minimum(torch.clamp(coord, min=0), dim - 1)


def _strides(shape: Any, xp: Any) -> Any:
    """``(B, ndim)`` C-order element strides of each sample's item shape."""
    if xp is np:
        after = np.concatenate([shape[:, 1:], np.ones((len(shape), 1), np.int64)], 1)
        return np.flip(np.cumprod(np.flip(after, 1), 1), 1)
    rest = torch.cat([shape[:, 1:], torch.ones((shape.shape[0], 1), dtype=shape.dtype, device=shape.device)], 1)
    return torch.flip(torch.cumprod(torch.flip(rest, [1]), 1), [1])


def _along(v: Any, axis: int, ndim: int) -> Any:
    """``(B or 1, m)`` as ``(B or 1, 1, .., m, .., 1)``, ``m`` at non-batch ``axis`` of ``ndim``."""
    shape = [v.shape[0]] + [1] * ndim
    shape[1 + axis] = v.shape[1]
    return v.reshape(shape)


def _runs(values: Any, px: int, starts: Any, xp: Any) -> Any:
    """``values[s:s + px]`` for every ``s`` of ``starts``: one fancy index into overlapping rows."""
    count = len(values) - px + 1
    if xp is np:  # np.take would first copy the overlapping view whole (6 s here): fancy indexing reads in place
        step = values.strides[0]
        return np.lib.stride_tricks.as_strided(values, (count, px), (step, step), writeable=False)[starts]
    return values.as_strided((count, px), (1, 1))[starts]


_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)  # masked_fill has no kernel for them (torch 2.13)


def _fill(out: Any, where: Any, value: float | int) -> None:
    if isinstance(out, torch.Tensor) and out.dtype in _WIDE_UNSIGNED:
        out.copy_(torch.where(where, torch.tensor(value, dtype=out.dtype, device=out.device), out))
    elif isinstance(out, torch.Tensor):
        out.masked_fill_(where, value)
    else:
        np.copyto(out, np.asarray(value).astype(out.dtype), where=where)
