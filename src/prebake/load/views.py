"""Views: map-style Datasets over pieces of a cache's ragged columns.

A ragged column keeps a variable number of rows per item (the frames of a clip, the
cardiac cycles of a recording). Training reads pieces of it, and a view makes each
piece one dataset item:

- :class:`Windows`: one item per window of ``length`` rows (the talking-head workload's frame windows,
  with the ``context`` rows before each window, the previous window's motion latents);
- :class:`Elements`: one item per row (the heart-sound workload's cardiac cycles, one per sample).

Fixed columns (a clip's label, a recording's patient id) are repeated for every piece of
their item; other ragged columns with the same offsets are cut at the same rows. The
:class:`~prebake.Loader` takes a view wherever it takes a cache, and reads a batch with
one gather per column (``load/gather.py``): from the memory maps, from RAM, or on the device.

>>> import numpy as np, prebake, tempfile
>>> d = tempfile.mkdtemp()
>>> cache = prebake.write_arrays(d + "/clips", {
...     "frames": [np.arange(5), np.arange(10, 13)],        # two clips, of 5 and 3 frames
...     "label": np.array([7, 8])})
>>> windows = prebake.Windows(cache, "frames", 2, stride=2, context=1)
>>> len(windows), windows.item.tolist(), windows.start.tolist()
(3, [0, 0, 1], [0, 2, 0])
>>> w = windows[1]
>>> w["frames"].tolist(), w["frames_context"].tolist(), w["context_mask"].tolist(), int(w["label"])
([2, 3], [1], [True], 7)
>>> windows[2]["frames_context"].tolist(), windows[2]["context_mask"].tolist()   # before the clip: zeros, masked
([0], [False])
>>> cycles = prebake.Elements(cache, "frames")
>>> len(cycles), cycles[6]["frames"].tolist(), cycles[6]["item"].tolist(), cycles[6]["element"].tolist()
(8, 11, 1, 1)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.utils.data
import xxhash

from ..cache.indices import is_many, item_index, item_indices, shown
from ..cache.reader import Cache, Ragged, Shaped
from ..cache.tuples import Tuples
from ..errors import ViewError
from .gather import Part, Plan, Take, read_host, reorder_host
from .params import flag, names, whole

log = logging.getLogger(__name__)
Indices = Sequence[int] | np.ndarray


def subset_id(indices: np.ndarray | None) -> str | None:
    """An identity of a subset of items (xxh3 of its int64 indices, in order); None for all items."""
    if indices is None:
        return None
    return xxhash.xxh3_64_hexdigest(np.ascontiguousarray(indices, dtype=np.int64).tobytes())


def _items(cache: Cache, indices: Indices | None) -> np.ndarray | None:
    return None if indices is None else item_indices(indices, len(cache), str(cache.path), name="indices",
                                                     negative=False)


def _source(cache: Any, column: Any, view: str) -> None:
    """A ViewError unless ``cache`` is an open Cache and ``column`` a column name."""
    if not isinstance(cache, Cache):
        raise ViewError(f"{view}(cache={shown(cache)}): cache must be an open prebake Cache; pass "
                        f"prebake.open(path), e.g. prebake.{view}(prebake.open('cache/clips'), ...)")
    if not isinstance(column, str):
        raise ViewError(f"{view}(column={shown(column)}): column must be the name (str) of a ragged column of "
                        f"{cache.path}: {_pick_rows(cache)}")


class View(torch.utils.data.Dataset):
    """What every view shares: the cache, its columns, item access, ``.tuples()``, ``.targets``.

    ``view[i]`` is one item, a dict of numpy arrays; ``view[[i, j, ...]]`` a whole batch, one
    gather per column. Subclasses define which rows a batch reads (:meth:`plan`).
    """

    cache: Cache
    columns: list[str]
    #: The cache item each view item comes from.
    item: np.ndarray

    def __len__(self) -> int:
        return len(self.item)

    @property
    def keys(self) -> list[str]:
        """The keys of an item (and of a batch): the columns, and what the view adds."""
        empty = self.plan(np.zeros(0, np.int64))
        return [p.key for t in empty.takes for p in t.parts] + list(empty.extra)

    def sort_key(self, idx: np.ndarray) -> np.ndarray | None:
        """A value per sample that puts a batch in file order, for the Loader's sorted gathers; None when the
        view reads in the drawn order (see :meth:`Windows.sort_key`)."""
        return self.item[idx]

    def plan(self, idx: np.ndarray, columns: Sequence[str] | None = None) -> Plan:  # pragma: no cover - abstract
        raise NotImplementedError

    def at_epoch(self, epoch: int) -> View:
        """The view as epoch ``epoch`` reads it: itself, unless it draws its items per epoch (``Patches``)."""
        return self

    def identity(self) -> dict[str, Any]:
        """What the view's items are, for ``Loader.state_dict()``: a state saved over another view is refused."""
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def targets(self) -> np.ndarray:
        """The ``label`` of each view item (its cache item's label), for splits by class."""
        return self.cache.targets[self.item]

    @property
    def classes(self) -> list[str]:
        return self.cache.classes

    def tuples(self, *names: str) -> Tuples:
        """A torchvision-style view of this one: ``frames, label = view.tuples("frames", "label")[i]``."""
        return Tuples(self, names)

    def __getitem__(self, i: int | slice | Indices) -> dict[str, Any]:
        """``view[i]``: one item. ``view[[i, j, ...]]``, ``view[start:stop]``, ``view[mask]``: a batch as a dict of
        arrays, one gather per column."""
        if is_many(i):
            return self._batch(item_indices(i, len(self), "a view"))
        j = item_index(i, len(self), "a view")
        return {k: _row(v, 0) for k, v in self._batch(np.array([j], np.int64)).items()}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch for DataLoader's per-sample collate: one gather per column, split into items."""
        idx = item_indices(indices, len(self), "a view")
        batch = self._batch(idx)
        return [{k: _row(v, j) for k, v in batch.items()} for j in range(len(idx))]

    def _batch(self, idx: np.ndarray) -> dict[str, Any]:
        """Gathered (sorted into file order first, unless the view reads in the drawn order), in the asked order."""
        columns = _columns_of(self.cache, self.columns)
        key = self.sort_key(idx)
        if key is None:
            return {k: reorder_host(v, None) for k, v in read_host(self.plan(idx), columns).items()}
        order = np.argsort(key, kind="stable")
        inverse = np.argsort(order, kind="stable")
        return {k: reorder_host(v, inverse) for k, v in read_host(self.plan(idx[order]), columns).items()}

    def _check_keys(self) -> None:
        keys = self.keys
        clash = sorted({k for k in keys if keys.count(k) > 1})
        if clash:
            raise ViewError(f"{type(self).__name__} adds the keys {clash}, but {self.cache.path} has columns of those "
                            f"names too; leave those columns out with columns=[...]")


def _columns_of(cache: Cache, names: Sequence[str]) -> dict[str, np.ndarray | Ragged | Shaped]:
    return {n: cache.column(n) for n in names}


def _row_columns(cache: Cache) -> list[str]:
    """The ragged columns of rows (only axis 0 varies), which views cut."""
    return [n for n, s in cache.specs.items() if s.ragged and not s.shaped]


def _pick_rows(cache: Cache) -> str:
    """The ragged columns a view may cut, or why there are none; either way the way out."""
    rows = _row_columns(cache)
    if rows:
        return f"pick one of {rows}, or read whole items with prebake.Loader(cache)"
    return (f"it has no ragged column of rows (its columns {', '.join(cache.columns)} have one shape per item, "
            "or vary beyond their first axis), so there is nothing to cut: read whole items with prebake.Loader(cache)")


def _varying(cache: Cache, name: str) -> str:
    return f"shape {list(cache.specs[name].shape)}, null where items differ"


def _aligned(cache: Cache, column: str, columns: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(fixed columns, ragged columns cut like ``column``) of ``columns`` (default: every one that fits)."""
    if column not in cache.specs:
        raise ViewError(f"{cache.path} has no column {column!r}; its columns are {cache.columns}")
    if not cache.specs[column].ragged or cache.specs[column].shaped:
        what = (f"holds items that differ beyond their first axis ({_varying(cache, column)}), which have no rows "
                "to cut" if cache.specs[column].ragged else "is not ragged (one row per item)")
        raise ViewError(f"column {column!r} of {cache.path} {what}; a view cuts the rows of a ragged column: "
                        f"{_pick_rows(cache)}")
    offsets = cache.column(column).offsets  # type: ignore[union-attr]
    names = list(cache.columns) if columns is None else list(columns)
    fixed, ragged = [], []
    for name in names:
        if name not in cache.specs:
            raise ViewError(f"{cache.path} has no column {name!r}; its columns are {cache.columns}")
        if cache.specs[name].shaped:
            if columns is not None:
                raise ViewError(f"column {name!r} of {cache.path} holds items that differ beyond their first axis "
                                f"({_varying(cache, name)}), so a view cannot cut or repeat it by rows; leave it "
                                "out of columns=")
            log.debug("view over %r leaves out %r: its items vary beyond axis 0", column, name)
        elif not cache.specs[name].ragged:
            fixed.append(name)
        elif name == column or np.array_equal(cache.column(name).offsets, offsets):  # type: ignore[union-attr]
            ragged.append(name)
        elif columns is not None:
            raise ViewError(f"ragged column {name!r} has other item lengths than {column!r} in {cache.path}, so it "
                            f"cannot be cut at the same rows; leave it out of columns=")
        else:
            log.debug("view over %r leaves out %r: its items have other lengths", column, name)
    return fixed, ragged


class Windows(View):
    """One item per window of ``length`` rows along a ragged column's first axis.

    An item of ``n`` rows gives the windows starting at ``0, stride, 2·stride, …`` that fit
    (``start + length <= n``); an item shorter than ``length`` (or empty) gives none. Every
    other ragged column with the same offsets is cut at the same rows; fixed columns are
    repeated per window. An item (and a batch) holds, for each ragged column ``c``:

    - ``c``: its ``length`` rows, ``(length, *row shape)``;
    - ``c_context``: with ``context=k``, the ``k`` rows before the window. Rows before the start
      of the sequence do not exist: they are zeros, and ``context_mask`` (``(k,)`` bool) is
      False for them. With ``require_context=True`` windows start at row ``k`` instead, so every
      context row exists;

    plus every fixed column, and ``item`` and ``start``: which cache item and row each window
    comes from (also as the arrays :attr:`item` and :attr:`start`).

    Args:
        cache: the cache to cut.
        column: the ragged column whose rows make the windows.
        length: rows per window, at least 1.
        stride: rows between the starts of consecutive windows of an item, at least 1.
        columns: the columns to read (fixed ones, and ragged ones with the same offsets as
            ``column``); default: all of those. A ragged column with other lengths is refused.
        context: rows before each window to return as well (``c_context``), at least 0.
        require_context: start the windows at row ``context``, so no context row is missing.
        indices: the cache items to cut (a split, one federated client), or a boolean mask with one entry
            per cache item; default: all, in order.
    """

    def __init__(self, cache: Cache, column: str, length: int, stride: int = 1, *,
                 columns: Sequence[str] | None = None, context: int = 0, require_context: bool = False,
                 indices: Indices | None = None):
        _source(cache, column, "Windows")
        self.cache, self.column = cache, column
        self.length = whole(length, "length", 1, ViewError)
        self.stride = whole(stride, "stride", 1, ViewError)
        self.context = whole(context, "context", 0, ViewError)
        self.require_context = flag(require_context, "require_context", ViewError)
        self._fixed, self._ragged = _aligned(cache, column, names(columns, "columns", ViewError))
        self.columns = self._fixed + self._ragged
        self.offsets = np.array(cache.column(column).offsets)  # type: ignore[union-attr]
        self.items = _items(cache, indices)
        items = np.arange(len(cache), dtype=np.int64) if self.items is None else self.items
        first = self.context if self.require_context else 0
        rows = self.offsets[items + 1] - self.offsets[items]
        count = np.maximum((rows - first - self.length) // self.stride + 1, 0)
        self.item = np.repeat(items, count)
        within = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        self.start = first + within * self.stride
        self._check_keys()

    def sort_key(self, idx: np.ndarray) -> None:
        """None: a window is read in the drawn order. Each sample is one run of ``context + length`` rows in
        file order already, so sorting the runs saved nothing on cold reads (12.5 ms per batch of 8 windows
        of 32 x 3x64x64 frames either way, 15.1 vs 17.0 ms at 64, pages evicted first) while putting them
        back in the drawn order was a second copy of the batch (2.5 ms after a 2.7 ms gather at 64 warm)."""
        return None

    def plan(self, idx: np.ndarray, columns: Sequence[str] | None = None) -> Plan:
        """Rows of a batch: ``offsets[item] + start + arange(-context, length)``, for every sample at once."""
        item, start = self.item[idx], self.start[idx]
        base = (self.offsets[item] + start)[:, None]
        window = base + np.arange(self.length)
        extra = {"item": item, "start": start}
        if self.context:
            back = np.arange(-self.context, 0)
            mask = start[:, None] + back >= 0
            extra["context_mask"] = mask
            before = np.where(mask, base + back, base)  # a missing row reads the window's first row, then is zeroed
            valid = None if mask.all() else mask
        takes = []
        for name in _select(self.columns, columns, self):
            if name in self._fixed:
                takes.append(Take(name, (Part(name, item),)))
            elif self.context:  # context rows first, then the window: one gather, two contiguous outputs
                takes.append(Take(name, (Part(f"{name}_context", before, valid), Part(name, window))))
            else:
                takes.append(Take(name, (Part(name, window),)))
        return Plan(tuple(takes), extra)

    def identity(self) -> dict[str, Any]:
        return {"view": "windows", "column": self.column, "length": self.length, "stride": self.stride,
                "context": self.context, "require_context": self.require_context, "items": subset_id(self.items),
                "len": len(self)}

    def __repr__(self) -> str:
        return (f"Windows({self.cache.path.name!r}, {self.column!r}, length={self.length}, stride={self.stride}, "
                f"context={self.context}, windows={len(self)}, columns={self.columns})")


class Elements(View):
    """One item per row of a ragged column: each cardiac cycle of each recording is one sample.

    An item (and a batch) holds, for each ragged column with the same offsets as ``column``,
    its row (``(*row shape)``); every fixed column of the row's cache item; ``item``, the
    cache item; and ``element``, the row's position within that item. An empty item gives
    no elements.

    Args:
        cache: the cache to read.
        column: the ragged column whose rows become the items.
        columns: the columns to read (fixed ones, and ragged ones with the same offsets as
            ``column``); default: all of those. A ragged column with other lengths is refused.
        indices: the cache items whose rows to use, or a boolean mask with one entry per cache item;
            default: all, in order.
    """

    def __init__(self, cache: Cache, column: str, *, columns: Sequence[str] | None = None,
                 indices: Indices | None = None):
        _source(cache, column, "Elements")
        self.cache, self.column = cache, column
        self._fixed, self._ragged = _aligned(cache, column, names(columns, "columns", ViewError))
        self.columns = self._fixed + self._ragged
        offsets = np.asarray(cache.column(column).offsets)  # type: ignore[union-attr]
        self.items = _items(cache, indices)
        items = np.arange(len(cache), dtype=np.int64) if self.items is None else self.items
        count = offsets[items + 1] - offsets[items]
        self.item = np.repeat(items, count)
        self.element = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        self.row = offsets[self.item] + self.element
        self._check_keys()

    def sort_key(self, idx: np.ndarray) -> np.ndarray:
        return self.row[idx]

    def plan(self, idx: np.ndarray, columns: Sequence[str] | None = None) -> Plan:
        item, row = self.item[idx], self.row[idx]
        takes = tuple(Take(n, (Part(n, item if n in self._fixed else row),))
                      for n in _select(self.columns, columns, self))
        return Plan(takes, {"item": item, "element": self.element[idx]})

    def identity(self) -> dict[str, Any]:
        return {"view": "elements", "column": self.column, "items": subset_id(self.items), "len": len(self)}

    def __repr__(self) -> str:
        return f"Elements({self.cache.path.name!r}, {self.column!r}, elements={len(self)}, columns={self.columns})"


class Items(View):
    """The cache itself as a view: one item per cache item, what ``Loader(cache)`` reads.

    A ragged column gives each sample's whole item: a list of arrays, or with ``pad=True`` one
    array zero-padded to the longest item of the batch plus ``<column>_lengths``. A ragged N-D
    column (items of different shapes) gives a list of arrays at their own shapes, or with
    ``pad=True`` one array zero-padded on every axis to the batch's largest plus
    ``<column>_shape`` (``(B, ndim)``).
    """

    def __init__(self, cache: Cache, columns: Sequence[str] | None = None, pad: bool = False):
        self.cache, self.pad = cache, bool(pad)
        self.columns = list(cache.columns) if columns is None else list(columns)
        for name in self.columns:
            if name not in cache.specs:
                raise ViewError(f"{cache.path} has no column {name!r}; its columns are {cache.columns}")
        self.item = np.arange(len(cache), dtype=np.int64)
        if self.pad:
            self._check_keys()

    def sort_key(self, idx: np.ndarray) -> np.ndarray:
        return idx

    def plan(self, idx: np.ndarray, columns: Sequence[str] | None = None) -> Plan:
        takes, extra = [], {}
        for name in _select(self.columns, columns, self):
            col = self.cache.column(name)
            if isinstance(col, Shaped):  # whole N-D items: a list at their shapes, or padded on every axis
                shapes = np.asarray(col.shapes[idx])
                counts = np.prod(shapes, axis=1, dtype=np.int64)
                takes.append(Take(name, (Part(name, idx),), counts, shapes, self.pad))
                if self.pad:
                    extra[f"{name}_shape"] = shapes
                continue
            if not isinstance(col, Ragged):
                takes.append(Take(name, (Part(name, idx),)))
                continue
            first = np.asarray(col.offsets[idx])
            lengths = np.asarray(col.offsets[idx + 1]) - first
            if self.pad:
                width = np.arange(int(lengths.max()) if len(lengths) else 0)
                valid = width < lengths[:, None]
                rows = np.where(valid, first[:, None] + width, 0)
                takes.append(Take(name, (Part(name, rows, None if valid.all() else valid),)))
                extra[f"{name}_lengths"] = lengths
            else:
                total = int(lengths.sum())
                rows = np.arange(total, dtype=np.int64) + np.repeat(first - (np.cumsum(lengths) - lengths), lengths)
                takes.append(Take(name, (Part(name, rows),), lengths))
        return Plan(tuple(takes), extra)

    def identity(self) -> dict[str, Any]:
        return {"view": "items", "len": len(self)}

    def __repr__(self) -> str:
        return f"Items({self.cache.path.name!r}, items={len(self)}, columns={self.columns}, pad={self.pad})"


def refuse_shaped_convert(convert: Any, cache: Cache) -> None:
    """Loader(convert=...) converts rows as it gathers them; items of a ragged N-D column have no common rows."""
    shaped = [n for n in convert or () if n in cache.specs and cache.specs[n].shaped]
    if shaped:
        raise ViewError(f"convert={{{shaped[0]!r}: ...}}: column {shaped[0]!r} of {cache.path} holds items of "
                        f"different shapes ({_varying(cache, shaped[0])}), which the gather does not convert; "
                        "convert them in transform, on the device")


def _select(own: list[str], columns: Sequence[str] | None, view: View) -> list[str]:
    if columns is None:
        return own
    missing = [c for c in columns if c not in own]
    if missing:
        raise ViewError(f"columns {missing} are not columns of {view!r}; pick from {own}")
    return list(columns)


def _row(value: Any, j: int) -> Any:
    """Sample ``j`` of a batch output: a 0-d array for a scalar column, as ``cache[i]`` gives."""
    return value[j, ...] if isinstance(value, np.ndarray) else value[j]
