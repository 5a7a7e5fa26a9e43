"""The worker side of the schema (bake/schema.py): fit each item to the provisional specs, spill the rest.

An item whose value fits a column's provisional spec (its shape, a dtype the column holds
exactly) is written where the column's rows go: the memory map, or the chunk's ragged shard. A
value that does not fit (another size, another dtype, a longer string) is appended to the
chunk's spill shard ``_shards/<col>.<chunk>.spill.bin`` as raw C-order bytes, its row, dtype
and shape reported in the :class:`~prebake.bake.plan.ChunkResult`; the spill shard is written
beside the others, made durable before the chunk is journaled, and stitched in at commit. Once a
chunk has spilled a column, the chunks handed out after it spill every item of that column
(the parent passes the set with each task): the commit rewrites such a column anyway, so each
item is written once before it, never into the provisional rows as well.
A uniform source spills nothing, and its items cost a dtype and shape comparison per column
(a uniform CIFAR build, 60,000 items: 1.03x the time before, benchmarks/bake.py's data).
An item with no elements is counted apart from the dtypes (it never votes one, bake/schema.py),
and is written where the column's rows go when its dtype is of the column's family. Each chunk
also reports the min and max of its values per integer dtype, which lets a float promotion hold
them: taken from the statistics the chunk computes anyway, so they cost no pass of their own.

The columns that stages read stay strict: a stage batches them in one shape, so an item that
does not fit is a bad item, as it always was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xxhash

from ..cache.format import ColumnSpec, validate_dtype
from ..cache.stats import add_stats, chunk_stats, spans_dtype
from ..errors import BadItemError, FormatError, opt
from ..sources.notes import note
from .direct import DirectWriter
from .placed import PlacedWriter, placeable
from .plan import placed_files, spill_shard
from .schema import cast_checked, family, fits
from .skips import FIRST_HAD, OTHER_COLUMNS
from .space import NO_ROOM

Fitted = tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.dtype], dict[str, np.dtype] | None]
_INT64 = np.dtype(np.int64)


class Fitter:
    """Fits items to the provisional ``specs`` (the user's ``given`` dtypes applied; ``strict``: the columns
    that never spill; ``varying``: the columns that earlier chunks spilled, whose every item spills: the commit
    rewrites them from every item, so a row written into the provisional column would be written twice).
    Prepared once per chunk: this runs for every item, so it does only what it must."""

    def __init__(self, specs: Sequence[ColumnSpec], given: Mapping[str, str], strict: frozenset[str] = frozenset(),
                 varying: frozenset[str] = frozenset()):
        self.names = frozenset(c.name for c in specs)
        self.columns = [(c, np.dtype(c.dtype), None if given.get(c.name) is None else np.dtype(given[c.name]),
                         c.name in strict, c.name in varying and c.name not in strict,
                         c.ragged or 0 in c.shape or c.name in varying) for c in specs]

    def __call__(self, item: Mapping[str, Any]) -> Fitted:
        """``(values that fit their column, values that spill, the dtype of each column whose value has elements and
        was not of its provisional dtype, the dtype of each column whose value has none (None when no column's);
        both as the item had them)``; a BadItemError for an invalid item."""
        if item.keys() != self.names:
            _check_names(item, self.names)
        placed, spilled, dtypes = {}, {}, {}
        empty: dict[str, np.dtype] | None = None  # rare: made when needed (this runs for every item)
        for c, dtype, given, strict, varies, hollow in self.columns:
            raw = item[c.name]
            v = checked_value(c, raw, given)
            had = v.dtype if given is None else np.asarray(raw).dtype
            if had is not dtype and had != dtype or hollow and not v.size:
                if v.size:
                    dtypes[c.name] = had
                else:  # no value to hold: any dtype of its family holds it (bake/schema.py)
                    empty = {**(empty or {}), c.name: had}
            if varies:  # the commit rewrites this column anyway: its items are written once, to the spill shard
                spilled[c.name] = v
            elif (v.dtype is dtype or fits(v.dtype, dtype) or empty and c.name in empty and
                  family(v.dtype) == family(dtype)) and _fits_shape(v.shape, c):
                placed[c.name] = v if v.dtype is dtype else v.astype(dtype)
            elif strict:
                raise BadItemError(_unlike(c, v))
            else:
                spilled[c.name] = v
                if not v.size:  # of the provisional dtype, in a fixed column of another shape
                    empty = {**(empty or {}), c.name: had}
        return placed, spilled, dtypes, empty


def _check_names(item: Mapping[str, Any], names: frozenset[str]) -> None:
    """An item whose keys are not the columns': recorded as bad with :data:`OTHER_COLUMNS`, which the commit
    turns into a SchemaError for the whole build (skips.check_column_sets), so the order of the items never
    decides which of them are kept."""
    raise BadItemError(f"{OTHER_COLUMNS} {sorted(item)!r}{FIRST_HAD}{sorted(names)!r})")


def fit_item(item: Mapping[str, Any], specs: Sequence[ColumnSpec], given: Mapping[str, str],
             strict: frozenset[str] = frozenset()) -> Fitted:
    """One item fitted to ``specs`` (see :class:`Fitter`)."""
    return Fitter(specs, given, strict)(item)


def checked_value(c: ColumnSpec, value: Any, given: np.dtype | None) -> np.ndarray:
    """The item's value of column ``c`` as an array: of the user's dtype when given, labels as int64."""
    v = np.asarray(value)
    dt = v.dtype
    if dt.kind in "US":
        _note_trailing_nul(value, c.name)
    if dt.hasobject or dt.fields is not None:
        try:
            validate_dtype(dt, c.name)
        except FormatError as e:
            raise BadItemError(str(e)) from None
    if given is not None:
        v = cast_checked(v, given, c.name)
    elif dt.kind in "iu" and dt is not _INT64 and dt != _INT64 and c.name == "label":
        v = cast_checked(v, _INT64, c.name)  # labels are int64, as torch expects
    if v.dtype.kind in "fc" and not np.isfinite(v).all():
        raise BadItemError(f"column {c.name!r} contains NaN or Inf")
    if c.ragged and v.ndim == 0:
        raise BadItemError(f"column {c.name!r} is ragged, but this item's value is a scalar; give every item an "
                           "array of at least one axis")
    return v


def _note_trailing_nul(value: Any, column: str) -> None:
    """Count the Python strings or bytes that end in NUL: numpy's fixed-width ``U``/``S`` cannot hold a trailing
    NUL (``np.asarray(b"ab\\x00")`` is ``b"ab"``), so each reads back without it; said, not silently lost."""
    values = value if isinstance(value, (list, tuple)) else (value,)
    cut = sum(1 for x in values if isinstance(x, (str, bytes)) and x[-1:] in ("\x00", b"\x00"))
    if cut:
        note(f"values of column {column!r} that end in NUL (\\x00), which numpy's fixed-width strings cannot hold: "
             "they read back without their trailing NULs; store such values as uint8 arrays to keep them", cut)


def _fits_shape(shape: tuple[int, ...], c: ColumnSpec) -> bool:
    if not c.ragged:
        return shape == c.shape
    if c.shaped:
        return len(shape) == len(c.shape) and all(s is None or s == n for s, n in zip(c.shape, shape))
    return shape[1:] == c.shape


def _unlike(c: ColumnSpec, v: np.ndarray) -> str:
    """Why a stage's input does not take this item: stages batch their inputs in one shape and dtype."""
    want = ("(n, " + ", ".join(map(str, c.shape)) + ")") if c.ragged and not c.shaped else str(c.shape)
    hint = ""
    if c.name == "image":
        hint = (f"; give every volume one shape with {opt('volume_shape')}" if v.ndim == 4 else
                f"; give every image one size with {opt('image_size')}")
    return (f"column {c.name!r} has dtype {v.dtype} and shape {v.shape}, a stage reads it as {np.dtype(c.dtype)} "
            f"{want} like the first item{hint}")


def _count(acc: dict[np.dtype, list[int]], dtype: np.dtype, row: int) -> None:
    entry = acc.get(dtype)
    if entry is None:
        acc[dtype] = [1, row]
    else:
        entry[0] += 1


def _widen(acc: dict[np.dtype, list[int]], dtype: np.dtype, lo: int, hi: int) -> None:
    """``[lo, hi]`` into the range of ``dtype``'s values, kept under its native byte order: a ``>i8`` item placed in
    a ``<i8`` column's rows is among that column's statistics."""
    key = dtype.newbyteorder("=")
    span = acc.get(key)
    acc[key] = [int(lo), int(hi)] if span is None else [min(span[0], int(lo)), max(span[1], int(hi))]


class ChunkSink:
    """What one chunk records beyond its rows: the dtypes of its items, the range of its integer values, and the
    values that spilled (each at its row's place in the column's placed file when ``offsets`` lays the column out and
    the value is the size predicted there, bake/placed.py; else to the chunk's spill shard)."""

    def __init__(self, partial: Any, chunk: int, specs: Sequence[ColumnSpec],
                 offsets: Mapping[str, np.ndarray] | None = None):
        self.partial, self.chunk, self._offsets = partial, chunk, offsets or {}
        self._dtypes = {c.name: np.dtype(c.dtype) for c in specs}
        self._seen: dict[str, dict[np.dtype, list[int]]] = {c.name: {} for c in specs}  # other dtypes than the spec's
        self._empty: dict[str, dict[np.dtype, list[int]]] = {}  # items with no elements, by dtype
        self._ranges: dict[str, dict[np.dtype, list[int]]] = {}  # the spilled integer values' [min, max], by dtype
        self._held: set[tuple[str, np.dtype]] = set()  # (column, dtype) whose range spans the dtype: chunk_stats
        self._good = 0
        self._first: dict[str, int] = {}  # per column, the first good row of the spec's dtype
        self._pending = set(self._dtypes)
        self.spills: dict[str, list[list[Any]]] = {}
        self.placed: dict[str, list[int]] = {}
        self.stats: dict[str, list[Any]] = {}
        self._files: dict[str, DirectWriter] = {}
        self._placers: dict[str, PlacedWriter] = {}
        self._hashes: dict[str, xxhash.xxh3_64] = {}  # per placed column, its bytes written so far, in row order

    def add(self, row: int, spilled: Mapping[str, np.ndarray], dtypes: Mapping[str, np.dtype],
            empty: Mapping[str, np.dtype] | None = None) -> None:
        """Record a good item: the columns whose dtype was not the spec's (``dtypes``) and those whose value has no
        elements (``empty``; the others are counted without a per-column step), and its spilled values appended to
        their shards."""
        self._good += 1
        if self._pending:
            for name in [n for n in self._pending if n not in dtypes and not (empty and n in empty)]:
                self._first[name] = row
                self._pending.discard(name)
        for name, dtype in dtypes.items():
            _count(self._seen[name], dtype, row)
        if empty:
            for name, dtype in empty.items():
                _count(self._empty.setdefault(name, {}), dtype, row)
        for name, v in spilled.items():
            at = placeable(self._offsets, name, row, v, self._dtypes[name]) if self._offsets else -1
            self._write(name, v, at)
            if at >= 0:
                self.placed.setdefault(name, []).append(row)
            self.spills.setdefault(name, []).append([row, v.dtype.str, list(v.shape)])
            held = (name, v.dtype) in self._held
            s = chunk_stats(v, held)
            if s is not None:
                self.stats[name] = add_stats(self.stats.get(name), s)
                if v.dtype.kind in "iu" and not held:
                    ranges = self._ranges.setdefault(name, {})
                    _widen(ranges, v.dtype, s[0], s[1])
                    if spans_dtype(ranges[v.dtype.newbyteorder("=")], v.dtype):
                        self._held.add((name, v.dtype))

    @property
    def seen(self) -> dict[str, dict[str, list[int]]]:
        """Per column, ``{dtype string: [items, first row]}`` of the items with elements (what
        :attr:`ChunkResult.seen` holds)."""
        out = {}
        for name, got in self._seen.items():
            plain = self._good - sum(n for n, _ in got.values()) - sum(n for n, _ in self._empty.get(name, {}).values())
            first = {self._dtypes[name].str: [plain, self._first[name]]} if plain else {}
            out[name] = {**first, **{d.str: entry for d, entry in got.items()}}
        return out

    @property
    def empty(self) -> dict[str, dict[str, list[int]]]:
        """Per column that had any, ``{dtype string: [items, first row]}`` of the items with no elements."""
        return {name: {d.str: entry for d, entry in got.items()} for name, got in self._empty.items()}

    def ranges(self, placed: Mapping[str, list[Any]]) -> dict[str, dict[str, list[int]]]:
        """Per column, ``{integer dtype string, native byte order: [min, max]}`` of the chunk's values (what
        :attr:`ChunkResult.ranges` holds): the spilled ones by their dtype, and those in the provisional rows
        (``placed``: their ``[min, max, sum, count]``) under the provisional dtype, which they were written as."""
        out = {name: dict(got) for name, got in self._ranges.items()}
        for name, s in placed.items():
            if self._dtypes[name].kind in "iu":
                _widen(out.setdefault(name, {}), self._dtypes[name], s[0], s[1])
        return {name: {d.str: span for d, span in got.items()} for name, got in out.items()}

    def _write(self, name: str, v: np.ndarray, at: int = -1) -> None:
        """``v``'s bytes appended to the chunk's spill shard of column ``name`` (``at`` < 0), or at byte ``at`` of
        the column's placed file; a full disk is a DiskFullError, and the chunk's shards are dropped."""
        data = np.ascontiguousarray(v).reshape(-1)
        payload = data.view(np.uint8).data if data.size else b""
        try:
            if at < 0:
                self._shard(name).write(payload)
            else:
                placer = self._placer(name)
                placer.seek(at)
                placer.write(payload)
                self._hashes[name].update(payload)
        except OSError as e:
            self.abandon()
            if e.errno in NO_ROOM:
                raise self.partial._no_room(e, data.nbytes) from None
            raise

    def _shard(self, name: str) -> DirectWriter:
        f = self._files.get(name)
        if f is None:
            fd = self.partial.shards_fd()
            tmp = spill_shard(self.partial.path, name, self.chunk).name + ".tmp"
            f = self._files[name] = DirectWriter(lambda flags: os.open(tmp, flags, 0o644, dir_fd=fd))
        return f

    def span_digests(self, rows: int) -> dict[str, str]:
        """Per column whose ``rows`` rows (all of the chunk's) were placed, the xxh3-64 of their bytes in row order:
        the chunk's span of the placed file, hashed from memory as it was written (cache/spans.py)."""
        return {name: h.hexdigest() for name, h in self._hashes.items() if len(self.placed.get(name, ())) == rows}

    def _placer(self, name: str) -> PlacedWriter:
        f = self._placers.get(name)
        if f is None:
            self._hashes[name] = xxhash.xxh3_64()
            f = self._placers[name] = PlacedWriter(placed_files(self.partial.path, name)[0].name,
                                                   self.partial.shards_fd())
        return f

    def finish(self) -> None:
        """Make the spill shards durable and move them to their names (the parent fsyncs them again before the
        journal, at no cost then). They are written past the page cache (bake/direct.py): the commit reads each
        once, from disk, and a page cache of every spilled byte costs more than that read."""
        fd = self.partial.shards_fd() if self._files else -1
        try:
            for p in self._placers.values():
                p.sync()
                p.close()
            self._placers.clear()
            for name, f in self._files.items():
                f.sync()
                f.close()
                final = spill_shard(self.partial.path, name, self.chunk).name
                os.replace(final + ".tmp", final, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as e:
            self.abandon()
            if e.errno in NO_ROOM:
                raise self.partial._no_room(e, 0) from None
            raise
        self._files.clear()

    def abandon(self) -> None:
        """Drop half-written spill shards (a failed chunk is redone whole, and writes its placed rows again)."""
        for p in self._placers.values():
            with contextlib.suppress(OSError):
                p.close()
        self._placers.clear()
        for name, f in self._files.items():
            tmp = spill_shard(self.partial.path, name, self.chunk).name + ".tmp"
            with contextlib.suppress(OSError):
                f.close()
                os.unlink(tmp, dir_fd=self.partial.shards_fd())
        self._files.clear()
