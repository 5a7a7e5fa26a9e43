"""What the workers wrote for one column, read back at commit: each good item's shape and value.

A column's items are where the workers put them (bake/spill.py): in the provisional fixed
column's rows, in the chunk's ragged shard (rows, or flat values with shapes for a ragged
N-D column), or, for an item that did not fit, in the chunk's spill shard, its dtype and
shape in the journal. :class:`Provisional` walks them in row order, skipped rows left out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.format import ColumnSpec
from .direct import DirectReader, drop_pages, enabled, read_ahead
from .placed import damaged, load_npy, read_offsets
from .plan import BuildPlan, ChunkResult, placed_files, shapes_shard, shard_files, spill_shard


class Provisional:
    """Column ``spec`` (its provisional spec) of the partial build at ``path``, over the journaled ``results``
    (in chunk order), ``good`` marking the rows that were not skipped."""

    def __init__(self, path: Path, plan: BuildPlan, spec: ColumnSpec, results: Sequence[ChunkResult],
                 good: np.ndarray):
        self.path, self.plan, self.spec, self.results, self.good = path, plan, spec, results, good
        self.spilled = sum(len(r.spills.get(spec.name, ())) for r in results)

    def _good_rows(self, r: ChunkResult) -> np.ndarray:
        rows = self.plan.chunk_range(r.chunk)
        return rows.start + np.flatnonzero(self.good[rows.start : rows.stop])

    def ndims(self, keys: Sequence[str]) -> dict[int, tuple[int, str]]:
        """``{ndim: (items, key of the first)}`` over the good items."""
        counts: dict[int, list[Any]] = {}
        for r in self.results:
            rows = self._good_rows(r)
            spills = r.spills.get(self.spec.name, [])
            spilled = {int(row): len(shape) for row, _, shape in spills}
            kept = rows[~np.isin(rows, np.array(list(spilled), dtype=np.int64))] if spilled else rows
            for ndim, n, first in [(self.spec.ndim, len(kept), int(kept[0]) if len(kept) else -1),
                                   *((d, 1, row) for row, d in spilled.items())]:
                if n:
                    entry = counts.setdefault(ndim, [0, first])
                    entry[0] += n
                    entry[1] = min(entry[1], first)
        return {d: (n, keys[first]) for d, (n, first) in sorted(counts.items())}

    def shapes(self) -> np.ndarray:
        """``(good items, ndim)`` int64: each good item's shape, in row order (every item has ``spec.ndim``
        axes: :meth:`ndims` is checked first)."""
        parts = [self._chunk_shapes(r) for r in self.results]
        return np.concatenate(parts) if parts else np.empty((0, self.spec.ndim), np.int64)

    def _chunk_shapes(self, r: ChunkResult) -> np.ndarray:
        rows = self._good_rows(r)
        spills = r.spills.get(self.spec.name, [])
        out = np.empty((len(rows), self.spec.ndim), np.int64)
        spilled = np.isin(rows, np.array([s[0] for s in spills], dtype=np.int64))
        out[~spilled] = self._stored_shapes(r.chunk, int((~spilled).sum()))
        if spills:
            out[spilled] = np.array([s[2] for s in spills], dtype=np.int64).reshape(len(spills), self.spec.ndim)
        return out

    def _stored_shapes(self, chunk: int, n: int) -> np.ndarray:
        """The shapes of the chunk's ``n`` items that fit the provisional spec."""
        s = self.spec
        if s.shaped:
            return load_npy(shapes_shard(self.path, s.name, chunk))
        if not s.ragged:
            return np.broadcast_to(np.array(s.shape, dtype=np.int64), (n, s.ndim))
        lengths = load_npy(shard_files(self.path, s.name, chunk)[1])
        return np.column_stack([lengths, np.broadcast_to(np.array(s.shape, np.int64), (len(lengths), len(s.shape)))])

    def items(self) -> Iterator[np.ndarray]:
        """Every good item's value in row order, as the workers stored it (its own dtype if it spilled)."""
        fixed = load_npy(self.path / self.spec.files[0], mmap=True) if not self.spec.ragged else None
        name = self.spec.name
        placed = placed_files(self.path, name)[0]
        placed_rows = any(r.placed.get(name) for r in self.results)
        table = read_offsets(self.path, name, self.plan.num_keys) if placed_rows else None
        shards = [_Spilled(spill_shard(self.path, name, r.chunk), r.spills.get(name, []), placed,
                           r.placed.get(name, ()), table) for r in self.results]
        for k, r in enumerate(self.results):
            stored = self._stored(r.chunk, fixed, self._good_rows(r), r.spills.get(self.spec.name, []))
            spilled = shards[k]
            if k + 1 < len(shards):
                shards[k + 1].prefetch()  # read from disk while this chunk's items are written
            try:
                for row in self._good_rows(r):
                    got = spilled.pop(int(row))
                    yield got if got is not None else next(stored)
            finally:
                spilled.close()

    def _stored(self, chunk: int, fixed: np.ndarray | None, rows: np.ndarray, spills: list[list[Any]]
                ) -> Iterator[np.ndarray]:
        s = self.spec
        if fixed is not None:
            skip = {int(x[0]) for x in spills}
            return (fixed[int(row)] for row in rows if int(row) not in skip)
        values_file, lengths_file = shard_files(self.path, s.name, chunk)
        values = load_npy(values_file, mmap=True)
        ends = np.cumsum(load_npy(lengths_file))
        shapes = load_npy(shapes_shard(self.path, s.name, chunk)) if s.shaped else None
        return _cut(values, ends, shapes)


def _cut(values: np.ndarray, ends: np.ndarray, shapes: np.ndarray | None) -> Iterator[np.ndarray]:
    start = 0
    for k, end in enumerate(ends.tolist()):
        piece = values[start:end]
        yield piece if shapes is None else piece.reshape(tuple(shapes[k]))
        start = end


class _File:
    """A file that spilled items are read from, opened on first use (past the page cache where it can be)."""

    def __init__(self, path: Path, items: int):
        self.path, self.items, self.size = path, items, -1
        self.reader: DirectReader | None = None

    def open(self) -> DirectReader:
        if self.reader is None:
            try:
                self.reader = DirectReader(lambda flags: os.open(self.path, flags))
            except FileNotFoundError:
                raise damaged(self.path, f"is missing, and the journal names {self.items} spilled items in it"
                               ) from None
            self.size = os.fstat(self.reader.fd).st_size
        return self.reader

    def read(self, out: np.ndarray, pos: int, row: int) -> None:
        reader = self.open()
        if self.size < pos + out.nbytes or reader.read_into(out, pos) < out.nbytes:
            raise damaged(self.path, f"ends before the {out.nbytes:,} bytes at {pos:,} that the journal names for "
                                      f"row {row}")

    def close(self) -> None:
        """Let its pages go (it is read once) and close it."""
        if self.reader is not None:
            if not self.reader.direct:
                drop_pages(self.reader.fd)
            self.reader.close()
            self.reader = None


class _Spilled:
    """The spilled items of a chunk, read one by one (``{row: value}`` by :meth:`pop`) from its spill shard, or,
    for the ``placed`` rows, from the column's placed file at their offsets in ``table`` (bake/placed.py), past
    the page cache, or through it with its pages let go once read: the commit reads each byte once (bake/direct.py
    says why)."""

    def __init__(self, file: Path, spills: list[list[Any]], placed_file: Path | None = None,
                 placed: Sequence[int] = (), table: np.ndarray | None = None):
        inplace = set(placed)
        self._files = (_File(file, len(spills) - len(inplace)), _File(placed_file or file, len(inplace)))
        self._at: dict[int, tuple[int, np.dtype, tuple[int, ...], int]] = {}
        pos = 0
        for row, d, shape in spills:
            dtype = np.dtype(d)
            if row in inplace and table is not None:
                self._at[int(row)] = (int(table[row]), dtype, tuple(shape), 1)
            else:
                self._at[int(row)] = (pos, dtype, tuple(shape), 0)
                pos += dtype.itemsize * math.prod(shape)

    def prefetch(self) -> None:
        """Start reading the shard from disk into the page cache, where it is read through it (the kernel goes
        on after the descriptor is closed); a read past the page cache has nothing to gain from it."""
        shard = self._files[0]
        if shard.items and not enabled():
            read_ahead(shard.open().fd)
            shard.close()

    def pop(self, row: int) -> np.ndarray | None:
        """Row ``row``'s spilled value, or None when it did not spill."""
        at = self._at.pop(row, None)
        if at is None:
            return None
        pos, dtype, shape, where = at
        out = np.empty(shape, dtype)
        if out.nbytes:
            self._files[where].read(out, pos, row)
        return out

    def close(self) -> None:
        for f in self._files:
            f.close()
