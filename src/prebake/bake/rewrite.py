"""At commit: decide every column from every item, and rewrite the columns whose decision changed them.

:func:`decide` applies the rules of :mod:`prebake.bake.schema` to what the workers reported
(the dtypes seen, the spilled items) and what they wrote (the shapes in the shards): its
result depends on the set of items only, never on their order. A column whose final spec is
its provisional one and that spilled nothing is left as it is (a uniform source: every
column). :func:`rewrite_columns` writes the others, with the skipped rows dropped, into
``_rewrite/`` beside the partial build, then marks them done (``_rewritten``) and renames
them into place, as :func:`~prebake.bake.commit._compact` does: a kill at any point re-runs
it to the same bytes (tests/bake/test_schema_crash.py kills it at each step).
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.files import fsync_path
from ..cache.format import REWRITE, REWRITTEN, ColumnSpec
from ..cache.spans import SPAN_ROWS
from ..errors import PrebakeError, SchemaError
from .npyfile import save_npy
from .plan import BuildPlan, ChunkResult
from .provisional import Provisional
from .schema import check_families, check_ndims, layout, promote, schema_entry
from .space import check_free
from .streamed import HEAD, NpyStream, npy_header, read_checksum


@dataclass
class Decision:
    """A column's final ``spec`` and its manifest ``schema`` record; ``rewrite``: its files must be rewritten
    (from ``source``, whose item ``shapes`` are known)."""

    spec: ColumnSpec
    schema: dict[str, Any]
    rewrite: bool = False
    source: Provisional | None = field(default=None, repr=False)
    shapes: np.ndarray | None = field(default=None, repr=False)


def decide(path: Path, plan: BuildPlan, results: Sequence[ChunkResult], good: np.ndarray,
           keys: Sequence[str]) -> dict[str, Decision]:
    """The final spec of every column of the finished cache (a SchemaError when the items cannot share one)."""
    return {c.name: _decide(path, plan, c, results, good, keys) for c in plan.kept}


def _decide(path: Path, plan: BuildPlan, c: ColumnSpec, results: Sequence[ChunkResult], good: np.ndarray,
            keys: Sequence[str]) -> Decision:
    source = Provisional(path, plan, c, results, good)
    seen, empty, ranges = _seen(plan, c, results, good, keys)
    if not seen and not empty:  # no good item: nothing to decide from
        return Decision(c, schema_entry({}, "uniform", (), ()))
    given = plan.given.get(c.name)
    dtype, rule = (np.dtype(given), "given") if given is not None else promote(
        c.name, seen, empty, ranges, holder(path, plan, c, results, good, lambda: keys))
    seen, empty = (seen, empty) if seen else (empty, {})  # the dtypes that voted, and the empty items that did not
    check_ndims(c.name, source.ndims(keys))
    if source.spilled == 0 and not c.ragged:
        lo = hi = tuple(s for s in c.shape if s is not None)  # every item fits the provisional rows: nothing to read
        shapes = None
    else:
        shapes = source.shapes()
        lo, hi = tuple(int(x) for x in shapes.min(axis=0)), tuple(int(x) for x in shapes.max(axis=0))
    shape, ragged = layout(lo, hi, declared=c.name in plan.declared or (c.ragged and c.name in plan.staged))
    spec = ColumnSpec.of(c.name, dtype, shape, ragged)
    entry = schema_entry(seen, rule, lo, hi, empty)
    if spec == c and source.spilled == 0:
        return Decision(spec, entry)
    return Decision(spec, entry, True, source, source.shapes() if shapes is None else shapes)


def _seen(plan: BuildPlan, c: ColumnSpec, results: Sequence[ChunkResult], good: np.ndarray, keys: Sequence[str]
          ) -> tuple[dict[str, tuple[int, str]], dict[str, tuple[int, str]], dict[str, tuple[int, int] | None]]:
    """``{dtype: (items, key of the first)}`` of column ``c``'s good items with elements, the same of those with
    none, and ``{integer dtype: (min, max) of its values, or None: unknown}``; a chunk that reported no dtypes (a
    stage's output, a journal from an older prebake) holds the provisional dtype, its values unknown."""
    seen: dict[str, list[int]] = {}
    empty: dict[str, list[int]] = {}
    ranges: dict[str, list[int] | None] = {}
    for r in results:
        got = None if c.name in plan.staged else r.seen.get(c.name)
        if got is None:
            rows = plan.chunk_range(r.chunk)
            kept = rows.start + np.flatnonzero(good[rows.start : rows.stop])
            got = {c.dtype: [len(kept), int(kept[0])]} if len(kept) else {}
        _fold(seen, empty, ranges, got, r.empty.get(c.name, {}), r.ranges.get(c.name, {}))
    ranked = {d: (n, keys[first]) for d, (n, first) in seen.items() if n}
    return ranked, {d: (n, keys[first]) for d, (n, first) in empty.items() if n}, _spans(ranges)


def _fold(seen: dict[str, list[int]], empty: dict[str, list[int]], ranges: dict[str, list[int] | None],
          got: Mapping[str, list[int]], got_empty: Mapping[str, list[int]], got_ranges: Mapping[str, list[int]]
          ) -> None:
    """One chunk's dtypes, empty items and integer ranges added to the build's (an integer dtype the chunk saw
    without a range makes that dtype's values unknown)."""
    for d, (n, first) in got.items():
        _merge(seen, d, n, first)
        if n and np.dtype(d).kind in "iu":
            span, was = got_ranges.get(np.dtype(d).newbyteorder("=").str), ranges.get(d, [])  # ChunkSink.ranges
            if span is None or was is None:
                ranges[d] = None
            else:
                ranges[d] = [min(was[0], int(span[0])), max(was[1], int(span[1]))] if was else [int(x) for x in span]
    for d, (n, first) in got_empty.items():
        _merge(empty, d, n, first)


def _spans(ranges: Mapping[str, list[int] | None]) -> dict[str, tuple[int, int] | None]:
    return {d: None if span is None else (span[0], span[1]) for d, span in ranges.items()}


def holder(path: Path, plan: BuildPlan, c: ColumnSpec, results: Sequence[ChunkResult], good: np.ndarray,
           keys: Callable[[], Sequence[str]]) -> Callable[[np.dtype, int], str | None]:
    """``(dtype, value) -> key`` of the first good item of column ``c`` of that dtype that holds the integer
    ``value``, or None: what a refusal for a value names. It reads only the chunks whose recorded range of that
    dtype ends at the value (the workers record each chunk's [min, max], not where they are), and only when a
    refusal asks; a file it cannot read makes it None, never another error."""
    def find(dtype: np.dtype, value: int) -> str | None:
        native = np.dtype(dtype).newbyteorder("=")
        for r in results:
            span = r.ranges.get(c.name, {}).get(native.str)
            if span is None or value not in (int(span[0]), int(span[1])):
                continue
            rows = plan.chunk_range(r.chunk)
            kept = rows.start + np.flatnonzero(good[rows.start : rows.stop])
            try:
                for row, item in zip(kept, Provisional(path, plan, c, [r], good).items()):
                    if item.dtype.newbyteorder("=") == native and bool((item == value).any()):
                        return str(keys()[int(row)])
            except (OSError, ValueError, PrebakeError):
                return None
        return None
    return find


class SchemaSoFar:
    """The dtypes, integer ranges and axis counts of the chunks finished so far, checked by the rules :func:`decide`
    applies at commit, so a build whose items cannot share a column stops at the first chunk that shows it instead of
    baking to the end first. Only what stays refused as items are added refuses here: a mix of kinds, and the dtypes
    of the items with elements (while every item so far is empty, their dtypes may still be outvoted)."""

    def __init__(self, plan: BuildPlan, keys: Any, path: Path | None = None):
        self.keys = keys  # the source's keys(), called only to name items in a refusal
        self.path, self.plan = path, plan  # the partial build, where a refusal finds the item that holds a value
        self.results: list[ChunkResult] = []
        names = [c for c in plan.kept if c.name not in plan.staged and c.name not in plan.given]
        self.ndim = {c.name: c.ndim for c in names}
        self.seen: dict[str, dict[str, list[int]]] = {c.name: {} for c in names}
        self.empty: dict[str, dict[str, list[int]]] = {c.name: {} for c in names}
        self.ranges: dict[str, dict[str, list[int] | None]] = {c.name: {} for c in names}
        self.ndims: dict[str, dict[int, list[int]]] = {c.name: {} for c in names}

    def add(self, r: ChunkResult) -> None:
        self.results.append(r)
        for name, seen in self.seen.items():
            spills = r.spills.get(name, [])
            got, empty = r.seen.get(name, {}), r.empty.get(name, {})
            _fold(seen, self.empty[name], self.ranges[name], got, empty, r.ranges.get(name, {}))
            for row, _, shape in spills:
                _merge(self.ndims[name], len(shape), 1, row)
            counts = [*got.values(), *empty.values()]
            plain = sum(n for n, _ in counts) - len(spills)
            if plain > 0:  # the chunk's first good row stands for the items that fit
                _merge(self.ndims[name], self.ndim[name], plain, min(first for _, first in counts))
            if len(seen) + len(self.empty[name]) > 1 or len(self.ndims[name]) > 1:
                self._check(name)

    def _check(self, name: str) -> None:
        try:
            self._refuse(name, str)
            return
        except SchemaError:
            keys = self.keys()
        self._refuse(name, lambda first: keys[first], _holder_of(self, name))  # again, naming the items

    def _refuse(self, name: str, key: Any, holder: Callable[[np.dtype, int], str | None] | None = None) -> None:
        seen = {d: (n, key(first)) for d, (n, first) in self.seen[name].items()}
        empty = {d: (n, key(first)) for d, (n, first) in self.empty[name].items()}
        if seen:
            promote(name, seen, empty, _spans(self.ranges[name]), holder)
        else:
            check_families(name, seen, empty)
        check_ndims(name, {d: (n, key(first)) for d, (n, first) in self.ndims[name].items()})


def _holder_of(schema: SchemaSoFar, name: str) -> Callable[[np.dtype, int], str | None] | None:
    if schema.path is None:
        return None
    good = np.ones(schema.plan.num_keys, dtype=bool)
    for r in schema.results:
        for row, _ in r.bad:
            good[row] = False
    spec = next(c for c in schema.plan.columns if c.name == name)
    return holder(schema.path, schema.plan, spec, sorted(schema.results, key=lambda r: r.chunk), good, schema.keys)


def _merge(acc: dict[Any, list[int]], key: Any, n: int, first: int) -> None:
    entry = acc.setdefault(key, [0, first])
    entry[0] += n
    entry[1] = min(entry[1], first)


def rewrite_columns(path: Path, plan: BuildPlan, decisions: Mapping[str, Decision], stream: Any = None
                    ) -> dict[str, dict[str, Any]]:
    """Write every column that must change into ``_rewrite/``, mark it done, then move it into place.

    ``stream`` (bake/stream.py): the columns written ahead during the build; one that holds exactly this
    column's values is moved in, its header written, instead of writing the values again.
    Returns ``{file name: its checksum entry}`` (``xxh3_64``, and ``span_rows`` for a placed file checksummed by
    spans, cache/spans.py) of the values files written by this call (none when a resumed commit finds them written
    already): the manifest takes them without reading the files again."""
    todo = [d for d in decisions.values() if d.rewrite]
    checksums: dict[str, dict[str, Any]] = {}
    if not todo:
        return checksums
    tmp, marker = path / REWRITE, path / REWRITTEN
    if not marker.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        what = f"rewriting {len(todo)} column{'s' if len(todo) > 1 else ''} to the schema of every item in {path}"
        ahead = {d.spec.name: _streamed(stream, d) for d in todo}
        check_free(tmp, sum(_final_bytes(d) for d in todo if ahead[d.spec.name] is None), what)
        for d in todo:
            written = ahead[d.spec.name]
            checksums[d.spec.files[0]] = ({"xxh3_64": write_column(tmp, d, what)} if written is None
                                          else take_stream(tmp, d, written))
        fsync_path(tmp)
        marker.touch()
        fsync_path(path)
    for f in sorted(tmp.iterdir()) if tmp.exists() else []:
        os.replace(f, path / f.name)
    provisional = {c.name: c for c in plan.columns}
    for d in todo:
        old = provisional[d.spec.name]
        if not old.ragged and old.files[0] not in d.spec.files:
            (path / old.files[0]).unlink(missing_ok=True)  # its rows now live in the new layout's files
    return checksums


def _final_bytes(d: Decision) -> int:
    itemsize = np.dtype(d.spec.dtype).itemsize
    assert d.shapes is not None  # set with rewrite
    elements = int(np.prod(d.shapes, axis=1, dtype=np.int64).sum())
    return elements * itemsize + 16 * (len(d.shapes) + 1) * (2 if d.spec.shaped else 1) + 384


def _layout(d: Decision) -> tuple[np.ndarray, tuple[int, ...]]:
    """Column ``d``'s offsets (rows of a ragged column, elements of a ragged N-D one) and its values file's shape."""
    spec, shapes = d.spec, d.shapes
    assert shapes is not None  # set with rewrite
    n = len(shapes)
    offsets = np.zeros(n + 1, dtype=np.int64)
    if spec.ragged:
        np.cumsum(shapes[:, 0] if not spec.shaped else np.prod(shapes, axis=1, dtype=np.int64), out=offsets[1:])
    return offsets, (n, *spec.row_shape) if not spec.ragged else (int(offsets[-1]), *spec.row_shape)


def write_column(tmp: Path, d: Decision, what: str) -> str:
    """Column ``d.spec``'s files in ``tmp``: every good item, cast to the column's dtype, in row order; returns
    the values file's xxh3-64, hashed as it was written (bake/streamed.py)."""
    spec, source = d.spec, d.source
    assert source is not None  # set with rewrite
    offsets, shape = _layout(d)
    with NpyStream(tmp / spec.files[0], np.dtype(spec.dtype), shape, what) as values:
        for item in read_ahead_thread(source.items()):  # a file's values are its items' elements in row order
            values.write(item)
        checksum = values.close()
    _save_layout(tmp, d, offsets)
    return checksum


def _save_layout(tmp: Path, d: Decision, offsets: np.ndarray) -> None:
    if d.spec.ragged:
        _save(tmp / d.spec.files[1], offsets)
    if d.spec.shaped:
        _save(tmp / d.spec.files[2], np.ascontiguousarray(d.shapes, dtype=np.int64))


def _streamed(stream: Any, d: Decision) -> tuple[Path, str | None, int | None] | None:
    """The file written ahead for column ``d`` when it holds exactly the values :func:`write_column` would write,
    with its span checksum and rows when it was hashed as it was written (:meth:`StreamAhead.take`)."""
    if stream is None:
        return None
    _, shape = _layout(d)
    dtype = np.dtype(d.spec.dtype)
    header = npy_header(dtype, shape)
    if len(header) != HEAD:
        return stream.take(d.spec.name, dtype, -1)  # not a header the stream left room for: removed, not taken
    return stream.take(d.spec.name, dtype, dtype.itemsize * int(np.prod(shape, dtype=np.int64)), header,
                       spans=d.spec.shaped)


def take_stream(tmp: Path, d: Decision, written: tuple[Path, str | None, int | None]) -> dict[str, Any]:
    """Column ``d``'s files in ``tmp`` from the values written ahead (bake/stream.py), and the values file's checksum
    entry. A file hashed as it was written (a placed file, or the stream of a ragged N-D column with no row skipped)
    comes checksummed by spans of ``span rows`` (cache/spans.py), its header in the sum: the header is written where
    it is another. Any other gets its header in front, and the whole file is made durable and checksummed in one
    read. Then the file gets the column's name as a second one. The first stays until the partial directory goes:
    a commit killed before its marker reads a placed column's items from it again."""
    file, checksum, span_rows = written
    offsets, shape = _layout(d)
    header = npy_header(np.dtype(d.spec.dtype), shape)
    if checksum is None or span_rows is not None:
        fd = os.open(file, os.O_RDWR)
        try:
            if checksum is None or os.pread(fd, len(header), 0) != header:
                os.pwrite(fd, header, 0)
                os.fsync(fd)
        finally:
            os.close(fd)
    if checksum is None:
        checksum = read_checksum(file)
    os.link(file, tmp / d.spec.files[0])  # into the rewrite's directory, whose marker makes it the column's file
    _save_layout(tmp, d, offsets)
    return {"xxh3_64": checksum} if span_rows is None else {"xxh3_64": checksum, SPAN_ROWS: span_rows}


def _save(file: Path, arr: np.ndarray) -> None:
    with open(file, "wb") as f:
        save_npy(f, arr)
    fsync_path(file)


def read_ahead_thread(items: Iterator[np.ndarray], depth: int = 8) -> Iterator[np.ndarray]:
    """``items``, read by a thread up to ``depth`` ahead: the spill shards' reads overlap the values file's writes
    (both release the GIL; the commit of 2,400 mixed photos, benchmarks/realdata.py: 2.07 s, was 2.37)."""
    q: queue.Queue[Any] = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as e:  # handed to the reader, raised there
            q.put(e)

    t = threading.Thread(target=run, daemon=True, name="prebake-read-ahead")
    t.start()
    try:
        while True:
            got = q.get()
            if got is done:
                return
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)
