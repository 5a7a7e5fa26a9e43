"""Predictions per tile back into whole volumes: the mean over the tiles that cover each voxel.

``Patches(..., sampler="grid")`` cuts each volume into overlapping tiles; a model predicts each
tile; :class:`Stitcher` adds every prediction into its item's volume where its box lies (the part
outside the volume, the padding, dropped) and divides by how many tiles covered each voxel, as
MONAI's ``sliding_window_inference`` (``mode="constant"``) and TorchIO's ``GridAggregator``
(``overlap_mode="average"``) do. Stitching adds each tile by a slice of its item's volume: this
runs once per tile at inference, not on the training read path.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..cache.indices import shown
from ..errors import ViewError
from .params import check_device, whole


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
    returns that item's volume ``(C, *dims)`` (the mean over overlapping tiles, in the predictions' dtype:
    half floats are summed in float32) and frees it. A tile added twice, a tile outside its volume, a
    channel count that changes, or a pop before every tile arrived is a ViewError, never a wrong mean;
    :meth:`pending` lists the items still waiting for tiles (a sharded or ``drop_last`` pass leaves some).
    """

    def __init__(self, dims: Mapping[int, tuple[int, ...]], tiles: np.ndarray, size: Sequence[int],
                 channels: int | None = None, device: Any = None):
        self.dims, self.tiles, self.size = dict(dims), np.asarray(tiles), tuple(size)
        self.channels = None if channels is None else whole(channels, "channels", 1, ViewError)
        self.device = None if device is None else check_device(device)
        self._sum: dict[int, torch.Tensor] = {}
        self._count: dict[int, torch.Tensor] = {}
        self._seen: dict[int, set[tuple[int, ...]]] = {}
        self._dtype: dict[int, torch.dtype] = {}

    def add(self, pred: Any, item: Any, start: Any) -> list[int]:
        pred = torch.as_tensor(pred)
        item = _whole(item, "item").reshape(-1)
        start = _whole(start, "start")
        k = len(self.size)
        if pred.dim() == k + 1:
            pred = pred.unsqueeze(1)
        if pred.dim() != k + 2 or tuple(pred.shape[2:]) != self.size or len(pred) != len(item):
            raise ViewError(f"Stitcher.add(pred of shape {tuple(pred.shape)}): expected one prediction per tile, "
                            f"({len(item)}, C, {', '.join(map(str, self.size))}) or without the C axis")
        if start.shape != (len(item), k):
            raise ViewError(f"Stitcher.add(start of shape {start.shape}): expected {(len(item), k)}, a first voxel "
                            "per tile and spatial axis; pass the batch's own 'start'")
        done = []
        for j, i in enumerate(item.tolist()):  # once per tile at inference
            vol, tile = self._place(i, start[j].tolist(), pred)
            total = self._sum[i]
            total[(slice(None),) + vol] += pred[j][(slice(None),) + tile].to(total.device, total.dtype)
            self._count[i][vol] += 1
            if len(self._seen[i]) == self.tiles[i]:
                done.append(i)
        return done

    def _place(self, i: int, start: list[int], pred: torch.Tensor) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """Where tile ``start`` of item ``i`` goes, checked: an item of the grid, a new tile, inside the volume."""
        if i not in self.dims:
            raise ViewError(f"Stitcher.add: item {i} is not an item of this grid (items: "
                            f"{sorted(self.dims)[:8]}...); add the batches of the Patches it was made from")
        vol, tile = _boxes(start, self.size, self.dims[i])
        if any(v.start >= v.stop for v in vol):
            raise ViewError(f"Stitcher.add: the tile of item {i} at start {start} lies wholly outside its volume "
                            f"{list(self.dims[i])}; pass the batch's own 'start'")
        total = self._volume(i, pred)
        if pred.shape[1] != total.shape[0]:
            raise ViewError(f"Stitcher.add: pred has {pred.shape[1]} channels, item {i}'s volume {total.shape[0]} "
                            "(its first tile's, or channels=); predict one channel count for every tile")
        if tuple(start) in self._seen[i] or len(self._seen[i]) >= self.tiles[i]:
            seen = "was added before" if tuple(start) in self._seen[i] else f"is one more than its {self.tiles[i]}"
            raise ViewError(f"Stitcher.add: the tile of item {i} at start {start} {seen}; add each tile of the "
                            "grid once (one pass of its Loader, or view[np.arange(len(view))])")
        self._seen[i].add(tuple(start))
        return vol, tile

    def _volume(self, i: int, pred: torch.Tensor) -> torch.Tensor:
        if i not in self._sum:
            c = pred.shape[1] if self.channels is None else self.channels
            device = pred.device if self.device is None else self.device
            self._dtype[i] = pred.dtype if pred.dtype.is_floating_point else torch.float32
            # float16 sums of a few overlapping tiles overflow (3 x 60000) and round: summed in float32
            dtype = torch.float32 if self._dtype[i].itemsize < 4 else self._dtype[i]
            self._sum[i] = torch.zeros((c, *self.dims[i]), dtype=dtype, device=device)
            self._count[i] = torch.zeros(self.dims[i], dtype=torch.int32, device=device)
            self._seen[i] = set()
        return self._sum[i]

    def pending(self) -> dict[int, tuple[int, int]]:
        """``{item: (tiles arrived, tiles of its grid)}`` for every item with some but not all of its tiles.

        Empty after a whole pass over the grid. A Loader that shards the view over DDP ranks, or drops its
        last partial batch (``drop_last=True``), hands each Stitcher part of the tiles: those items stay
        here, never returned by :meth:`add`; iterate the grid unsharded, without ``drop_last``, or gather the
        predictions onto one rank first.
        """
        return {i: (len(seen), int(self.tiles[i])) for i, seen in sorted(self._seen.items())
                if len(seen) < self.tiles[i]}

    def pop(self, item: int, who: str = "") -> torch.Tensor:
        """Item ``item``'s volume, once all its tiles arrived: each voxel the mean of the tiles that covered it."""
        who = who or f"Stitcher.pop({item})"
        if item not in self._sum:
            raise ViewError(f"{who}: no tile of item {item} was added (items with tiles: "
                            f"{sorted(self._sum)[:8]})")
        if len(self._seen[item]) < self.tiles[item]:
            raise ViewError(f"{who}: {len(self._seen[item])} of item {item}'s {self.tiles[item]} tiles have arrived; "
                            "pop an item once add() has returned it")
        uncovered = int((self._count[item] == 0).sum())
        if uncovered:
            raise ViewError(f"{who}: {uncovered} voxels of the volume {list(self.dims[item])} are covered by no tile; "
                            "their mean is undefined: add tiles that cover the volume (Patches(sampler='grid'))")
        total, count = self._sum.pop(item), self._count.pop(item)
        self._seen.pop(item)
        return (total / count.to(total.dtype)).to(self._dtype.pop(item))


def _whole(value: Any, name: str) -> np.ndarray:
    """``item`` or ``start`` as int64, refused unless whole numbers (a float start would be cut silently)."""
    got = np.asarray(torch.as_tensor(value).cpu())
    if got.dtype.kind not in "iu":
        raise ViewError(f"Stitcher.add({name}={shown(got)}): {name} holds {got.dtype}, not whole numbers; pass the "
                        f"batch's own {name!r}")
    return got.astype(np.int64)


def stitch(pred: Any, start: Any, dims: Sequence[int]) -> torch.Tensor:
    """One volume of ``dims`` from the predictions of its tiles ``(T, C, *size)`` at ``start`` ``(T, k)``: the
    mean over the tiles that cover each voxel (the padding of tiles past the volume dropped)."""
    pred = torch.as_tensor(pred)
    if isinstance(dims, (str, bytes)) or not isinstance(dims, (Sequence, np.ndarray)) or not len(dims) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, (bool, np.bool_)) and d >= 1 for d in dims):
        raise ViewError(f"stitch(dims={shown(dims)}): dims must be whole numbers >= 1, the volume's extent per "
                        "spatial axis, e.g. dims=(96, 96, 96)")
    if not len(pred):
        raise ViewError(f"stitch: no tile (pred of shape {tuple(pred.shape)}); pass the predictions of the volume's "
                        "tiles")
    size = tuple(pred.shape[-len(dims):])
    s = Stitcher({0: tuple(int(d) for d in dims)}, np.array([len(pred)]), size)
    s.add(pred, np.zeros(len(pred), np.int64), start)
    return s.pop(0, "stitch")
