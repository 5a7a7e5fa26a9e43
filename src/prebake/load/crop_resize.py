"""The crops of one batch, read and resized to ``size x size`` as a batch: on the host or on the device.

Each sample's box is read by the run-start gather of ``load/boxes.py``: the samples whose boxes
shrink by the same whole factors ``(fy, fx) = (h // size, w // size)`` (at least 1) are one gather,
their boxes padded to the group's largest. A group's boxes are area-averaged by ``(fy, fx)`` with
integer adds (pixels outside a box are left out of its last, partial block), so every reduced box
is less than twice ``size`` on each axis; then one ``grid_sample`` (bilinear, ``align_corners=False``)
per group resizes its samples to ``size`` from per-sample grids. The loop runs over the factor
groups (factor pairs, and half-octaves of reduced size so that padding stays small), never over
samples: 64 crops to 224 of benchmarks/crops.py's photos took 0.07 s of one core's time, Pillow's
decode, crop and resize of the same 64 boxes 0.3 s.

The sample points are torch's ``interpolate(mode="bilinear", align_corners=False)``'s, clamped at
the box's edges as it clamps at an image's, so a box no larger than ``size`` (an upscale) is
resized exactly as ``interpolate`` resizes it, ``antialias`` or not. A larger box is averaged by
whole factors and then bilinear over the rest (a factor below 2), where ``interpolate(antialias=True)``
weighs a triangle as wide as the whole factor: on photos the difference is a few grey levels
(tests/load/test_crops.py states the bound; benchmarks/crops.py measures it). Integer outputs are
rounded and clamped to their dtype, so uint8 crops stay uint8 (4x fewer bytes to the device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .boxes import Boxes


@dataclass(frozen=True)
class CropBatch:
    """The crops of one batch in one column: ``offset`` ``(B,)`` each sample's item offset into the values,
    ``shape`` ``(B, L + 2)`` its item's shape (``L`` lead axes such as channels, then height and width),
    ``box`` ``(B, 4)`` ``(top, left, h, w)``, ``size`` the output side, ``lead`` the lead axes' extents."""

    offset: np.ndarray
    shape: np.ndarray
    box: np.ndarray
    size: int
    lead: tuple[int, ...]

    def out_shape(self) -> tuple[int, ...]:
        return (len(self.offset), *self.lead, self.size, self.size)

    def host(self, values: np.ndarray) -> np.ndarray:
        """The batch's crops from a numpy column (memory map or RAM), resized with torch on the CPU."""
        values = np.asarray(values).reshape(-1)
        dtype = torch.from_numpy(np.empty(0, values.dtype.newbyteorder("="))).dtype
        got = _resize(self, lambda boxes: torch.from_numpy(boxes.host(values)), torch.device("cpu"), dtype)
        return got.numpy()

    def device(self, values: torch.Tensor) -> torch.Tensor:
        """The batch's crops from a column preloaded on ``values.device``: gather and resize there."""
        values = values.reshape(-1)
        return _resize(self, lambda boxes: boxes.device(values), values.device, values.dtype)

    def converted(self, values: np.ndarray, conv: Any, dtype: np.dtype, buffers: Any = None) -> np.ndarray:
        """:meth:`host`, then ``Loader(convert=...)``'s conversion into an output of ``dtype``."""
        got = torch.from_numpy(self.host(values))
        out = buffers.empty(self.out_shape(), dtype) if buffers is not None else np.empty(self.out_shape(), dtype)
        flat = torch.from_numpy(out)
        flat.copy_(got)
        conv.apply_(flat.reshape(-1))
        return out


def factors(box: np.ndarray, size: int) -> np.ndarray:
    """``(B, 2)`` whole area-averaging factors per axis: ``h // size`` and ``w // size``, at least 1."""
    return np.maximum(box[:, 2:4] // size, 1)


def _resize(batch: CropBatch, read: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Every crop of ``batch`` as ``(B, *lead, size, size)`` of ``dtype``; ``read(Boxes)`` gathers a group."""
    n, size, box = len(batch.offset), batch.size, batch.box
    channels = int(np.prod(batch.lead)) if batch.lead else 1
    out = torch.empty((n, channels, size, size), dtype=dtype, device=device)
    f = factors(box, size)
    blocks = -(-box[:, 2:4] // f)  # blocks per axis, the last one partial where f does not divide the box
    # one group per factor pair and half-octave of reduced size: padded to its largest box, a group then reads
    # 1.15x the boxes' pixels, where one group per factor pair read 2.4x (crops of benchmarks/crops.py's photos)
    key = np.concatenate([f, np.floor(2 * np.log2(np.maximum(blocks, 1)))], 1)
    pairs, group = np.unique(key, axis=0, return_inverse=True)
    for g, (fy, fx) in enumerate(pairs[:, :2].astype(np.int64).tolist()):  # over groups, never over samples
        m = np.flatnonzero(np.reshape(group, -1) == g)
        hg, wg = int(blocks[m, 0].max()) * fy, int(blocks[m, 1].max()) * fx
        got = read(Boxes(batch.offset[m], batch.shape[m], box[m, :2], (hg, wg), batch.lead, 0))
        small = _average(got.reshape(len(m), channels, hg, wg), box[m, 2:4], fy, fx)
        grid = _grid(box[m, 2:4] / f[m], blocks[m], small.shape[2:], size, device)
        resized = F.grid_sample(small, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if len(pairs) == 1:
            return _cast(resized, dtype).reshape(batch.out_shape())
        _signed(out)[torch.from_numpy(m).to(device)] = _signed(_cast(resized, dtype))
    return out.reshape(batch.out_shape())


def _average(got: torch.Tensor, hw: np.ndarray, fy: int, fx: int) -> torch.Tensor:
    """``(b, C, hg, wg)`` boxes of ``hw`` ``(b, 2)`` pixels as float32 means over ``fy x fx`` blocks of the pixels
    inside each box: ``fy + fx`` strided integer adds, so the batch is converted to float once it is small."""
    if got.dtype in _WIDER:
        got = got.to(_WIDER[got.dtype])  # masked_fill and adds have no uint16-64 kernels (torch 2.13)
    if fy == 1 and fx == 1:
        return got.float()  # nothing to average; pixels past a box are never sampled (the grid is clamped to it)
    b, _, hg, wg = got.shape
    h, w = (torch.from_numpy(hw[:, k].copy()).to(got.device).view(b, 1) for k in (0, 1))
    inside_y = torch.arange(hg, device=got.device).view(1, hg) < h
    inside_x = torch.arange(wg, device=got.device).view(1, wg) < w
    got = got.masked_fill(~(inside_y.view(b, 1, hg, 1) & inside_x.view(b, 1, 1, wg)), 0)
    if got.dtype.is_floating_point:
        acc = got.float()
    else:
        acc = got.to(torch.int32) if fy * fx * 255 > 32767 or got.element_size() > 1 else got.to(torch.int16)
    rows = acc[:, :, 0::fy]
    for dy in range(1, fy):
        rows = rows + acc[:, :, dy::fy]
    sums = rows[..., 0::fx]
    for dx in range(1, fx):
        sums = sums + rows[..., dx::fx]
    count_y = inside_y.view(b, hg // fy, fy).sum(2).clamp(min=1)
    count_x = inside_x.view(b, wg // fx, fx).sum(2).clamp(min=1)
    return sums.float().div_(count_y.view(b, 1, -1, 1) * count_x.view(b, 1, 1, -1))


def _grid(extent: np.ndarray, blocks: np.ndarray, padded: Any, size: int, device: torch.device) -> torch.Tensor:
    """``(B, size, size, 2)`` sample points: interpolate's ``(j + 0.5) * extent / size - 0.5`` per axis, clamped
    to the box's whole blocks, as ``grid_sample``'s normalised (x, y) in the padded group of ``padded`` (H, W)."""
    j = np.arange(size, dtype=np.float64) + 0.5
    axes = []
    for k in (0, 1):
        src = np.clip(j[None, :] * (extent[:, k:k + 1] / size) - 0.5, 0, blocks[:, k:k + 1] - 1)
        axes.append((2 * src + 1) / int(padded[k]) - 1)
    ys, xs = (torch.from_numpy(a.astype(np.float32)).to(device) for a in axes)
    grid = torch.empty((len(extent), size, size, 2), device=device)
    grid[..., 0] = xs[:, None, :]
    grid[..., 1] = ys[:, :, None]
    return grid


_WIDER = {torch.uint16: torch.int32, torch.uint32: torch.int64, torch.uint64: torch.float64}
_SIGNED = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}


def _signed(t: torch.Tensor) -> torch.Tensor:
    """A uint16-64 tensor seen as the signed type of its width (the same bits): index_put has no kernel for them."""
    return t.view(_SIGNED[t.dtype]) if t.dtype in _SIGNED else t


def _cast(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The resized floats in the column's dtype: integers rounded and clamped to its range."""
    if dtype.is_floating_point:
        return out.to(dtype)
    info = torch.iinfo(dtype)
    return out.round_().clamp_(info.min, info.max).to(dtype)  # round_ half to even, as interpolate on integers
