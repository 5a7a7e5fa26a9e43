"""What runs in a worker process: read items, transform them, write rows.

A worker gets a :class:`Job` by fork (the source's state is loaded once in the
parent), opens the memory-mapped columns once, and for each chunk writes its
rows in place; an item unlike the provisional specs spills (bake/spill.py). Only a
small :class:`~prebake.bake.plan.ChunkResult` goes back through the pipe.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache.format import ColumnSpec, validate_dtype
from ..cache.stats import add_stats, chunk_stats
from ..errors import BadItemError, FormatError, SourceError, StrictModeError, opt
from ..identity.reads import recording, take
from ..sources.base import Source
from ..sources.notes import take_notes
from ..steps.pipeline import Pipeline
from .mapped import MappedColumns
from .partial import PartialCache
from .placed import load_offsets
from .plan import ChunkResult
from .spill import ChunkSink, Fitter, fit_item
from .watchdog import working_on

if TYPE_CHECKING:
    from ..cache.reader import Cache


@dataclass
class Job:
    source: Source
    steps: Pipeline
    strict: bool = False
    partial: PartialCache | None = None
    _columns: MappedColumns | None = field(default=None, repr=False)
    _old: Cache | None = field(default=None, repr=False)
    _placed: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _pid: int = -1

    def columns(self) -> MappedColumns:
        if self._columns is None or self._pid != os.getpid():
            assert self.partial is not None
            self._columns, self._old, self._placed, self._pid = self.partial.open_columns(), None, None, os.getpid()
        return self._columns

    def placed(self) -> dict[str, np.ndarray]:
        """The byte offsets of each column laid out for placing (bake/placed.py), read once per process."""
        self.columns()  # (re)open per process
        if self._placed is None:
            assert self.partial is not None
            plan = self.partial.plan
            self._placed = load_offsets(self.partial.path, plan.item_columns, plan.num_keys)
        return self._placed

    def stage_inputs(self) -> frozenset[str]:
        """The item columns the stages read: they stay strict (a stage batches them in one shape)."""
        return frozenset(c for s in self.steps.stages for c in s.inputs)

    def old_cache(self) -> Cache:
        """The committed cache being replaced, whose unchanged rows are copied (read-only)."""
        self.columns()  # (re)open per process
        if self._old is None:
            from ..cache.reader import Cache  # imports torch: only a rebuild that copies rows needs it

            assert self.partial is not None
            self._old = Cache(self.partial.out)
        return self._old


def bake_item(job: Job, index: int) -> dict[str, Any]:
    """Read and transform one item; any failure becomes a BadItemError with the reason."""
    try:
        item = job.source.read(index)
        with recording():  # the files the transforms open enter the fingerprint (identity/reads.py)
            return job.steps(item)
    except BadItemError:
        raise
    except Exception as e:  # a user's dataset or transform: record it, keep the build going
        raise BadItemError(f"{type(e).__name__}: {e}") from e


def probe_specs(job: Job, ragged: Sequence[str], given: Mapping[str, str] | None = None) -> list[ColumnSpec]:
    """Provisional column specs from the first item that bakes; the commit decides from every item."""
    return probe(job, ragged, given)[0]


def probe(job: Job, ragged: Sequence[str], given: Mapping[str, str] | None = None, allow_empty: bool = False
          ) -> tuple[list[ColumnSpec], dict[str, np.ndarray]]:
    """The provisional column specs of the first item that bakes, and that item (its values as the specs hold them).

    ``given``: the user's dtype of some columns (``--dtype``), which the specs take. A bad item stops a strict
    build here as in a chunk. When no item bakes: a SourceError, or, with ``allow_empty``, no columns at all
    (every item is then skipped with its own reason, and the build commits a cache of none)."""
    given = dict(given or {})
    reasons = []
    for i in range(len(job.source)):
        try:
            item = bake_item(job, i)
            specs = [spec_of(name, value, name in ragged, given.get(name)) for name, value in item.items()]
            return specs, fit_item(item, specs, given)[0]
        except BadItemError as e:
            if job.strict:
                raise _strict_stop(job, i, e) from e
            reasons.append(f"{job.source.keys()[i]}: {e.reason}")
    if allow_empty:
        return [], {}
    shown = "; ".join(reasons[:3]) or "the source has no items"
    more = "; ..." if len(reasons) > 3 else ""
    fix = f"; {'fix the inputs, or ' if reasons else ''}pass {opt('allow_empty')} to commit an empty cache"
    raise SourceError(f"no item of the source could be baked ({shown}{more}){fix}").counted(
        0, len(job.source), len(reasons))


def spec_of(name: str, value: Any, ragged: bool, given: str | None = None) -> ColumnSpec:
    v = np.asarray(value)
    try:
        validate_dtype(v.dtype, name)
    except FormatError as e:
        raise BadItemError(str(e)) from None
    dtype = np.dtype(given) if given is not None else v.dtype
    if given is None and name == "label" and dtype.kind in "iu":
        dtype = np.dtype(np.int64)  # labels are int64, as torch expects
    if ragged and v.ndim == 0:
        raise SourceError(f"column {name!r} is listed as ragged but its first item is a scalar")
    return ColumnSpec.of(name, dtype, v.shape[1:] if ragged else v.shape, ragged)


def run_chunk(job: Job, chunk: int, reuse: np.ndarray | None = None, varying: Iterable[str] = ()) -> ChunkResult:
    """Bake one chunk: rows into the memory maps, ragged items into a shard, items unlike the provisional
    specs, and every item of the ``varying`` columns (those earlier chunks spilled), into a spill shard
    (bake/spill.py).

    ``reuse[k] >= 0`` means item ``rows[k]`` is row ``reuse[k]`` of the old cache: copied, not baked.
    """
    assert job.partial is not None
    plan = job.partial.plan
    rows = plan.chunk_range(chunk)
    mapped = job.columns()
    cols = mapped.arrays
    item_columns = plan.item_columns  # the stages' outputs are written by the building process
    fixed = [(c.name, cols[c.name]) for c in plan.fixed]
    ragged: dict[str, list[np.ndarray]] = {c.name: [] for c in item_columns if c.ragged}
    offsets = job.placed()
    spill_all = (frozenset(varying) | frozenset(offsets)) - job.stage_inputs()  # a laid-out column is placed whole
    fit = Fitter(item_columns, plan.given, job.stage_inputs(), spill_all)
    take_notes()  # what a read before this chunk noted (the probe's item) is not this chunk's
    result = ChunkResult(chunk)
    sink = ChunkSink(job.partial, chunk, item_columns, offsets)
    try:
        for k, i in enumerate(rows):
            working_on(i)
            try:
                if reuse is not None and reuse[k] >= 0:  # as the old cache holds it, the stages' outputs too
                    placed = _old_row(job, plan.columns, int(reuse[k]))
                    spilled = {name: np.asarray(placed.pop(name)) for name in spill_all if name in placed}
                    dtypes, empty = _other_dtypes({**placed, **spilled}, item_columns)
                else:
                    placed, spilled, dtypes, empty = fit(bake_item(job, i))
            except BadItemError as e:
                if job.strict:
                    raise _strict_stop(job, i, e) from e
                result.bad.append((i, e.reason))
                continue
            sink.add(i, spilled, dtypes, empty)
            for name, column in fixed:
                if name in placed:
                    column[i] = placed[name]
            for name, items in ragged.items():
                if name in placed:
                    items.append(placed[name])
        sink.finish()
    except BaseException:
        sink.abandon()
        raise
    working_on(-1)
    mapped.flush_rows(rows.start, rows.stop, skip=spill_all)  # no row of a spilled column was written
    for c in item_columns:
        if c.ragged:
            job.partial.write_shard(c, chunk, ragged[c.name])
    item_fixed = [c for c in item_columns if not c.ragged]
    placed_stats = _placed_stats(cols, ragged, item_fixed, rows, result.bad, sink)
    result.stats = _chunk_stats(placed_stats, sink)
    result.seen, result.empty, result.ranges = sink.seen, sink.empty, sink.ranges(placed_stats)
    result.spills, result.placed = sink.spills, sink.placed
    result.spans = sink.span_digests(len(rows))
    result.reads = take()
    result.notes = take_notes()
    return result


def _other_dtypes(row: Mapping[str, Any], columns: Sequence[ColumnSpec]) -> tuple[dict[str, np.dtype],
                                                                                  dict[str, np.dtype] | None]:
    """The columns of a reused row whose dtype is not the provisional spec's, and those whose value has no elements
    (see ChunkSink.add)."""
    values = {c.name: (np.asarray(row[c.name]), np.dtype(c.dtype)) for c in columns if c.name in row}
    empty = {name: v.dtype for name, (v, _) in values.items() if not v.size}
    return {name: v.dtype for name, (v, spec) in values.items() if v.dtype != spec and name not in empty}, empty or None


def _old_row(job: Job, columns: Sequence[ColumnSpec], row: int) -> dict[str, Any]:
    """Row ``row`` of the cache being replaced, for every column it has. A column kept only while
    building (a stage input with keep=False) is not there: an empty ragged item stands in for it,
    and a fixed one is left as it is (neither reaches the finished cache)."""
    old = job.old_cache()
    item: dict[str, Any] = {}
    for c in columns:
        if c.name in old.specs:
            item[c.name] = old.column(c.name)[row]
        elif c.ragged:
            item[c.name] = np.empty((0, *c.shape), dtype=np.dtype(c.dtype))
    return item


def _strict_stop(job: Job, index: int, e: BadItemError) -> StrictModeError:
    return StrictModeError(f"{_where(job, index)}: {e.reason} ({opt('strict')} stops at the first bad item)")


def _where(job: Job, index: int) -> str:
    """The item's key and the source it belongs to (called once, on a strict failure)."""
    key = job.source.keys()[index]
    root = job.source.describe().get("root")
    return f"{key} (in {root})" if root else key


def _placed_stats(cols: dict[str, np.ndarray], ragged: dict[str, list[np.ndarray]], fixed: Sequence[ColumnSpec],
                  rows: range, bad: list[tuple[int, str]], sink: ChunkSink) -> dict[str, list[Any]]:
    """Each column's ``[min, max, sum, count]`` over the chunk's good items in its provisional rows (not spilled):
    the statistics, and the range of the provisional dtype's values (ChunkSink.ranges), in one pass."""
    good = np.ones(len(rows), dtype=bool)
    good[np.array([i - rows.start for i, _ in bad], dtype=np.int64)] = False
    out = {}
    for c in fixed:
        block = cols[c.name][rows.start : rows.stop]
        kept = good.copy()
        kept[np.array([s[0] - rows.start for s in sink.spills.get(c.name, ())], dtype=np.int64)] = False
        s = chunk_stats(block if kept.all() else block[kept])
        if s is not None:
            out[c.name] = s
    for name, items in ragged.items():
        s = chunk_stats(np.concatenate([a.reshape(-1) for a in items])) if items else None
        if s is not None:
            out[name] = s
    return out


def _chunk_stats(placed: Mapping[str, list[Any]], sink: ChunkSink) -> dict[str, list[Any]]:
    """Each column's ``[min, max, sum, count]`` over the chunk's good items, spilled ones included."""
    out = dict(placed)
    for name, s in sink.stats.items():
        out[name] = add_stats(out.get(name), s)
    return out
