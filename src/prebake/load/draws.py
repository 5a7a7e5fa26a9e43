"""Where the patches of :class:`~prebake.Patches` lie: uniform, label-balanced and grid boxes.

Every random number a box needs is a pure function of ``(seed, epoch, item, draw, stream)``: a
splitmix64 hash (Steele et al., 2014), vectorised over a batch with numpy. So the box of one
``(item, draw)`` in one epoch does not depend on the batch, the rank, the subset or the
position in the epoch that asks for it: a resumed or sharded epoch reads exactly the boxes of
an uninterrupted one, and a batch's boxes cost a few vector operations, never a pass over the
epoch.

Label-balanced draws pick a voxel of the chosen class uniformly from the class's runs, baked
by :class:`prebake.steps.FgBgIndices` (``<label>_runs_<class>``: ``(start, length)`` of each
run of consecutive voxels of that class, in flat C order): a global cumulative count over the
column's runs and one ``searchsorted`` per class find each sample's voxel, so no epoch rescans
a mask. The box is centred on it and shifted to lie inside the volume, as MONAI's
``RandCropByPosNegLabeld`` (``correct_crop_centers``) does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _words(x: int) -> list[np.uint64]:
    """A whole number >= 0 as 64-bit words, low first: one word below 2**64, so those hash as they always did."""
    x = int(x)
    if x < 0:  # callers check seeds and epochs; a negative one would shift right forever here
        raise ValueError(f"a seed or epoch of {x}: draws take whole numbers >= 0")
    words = [np.uint64(x & 0xFFFFFFFFFFFFFFFF)]
    while x >> 64:
        x >>= 64
        words.append(np.uint64(x & 0xFFFFFFFFFFFFFFFF))
    return words


def uniforms(seed: int, epoch: int, item: np.ndarray, draw: np.ndarray, stream: int) -> np.ndarray:
    """Float64 uniforms in [0, 1), one per sample, from ``(seed, epoch, item, draw, stream)`` alone (``seed`` and
    ``epoch`` whole numbers >= 0 of any size: a Loader counts epochs without bound)."""
    first, *more = _words(seed)
    key = np.full(len(item), first, np.uint64)
    for word in more:
        key = _mix(key * _GOLDEN + word)
    parts = [np.full(len(item), w, np.uint64) for w in _words(epoch)]
    for part in (*parts, np.asarray(item, np.int64).astype(np.uint64),
                 np.asarray(draw, np.int64).astype(np.uint64), np.full(len(item), np.uint64(stream), np.uint64)):
        key = _mix(key * _GOLDEN + part)
    return (key >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def below(u: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Whole numbers uniform in ``0..n-1`` from uniforms (0 where ``n`` is 0)."""
    return np.minimum(np.floor(u * n).astype(np.int64), np.maximum(n - 1, 0))


def padded_start(dims: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The start of a box on an axis shorter than it: centred, the pad split as MONAI's SpatialPad does."""
    return -((size - dims) // 2)


def uniform_starts(u: np.ndarray, dims: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``(B, k)`` starts uniform over the boxes that fit in ``dims``; centred and padded where none fits."""
    room = dims - size + 1
    return np.where(room > 0, below(u, np.maximum(room, 1)), padded_start(dims, size))


def centred_starts(centre: np.ndarray, dims: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Boxes centred on ``centre`` (voxel ``size // 2`` of the box), shifted to lie inside ``dims``."""
    start = np.clip(centre - size // 2, 0, np.maximum(dims - size, 0))
    return np.where(dims >= size, start, padded_start(dims, size))


def unravel(flat: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """``(B, k)`` coordinates of flat C-order positions within per-sample ``dims``."""
    out = np.empty(dims.shape, np.int64)
    for a in range(dims.shape[1] - 1, -1, -1):
        out[:, a] = flat % dims[:, a]
        flat = flat // dims[:, a]
    return out


@dataclass(frozen=True)
class ClassRuns:
    """One class's runs over a column, in RAM: per run ``start`` (its first voxel minus the count before it,
    so that voxel number ``g`` of the column is ``start[run] + g``) and ``end``, the cumulative voxel
    count through it over the whole column; ``before`` ``(N + 1,)``: the count before each item's runs."""

    start: np.ndarray
    end: np.ndarray
    before: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, offsets: np.ndarray) -> ClassRuns:
        runs = np.asarray(values, np.int64).reshape(-1, 2)
        end = np.cumsum(runs[:, 1])
        return cls(runs[:, 0] - (end - runs[:, 1]), end, np.concatenate([[0], end])[np.asarray(offsets, np.int64)])

    def counts(self, items: np.ndarray) -> np.ndarray:
        """Voxels of the class in each of ``items``."""
        return self.before[items + 1] - self.before[items]

    def voxel(self, items: np.ndarray, within: np.ndarray) -> np.ndarray:
        """The flat position of voxel number ``within`` (``0..counts-1``) of the class in each item."""
        g = self.before[items] + within
        return self.start[np.searchsorted(self.end, g, side="right")] + g


def pick_class(counts: np.ndarray, member: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample, a voxel uniform over the union of the classes ``member`` marks: ``(class index, number of
    the voxel within that class, whether the union had any voxel)``; ``counts`` and ``member`` are ``(B, C)``."""
    cum = np.cumsum(np.where(member, counts, 0), axis=1)
    total = cum[:, -1]
    g = below(u, total)
    cls = np.argmax(cum > g[:, None], axis=1)
    rows = np.arange(len(cls))
    return cls, g - (cum[rows, cls] - np.where(member, counts, 0)[rows, cls]), total > 0


def grid_starts(dims: np.ndarray, size: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping tiles covering each item: ``(item number, (T, k) starts)`` for ``dims`` ``(N, k)``.

    Along an axis, starts ``0, step, 2 step, ...`` while the tile fits, and the last tile ends at the
    volume's end (MONAI's ``dense_patch_slices``); an axis shorter than the tile has one, centred and padded.
    """
    per = _tiles_per_axis(dims, size, step)
    count = np.prod(per, axis=1)
    item = np.repeat(np.arange(len(dims)), count)
    t = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    starts = np.empty((len(item), dims.shape[1]), np.int64)
    for a in range(dims.shape[1] - 1, -1, -1):
        i, t = t % per[item, a], t // per[item, a]
        d = dims[item, a]
        starts[:, a] = np.where(d > size[a], np.minimum(i * step[a], d - size[a]), padded_start(d, size[a]))
    return item, starts


def _tiles_per_axis(dims: np.ndarray, size: np.ndarray, step: np.ndarray) -> np.ndarray:
    return np.where(dims > size, -(-(dims - size) // step) + 1, 1)


def grid_count(dims: np.ndarray, size: np.ndarray, step: np.ndarray) -> int:
    """How many tiles :func:`grid_starts` makes, counted before any array of them is."""
    return sum(math.prod(int(t) for t in row) for row in _tiles_per_axis(dims, size, step))


def occurrence(items: np.ndarray) -> np.ndarray:
    """Per position, how many times its item came before it (0 for an item's first appearance)."""
    order = np.argsort(items, kind="stable")
    ranked = items[order]
    out = np.empty(len(items), np.int64)
    out[order] = np.arange(len(items)) - np.searchsorted(ranked, ranked, side="left")
    return out
