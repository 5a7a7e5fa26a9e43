"""``prebake.Patches``: fixed-size patches of volumes of different shapes, one gather per column per batch.

A ragged N-D column keeps every volume at its own extent (a ragged column of rows, volumes whose
slice count alone varies, is cut the same way). Training wants fixed-size inputs, so
a view item is one patch: ``per_item`` draws per cache item (``sampler="uniform"`` or
``"balanced"``), or every tile of an overlapping grid (``sampler="grid"``, for inference, with
:func:`stitch` / :class:`Stitcher` to put predictions back). Every ragged N-D column whose items
have the column's spatial shape (a label map, a weight map) is cut at the same box; fixed columns
are repeated. A batch holds, besides the columns, ``item`` (the cache item), ``draw`` (the patch's
number within its item: draw or tile), ``start`` ``(B, k)`` (the box's first voxel per spatial
axis, negative where it is padded) and ``padded`` (whether the box reaches outside the volume).

A box partly outside its volume, or a volume smaller than the patch, is padded with ``pad_value``
(per column; 0 by default), never wrapped. ``sampler="balanced"`` draws a voxel of a class
(``pos_fraction`` of the patches on foreground, any class but 0, or ``weights`` per class) from the
runs :class:`prebake.steps.FgBgIndices` baked, and centres the box on it. An item with no voxel
of the drawn class gets a uniform box instead: the documented fallback, counted by
:meth:`Patches.stats` and logged when the view is made.

Boxes are drawn per epoch from ``(seed, epoch, item, draw)`` (``load/draws.py``), so a Loader's
guarantees hold over patches too: reproducible epochs, exact mid-epoch resume, every
``(item, draw)`` once per epoch across DDP ranks, ``indices=`` subsets. A batch is one gather per
column computed from the boxes (``load/boxes.py``), from the memory maps, RAM or the device.

>>> import numpy as np, prebake, tempfile
>>> vols = [np.arange(24, dtype=np.int16).reshape(1, 2, 3, 4), np.arange(8, dtype=np.int16).reshape(1, 2, 2, 2)]
>>> cache = prebake.build([{"image": v, "label": k} for k, v in enumerate(vols)], tempfile.mkdtemp() + "/v",
...                       workers=0, progress=False)
>>> p = prebake.Patches(cache, "image", size=(2, 2, 2), per_item=2, pad_value=-1)
>>> batch = p[[0, 1, 2]]
>>> batch["image"].shape, batch["item"].tolist(), batch["padded"].tolist()
((3, 1, 2, 2, 2), [0, 0, 1], [False, False, False])
>>> grid = prebake.Patches(cache, "image", size=(2, 2, 3), sampler="grid", overlap=0.5, pad_value=-1)
>>> len(grid), grid.item.tolist(), grid[4]["start"].tolist()   # 2 x 2 tiles of item 0, one of item 1
(5, [0, 0, 0, 0, 1], [0, 0, 0])
>>> grid[4]["image"][0, 0].tolist(), bool(grid[4]["padded"])   # item 1 is 2 wide: padded at its end
([[0, 1, -1], [2, 3, -1]], True)
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..cache.format import runs_column
from ..cache.indices import shown
from ..cache.reader import Cache
from ..errors import ViewError
from .boxes import Boxes
from .draws import (
    ClassRuns,
    centred_starts,
    grid_count,
    grid_starts,
    occurrence,
    pick_class,
    uniform_starts,
    uniforms,
    unravel,
)
from .gather import Part, Plan, Take
from .params import flag, names, whole
from .patch_checks import (
    check_columns,
    check_count,
    check_extents,
    check_fill,
    check_size,
    check_source,
    check_unique,
    geometry,
    item_shape,
)
from .stitch import Stitcher, stitch
from .views import Indices, View, _items, _select, subset_id

log = logging.getLogger(__name__)
SAMPLERS = ("uniform", "balanced", "grid")
_U_CLASS, _U_VOXEL, _U_AXIS = 0, 1, 2  # uniform streams: class choice, voxel in class, box start per axis


class Patches(View):
    """Fixed-size patches of a ragged N-D column: ``per_item`` random boxes per item, or a grid of tiles.

    Args:
        cache: the cache to cut.
        column: the column of volumes of many extents whose spatial shape the boxes follow: a ragged N-D
            column, or a ragged column of rows (slices of one in-plane size, their count varying).
        size: the patch's extent along the last ``len(size)`` axes (the spatial ones, e.g. ``(96, 96, 96)``
            of ``(C, D, H, W)`` items); the axes before them are read whole.
        per_item: patches drawn per item and epoch (random samplers; default 4).
        sampler: ``"uniform"``, ``"balanced"`` (needs ``label`` and the runs of
            :class:`prebake.steps.FgBgIndices`) or ``"grid"`` (every tile, for inference).
        label: the label-map column of ``"balanced"`` (baked with ``FgBgIndices(label)``).
        pos_fraction: ``"balanced"``: the share of patches centred on a voxel of any class but 0 (default 0.5).
        weights: ``"balanced"``, instead of ``pos_fraction``: ``{class: weight}``, the chance of each class.
        overlap: ``"grid"``: the fraction of a tile shared with the next along each axis, in [0, 1).
        pad_value: the value of voxels outside the volume: a number, or ``{column: number}`` (others 0).
        pad: False refuses volumes smaller than the patch instead of padding them.
        columns: the columns to read (fixed ones, and ragged N-D ones of the column's spatial shape);
            default: all of those.
        indices: the cache items to cut (a split, a client), or a boolean mask; default: all.
        seed: the seed of the boxes (with the epoch).
    """

    def __init__(self, cache: Cache, column: str, size: Sequence[int], per_item: int | None = None, *,
                 sampler: str = "uniform", label: str | None = None, pos_fraction: float | None = None,
                 weights: Mapping[int, float] | None = None, overlap: float = 0.25,
                 pad_value: float | Mapping[str, float] = 0, pad: bool = True, columns: Sequence[str] | None = None,
                 indices: Indices | None = None, seed: int = 0):
        check_source(cache, column)
        self.cache, self.column, self.epoch = cache, column, 0
        self.size = check_size(size, cache, column)
        self.sampler = _sampler(sampler, per_item)
        self.per_item = whole(4 if per_item is None else per_item, "per_item", 1, ViewError)
        self.seed = whole(seed, "seed", 0, ViewError)
        self.pad = flag(pad, "pad", ViewError)
        self.items = _items(cache, indices)
        items = np.arange(len(cache), dtype=np.int64) if self.items is None else self.items
        self.dims = geometry(cache, column)[1][:, -len(self.size):]  # (N, k) spatial extents
        check_extents(self.dims, items, self.size, self.pad, cache, column)
        self.label = _label(label, self.sampler, cache)
        cut, fixed = check_columns(cache, column, self.dims, self.label, names(columns, "columns", ViewError))
        self._cut = {n: (*geometry(cache, n), tuple(int(x) for x in item_shape(cache.specs[n])[:-len(self.size)]))  # type: ignore[arg-type]
                     for n in cut}
        self.columns = fixed + cut
        self._fill = check_fill(pad_value, cut, cache)
        self.overlap = _overlap(overlap)
        self._classes, self._runs, self._member, self.pos_fraction, self.weights = self._balance(pos_fraction, weights)
        self.item, self.draw = self._draws(items)
        self._check_keys()
        self._log_fallbacks(items)

    def _draws(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(item, draw)`` of every patch: each item's tiles, or ``per_item`` draws per item, numbered on where
        ``indices=`` repeats an item (an oversampled item gets new boxes, and each (item, draw) is one patch)."""
        if self.sampler == "grid":
            check_unique(items)
            step = np.maximum(1, np.floor(np.array(self.size) * (1 - self.overlap))).astype(np.int64)
            count = grid_count(self.dims[items], np.array(self.size), step)
            check_count(count, f"size={list(self.size)}, overlap={self.overlap}): the tiles of {len(items)} items")
            local, self._grid = grid_starts(self.dims[items], np.array(self.size), step)
            return items[local], np.arange(len(local), dtype=np.int64) - np.searchsorted(local, local)
        check_count(len(items) * self.per_item,
                    f"per_item={self.per_item}): {len(items)} items x {self.per_item} draws")
        first = np.repeat(occurrence(items) * self.per_item, self.per_item)
        return np.repeat(items, self.per_item), first + np.tile(np.arange(self.per_item, dtype=np.int64), len(items))

    # -- the boxes -------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """The epoch ``view[i]`` draws its boxes for (a Loader passes its own epoch instead)."""
        self.epoch = whole(epoch, "epoch", 0, ViewError)

    def at_epoch(self, epoch: int) -> Patches:
        view = copy.copy(self)  # shares every array: a Loader's pass draws epoch `epoch`'s boxes
        view.epoch = whole(epoch, "epoch", 0, ViewError)
        return view

    def starts(self, idx: np.ndarray, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(start (B, k), fallback (B,))`` of view items ``idx`` in ``epoch`` (default: :attr:`epoch`):
        fallback marks a balanced draw that found no voxel of its class and took a uniform box."""
        epoch = self.epoch if epoch is None else whole(epoch, "epoch", 0, ViewError)
        item, draw = self.item[idx], self.draw[idx]
        size, dims = np.array(self.size), self.dims[item]
        fallback = np.zeros(len(idx), bool)
        if self.sampler == "grid":
            return self._grid[idx], fallback
        u = np.stack([uniforms(self.seed, epoch, item, draw, _U_AXIS + a) for a in range(len(size))], 1) \
            if len(idx) else np.zeros((0, len(size)))
        start = uniform_starts(u, dims, size)
        if self.sampler == "balanced" and len(idx):
            found, centre = self._centres(item, draw, epoch)
            start = np.where(found[:, None], centred_starts(centre, dims, size), start)
            fallback = ~found
        return start, fallback

    def _centres(self, item: np.ndarray, draw: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """A voxel of the drawn class per sample, as ``(found, (B, k) coordinates)``."""
        counts = np.stack([r.counts(item) for r in self._runs], 1)
        u = uniforms(self.seed, epoch, item, draw, _U_CLASS)
        if self.weights is not None:
            w = np.array([self.weights[c] for c in self._classes], np.float64)
            w = np.ldexp(w, -int(np.frexp(w.max())[1]))  # by a power of 2, exactly: weights near 1e308 sum finite
            chosen = np.minimum(np.searchsorted(np.cumsum(w) / w.sum(), u, side="right"), len(w) - 1)
            member = chosen[:, None] == np.arange(len(w))
        else:
            pos = u < self.pos_fraction
            member = np.where(pos[:, None], self._member, ~self._member)
        cls, within, found = pick_class(counts, member, uniforms(self.seed, epoch, item, draw, _U_VOXEL))
        flat = np.zeros(len(item), np.int64)
        for k, runs in enumerate(self._runs):  # a loop over classes, never over samples
            sel = found & (cls == k)
            flat[sel] = runs.voxel(item[sel], within[sel])
        return found, unravel(flat, self.dims[item])

    def boxes(self, epoch: int | None = None) -> dict[str, np.ndarray]:
        """Every patch of ``epoch`` (default :attr:`epoch`): ``item``, ``draw``, ``start`` and ``fallback``,
        in view order: what to hand another pipeline that should cut the same boxes."""
        start, fallback = self.starts(np.arange(len(self)), epoch)
        return {"item": self.item, "draw": self.draw, "start": start, "fallback": fallback}

    def stats(self, epoch: int | None = None) -> dict[str, Any]:
        """What ``epoch``'s patches are: how many, how many padded, how many balanced draws fell back to a
        uniform box (an item with no voxel of the drawn class) and from which items."""
        got = self.boxes(epoch)
        padded = self._padded(got["item"], got["start"])
        return {"epoch": self.epoch if epoch is None else epoch, "patches": len(self),
                "padded": int(padded.sum()), "fallback": int(got["fallback"].sum()),
                "fallback_items": sorted(set(got["item"][got["fallback"]].tolist()))}

    def _padded(self, item: np.ndarray, start: np.ndarray) -> np.ndarray:
        return ((start < 0) | (start + np.array(self.size) > self.dims[item])).any(axis=1)

    # -- the view --------------------------------------------------------------------------------

    def sort_key(self, idx: np.ndarray) -> None:
        """None: a patch is ``pz * py`` runs wherever its box lies; sorting saves no read, and restoring the
        drawn order afterwards would copy the batch once more."""
        return None

    def plan(self, idx: np.ndarray, columns: Sequence[str] | None = None) -> Plan:
        idx = np.asarray(idx, np.int64)
        item = self.item[idx]
        start, _ = self.starts(idx)
        takes = []
        for name in _select(self.columns, columns, self):
            if name in self._cut:
                offsets, shapes, lead = self._cut[name]
                boxes = Boxes(offsets[item], shapes[item], start, self.size, lead, self._fill[name])
                takes.append(Take(name, (Part(name, item),), boxes=boxes))
            else:
                takes.append(Take(name, (Part(name, item),)))
        extra = {"item": item, "draw": self.draw[idx], "start": start, "padded": self._padded(item, start)}
        return Plan(tuple(takes), extra)

    def identity(self) -> dict[str, Any]:
        return {"view": "patches", "column": self.column, "size": list(self.size), "sampler": self.sampler,
                "per_item": self.per_item if self.sampler != "grid" else None, "label": self.label,
                "pos_fraction": self.pos_fraction, "seed": self.seed, "overlap": self.overlap,
                "weights": None if self.weights is None else [[c, w] for c, w in sorted(self.weights.items())],
                "fill": [[n, v] for n, v in sorted(self._fill.items())], "items": subset_id(self.items),
                "len": len(self)}

    def stitcher(self, channels: int | None = None, device: Any = None) -> Stitcher:
        """A :class:`Stitcher` for this view's items: predictions per tile back into volumes."""
        return Stitcher({int(i): tuple(int(x) for x in self.dims[i]) for i in np.unique(self.item)},
                        np.bincount(self.item, minlength=len(self.cache)), self.size, channels, device)

    def __repr__(self) -> str:
        what = f"per_item={self.per_item}" if self.sampler != "grid" else f"overlap={self.overlap}"
        return (f"Patches({self.cache.path.name!r}, {self.column!r}, size={self.size}, sampler={self.sampler!r}, "
                f"{what}, patches={len(self)}, columns={self.columns})")

    # -- checks at construction -----------------------------------------------------------------

    def _balance(self, pos_fraction: Any, weights: Any) -> tuple[list[int], list[ClassRuns], np.ndarray, Any, Any]:
        """The classes the balanced sampler draws from, their runs in RAM, and its parameters, checked."""
        if self.sampler != "balanced":
            for name, value in (("pos_fraction", pos_fraction), ("weights", weights)):
                if value is not None:
                    raise ViewError(f"Patches({name}={shown(value)}) is a parameter of sampler='balanced', not of "
                                    f"sampler={self.sampler!r}; leave it out, or pass sampler='balanced'")
            return [], [], np.zeros(0, bool), None, None
        assert self.label is not None
        baked = _baked_classes(self.cache, self.label)
        weights = _weights(weights, pos_fraction, baked, self.label)
        pos = None if weights is not None else _fraction(0.5 if pos_fraction is None else pos_fraction, baked,
                                                         self.label)
        classes = sorted(weights) if weights is not None else sorted(baked)
        runs = [ClassRuns.of(self.cache.column(runs_column(self.label, c)).values,  # type: ignore[union-attr]
                             self.cache.column(runs_column(self.label, c)).offsets) for c in classes]  # type: ignore[union-attr]
        return classes, runs, np.array([c != 0 for c in classes]), pos, weights

    def _log_fallbacks(self, items: np.ndarray) -> None:
        for c, runs in zip(self._classes, self._runs):
            empty = items[runs.counts(items) == 0]
            if len(empty):
                log.warning("Patches over %s: %d of %d items have no voxel of class %d of %r (first: item %d); a "
                            "balanced draw of it takes a uniform box there, counted in Patches.stats(epoch)",
                            self.cache.path, len(empty), len(items), c, self.label, int(empty[0]))


def _sampler(sampler: Any, per_item: Any) -> str:
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ViewError(f"Patches(sampler={shown(sampler)}): sampler must be one of {list(SAMPLERS)}: 'uniform' "
                        "(random boxes), 'balanced' (centred on voxels of each class, needs label=) or 'grid' "
                        "(overlapping tiles covering each volume, for inference)")
    if sampler == "grid" and per_item is not None:
        raise ViewError(f"Patches(per_item={shown(per_item)}, sampler='grid'): the grid's tiles cover each volume, "
                        "as many as it takes; leave per_item out (set overlap= instead)")
    return sampler


def _label(label: Any, sampler: str, cache: Cache) -> str | None:
    if label is None:
        if sampler == "balanced":
            raise ViewError("Patches(sampler='balanced') needs label=, the label-map column whose classes it balances "
                            "(baked with prebake.steps.FgBgIndices(label=...)), e.g. label='label_map'")
        return None
    if not isinstance(label, str) or label not in cache.specs:
        raise ViewError(f"Patches(label={shown(label)}): label must name a column of {cache.path}: one of "
                        f"{cache.columns}")
    return label


def _overlap(overlap: Any) -> float:
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real) or not 0 <= float(overlap) < 1:
        raise ViewError(f"Patches(overlap={shown(overlap)}): overlap is the fraction of a tile shared with the next, "
                        "a number in [0, 1), e.g. overlap=0.25")
    return float(overlap)


def _baked_classes(cache: Cache, label: str) -> list[int]:
    prefix = runs_column(label, "")
    found = sorted(int(n[len(prefix):]) for n in cache.columns if n.startswith(prefix) and n[len(prefix):].isdigit())
    if not found:
        raise ViewError(f"Patches(sampler='balanced', label={label!r}): {cache.path} has no {prefix}<class> columns, "
                        f"the runs of each class it draws from; bake them with "
                        f"steps=[..., prebake.steps.FgBgIndices(label={label!r}, classes=(0, 1))]")
    return found


def _weights(weights: Any, pos_fraction: Any, baked: list[int], label: str) -> dict[int, float] | None:
    if weights is None:
        return None
    if pos_fraction is not None:
        raise ViewError("Patches(pos_fraction=..., weights=...): give one of them: pos_fraction (foreground against "
                        "class 0) or weights (a chance per class)")
    ok = isinstance(weights, Mapping) and weights and all(
        isinstance(c, numbers.Integral) and not isinstance(c, bool) and isinstance(w, numbers.Real)
        and not isinstance(w, bool) and math.isfinite(w) and float(w) >= 0 for c, w in weights.items())
    if not ok or not sum(weights.values()) > 0:
        raise ViewError(f"Patches(weights={shown(weights)}): weights must map classes (whole numbers) to chances "
                        "(finite numbers >= 0, not all 0), e.g. weights={0: 1, 1: 1, 2: 2}")
    missing = [c for c in weights if int(c) not in baked]
    if missing:
        classes = tuple(sorted({*baked, *map(int, weights)}))
        raise ViewError(f"Patches(weights={shown(weights)}): class {missing[0]} of {label!r} was not baked (no column "
                        f"{runs_column(label, int(missing[0]))}; baked: {baked}); rebuild with "
                        f"prebake.steps.FgBgIndices(label={label!r}, classes={classes})")
    return {int(c): float(w) for c, w in weights.items()}


def _fraction(value: Any, baked: list[int], label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) <= 1:
        raise ViewError(f"Patches(pos_fraction={shown(value)}): pos_fraction is the share of patches centred on "
                        "foreground, a number in [0, 1], e.g. pos_fraction=0.5")
    if 0 not in baked or len(baked) < 2:
        raise ViewError(f"Patches(pos_fraction=...) balances foreground against class 0 of {label!r}, but the runs "
                        f"baked are of classes {baked}; rebuild with prebake.steps.FgBgIndices(label={label!r}, "
                        f"classes={tuple(sorted({0, 1, *baked}))}), or pass weights= for the classes there are")
    return float(value)


__all__ = ["Patches", "Stitcher", "stitch"]
