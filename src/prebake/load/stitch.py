"""Predictions per tile back into whole volumes: the mean over the tiles that cover each voxel.

``Patches(..., sampler="grid")`` cuts each volume into overlapping tiles; a model predicts each
tile; :class:`Stitcher` adds every prediction into its item's volume where its box lies (the part
outside the volume, the padding, dropped) and divides by how many tiles covered each voxel, as
MONAI's ``sliding_window_inference`` (``mode="constant"``) and TorchIO's ``GridAggregator``
(``overlap_mode="average"``) do. Stitching adds each tile by a slice of its item's volume: this
runs once per tile at inference, not on the training read path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ViewError


def _boxes(start: Sequence[int], size: Sequence[int],
           dims: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """(where in the volume, where in the tile) of the part of a box that lies inside the volume."""
    vol, tile = [], []
    for s, n, d in zip(start, size, dims):
        lo, hi = max(s, 0), min(s + n, d)
        vol.append(slice(lo, max(lo, hi)))
        tile.append(slice(lo - s, max(lo, hi) - s))
    return tuple(vol), tuple(tile)


class Stitcher:
    """Collects the predictions of a grid of tiles into volumes, one per item (``Patches.stitcher()``).

    ``add(pred, item, start)`` takes a batch of predictions ``(B, C, *size)`` (or ``(B, *size)``) with the
    batch's ``item`` and ``start``, and returns the items whose every tile has now arrived; ``pop(item)``
    returns that item's volume ``(C, *dims)`` (the mean over overlapping tiles) and frees it.
    """

    def __init__(self, dims: Mapping[int, tuple[int, ...]], tiles: np.ndarray, size: Sequence[int],
                 channels: int | None = None, device: Any = None):
        self.dims, self.tiles, self.size = dict(dims), np.asarray(tiles), tuple(size)
        self.channels, self.device = channels, device
        self._sum: dict[int, torch.Tensor] = {}
        self._count: dict[int, torch.Tensor] = {}
        self._seen: dict[int, int] = {}

    def add(self, pred: Any, item: Any, start: Any) -> list[int]:
        pred = torch.as_tensor(pred)
        item = np.asarray(torch.as_tensor(item).cpu()).astype(np.int64).reshape(-1)
        start = np.asarray(torch.as_tensor(start).cpu()).astype(np.int64).reshape(len(item), -1)
        k = len(self.size)
        if pred.dim() == k + 1:
            pred = pred.unsqueeze(1)
        if pred.dim() != k + 2 or tuple(pred.shape[2:]) != self.size or len(pred) != len(item):
            raise ViewError(f"Stitcher.add(pred of shape {tuple(pred.shape)}): expected one prediction per tile, "
                            f"({len(item)}, C, {', '.join(map(str, self.size))}) or without the C axis")
        done = []
        for j, i in enumerate(item.tolist()):  # once per tile at inference
            if i not in self.dims:
                raise ViewError(f"Stitcher.add: item {i} is not an item of this grid (items: "
                                f"{sorted(self.dims)[:8]}...); add the batches of the Patches it was made from")
            total = self._volume(i, pred)
            vol, tile = _boxes(start[j].tolist(), self.size, self.dims[i])
            total[(slice(None),) + vol] += pred[j][(slice(None),) + tile].to(total.device, total.dtype)
            self._count[i][vol] += 1
            self._seen[i] += 1
            if self._seen[i] == self.tiles[i]:
                done.append(i)
        return done

    def _volume(self, i: int, pred: torch.Tensor) -> torch.Tensor:
        if i not in self._sum:
            c = pred.shape[1] if self.channels is None else self.channels
            device = pred.device if self.device is None else self.device
            dtype = pred.dtype if pred.dtype.is_floating_point else torch.float32
            self._sum[i] = torch.zeros((c, *self.dims[i]), dtype=dtype, device=device)
            self._count[i] = torch.zeros(self.dims[i], dtype=torch.int32, device=device)
            self._seen[i] = 0
        return self._sum[i]

    def pop(self, item: int) -> torch.Tensor:
        """Item ``item``'s volume: each voxel the mean of the tiles that covered it."""
        if item not in self._sum:
            raise ViewError(f"Stitcher.pop({item}): no tile of item {item} was added (items with tiles: "
                            f"{sorted(self._sum)[:8]})")
        total, count = self._sum.pop(item), self._count.pop(item)
        self._seen.pop(item)
        return total / count.clamp(min=1).to(total.dtype)


def stitch(pred: Any, start: Any, dims: Sequence[int]) -> torch.Tensor:
    """One volume of ``dims`` from the predictions of its tiles ``(T, C, *size)`` at ``start`` ``(T, k)``: the
    mean over the tiles that cover each voxel (the padding of tiles past the volume dropped)."""
    pred = torch.as_tensor(pred)
    size = tuple(pred.shape[-len(dims):])
    s = Stitcher({0: tuple(int(d) for d in dims)}, np.array([len(pred)]), size)
    s.add(pred, np.zeros(len(pred), np.int64), start)
    return s.pop(0)
