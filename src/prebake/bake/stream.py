"""While the workers bake, the building process writes ahead what the commit's rewrite would write.

A column that spills (items of other shapes: photos of every size) is rewritten at commit from
every item, in row order (bake/rewrite.py): the commit then reads every spilled byte back and
writes it again while the workers sit idle. A :class:`StreamAhead` does that write during the
build instead, in a thread of the building process: as chunks finish, in chunk order, it appends
their items to ``_shards/<column>.stream.bin``, its data starting :data:`HEAD` bytes in, where the
``.npy`` header goes. At commit, :meth:`StreamAhead.take` gives the file for a column only when it
holds exactly what the rewrite would write (every chunk, each item already of the column's final
dtype, the byte count the final shapes give); the commit then writes the header, checksums the
file in one read and moves it into place. Anything else (a resumed build, a dtype promoted at
commit, a full disk, an error) leaves the rewrite as it was: the stream is an optimisation, never
the record. The spill shards stay the durable copy.

A column the workers place (bake/placed.py) needs no copy while every chunk so far placed all its
rows: the thread only collects each finished chunk's digest, which the worker hashed as it wrote
the rows (cache/spans.py), so the commit takes the placed file as it is, never reading it back (a
chunk that came without a digest is read back to hash it). At the first chunk
with a skipped row or an item the guess missed, it turns into a stream like the others, caught up
from chunk 0; in a build in this process it is rewritten at commit instead.

It reads and writes past the page cache (bake/direct.py). Through the page cache it cost more CPU
than it saved wall time, and was once backed out for that; past it, 2,400 mixed photos with 2
workers commit in 0.66-0.82 s instead of 2.07-2.32 s (benchmarks/realdata.py's data, load
1.2-1.8). In a build in this process its writes would take the GIL from the baking thread, so there
it only collects the placed columns' digests (:func:`write_ahead`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xxhash

from ..cache.format import SHARDS, ColumnSpec
from ..cache.spans import combine
from .direct import DirectReader, DirectWriter
from .plan import BuildPlan, ChunkResult, placed_files
from .provisional import Provisional
from .streamed import HEAD, npy_header

log = logging.getLogger("prebake")



def stream_file(path: Path, name: str) -> Path:
    """Where the stream of column ``name`` of the partial build ``path`` is written."""
    return path / SHARDS / f"{name}.stream.bin"


class _Column:
    """One column's stream: the file, how far it got, the dtypes it wrote, and the xxh3-64 of each chunk's bytes (the
    spans of a span checksum, cache/spans.py, when no row was skipped)."""

    def __init__(self, path: Path, spec: ColumnSpec):
        self.spec, self.file = spec, stream_file(path, spec.name)
        self.out = DirectWriter(lambda flags: os.open(self.file, flags, 0o644))  # past the page cache (direct.py)
        self.out.write(bytes(HEAD))  # the header's room
        self.chunks = self.data = 0
        self.dtypes: set[str] = set()
        self.digests: list[int] = []
        self.hash = xxhash.xxh3_64()

    def write(self, item: np.ndarray) -> None:
        self.dtypes.add(item.dtype.str)
        data = np.ascontiguousarray(item).reshape(-1).view(np.uint8)
        if data.size:
            self.out.write(data.data)
            self.hash.update(data.data)
            self.data += data.size

    def end_chunk(self) -> None:
        self.digests.append(self.hash.intdigest())
        self.hash.reset()
        self.chunks += 1

    def sync(self) -> None:
        self.out.sync()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.out.close()


class _Placed:
    """A placed column (bake/placed.py) while every chunk so far placed all its rows: the xxh3-64 of each chunk's
    span of its file (cache/spans.py), as the worker hashed it from memory, or read back past the page cache where
    the chunk came without one."""

    def __init__(self, path: Path, spec: ColumnSpec, offsets: np.ndarray):
        self.spec, self.offsets, self.file = spec, offsets, placed_files(path, spec.name)[0]
        dtype = np.dtype(spec.dtype)
        self.header = npy_header(dtype, (int(offsets[-1] - offsets[0]) // dtype.itemsize,))  # as lay_out wrote it
        self.digests: list[int] = []  # each chunk's span, in order (the header's comes at take)
        self.reader: DirectReader | None = None
        self.pos = int(offsets[0])
        self.chunks = 0

    def hash_to(self, end: int, digest: str | None = None) -> None:
        """The next chunk's span, up to byte ``end``: its ``digest`` (hex) as the worker took it, else read back."""
        if digest is not None:
            self.digests.append(int(digest, 16))
            self.pos = end
            self.chunks += 1
            return
        if self.reader is None:
            self.reader = DirectReader(lambda flags: os.open(self.file, flags))
        h = xxhash.xxh3_64()
        for view in self.reader.span(self.pos, end):
            h.update(view)
            self.pos += len(view)
        if self.pos != end:
            raise OSError(f"{self.file} ends at {self.pos:,} bytes, before {end:,}")
        self.digests.append(h.intdigest())
        self.chunks += 1

    def checksum(self, header: bytes) -> str:
        """The span checksum of the file once ``header`` is its header (cache/spans.py)."""
        return combine([xxhash.xxh3_64_intdigest(header), *self.digests])

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class StreamAhead:
    """Streams the columns that spill, chunk by chunk in order, in a thread; :meth:`add` each finished chunk,
    :meth:`finish` after the last, :meth:`take` at commit."""

    def __init__(self, path: Path, plan: BuildPlan, placed: Mapping[str, np.ndarray] | None = None,
                 streams: bool = True):
        self.path, self.plan, self.streams = path, plan, streams
        self.specs = {c.name: c for c in plan.item_columns if c.name in {k.name for k in plan.kept}}
        self.placed = {n: _Placed(path, self.specs[n], t) for n, t in (placed or {}).items() if n in self.specs}
        self.good = np.ones(plan.num_keys, dtype=bool)
        self.results: dict[int, ChunkResult] = {}
        self.columns: dict[str, _Column] = {}
        self.broken = False
        self._finished = False
        self._next = 0
        self._queue: queue.Queue[ChunkResult | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="prebake-stream-ahead")
        self._thread.start()

    def add(self, result: ChunkResult) -> None:
        self._queue.put(result)

    def finish(self) -> None:
        """Wait until every chunk added is written (or the stream gave up), and close the files. Called again (by
        :func:`write_ahead` on the way out of a build that failed after finishing, e.g. more skipped than
        ``max_skipped`` allows) it does nothing: the files are closed, and a second sync would hide that error."""
        if self._finished:
            return
        self._finished = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        for name, c in self.columns.items():
            try:
                if not self.broken:
                    c.sync()  # what is buffered, out; the file cut to its length and made durable
            except OSError as e:
                log.debug("%s: the stream of %r was not finished (%s); the commit rewrites it", self.path, name, e)
                self.broken = True
            finally:
                c.close()

    def _loop(self) -> None:
        while True:
            r = self._queue.get()
            if r is None:
                return
            if self.broken:
                continue
            try:
                self._take_in(r)
            except Exception as e:  # noqa: BLE001 - the rewrite at commit does the work instead, and says why
                log.debug("%s: writing ahead stopped (%s); the commit rewrites the columns", self.path, e)
                self.broken = True

    def _take_in(self, r: ChunkResult) -> None:
        for row, _ in r.bad:
            self.good[row] = False
        self.results[r.chunk] = r
        for name in r.spills:
            if self.streams and name in self.specs and name not in self.columns and name not in self.placed:
                self.columns[name] = _Column(self.path, self.specs[name])  # caught up from chunk 0 below
        while (self.columns or self.placed) and self._next in self.results:
            for name, p in list(self.placed.items()):
                done = self.results[self._next]
                if self._clean(done, name):
                    p.hash_to(int(p.offsets[self.plan.chunk_range(self._next).stop]), done.spans.get(name))
                else:  # a hole in the placed file: this column is streamed too, from chunk 0
                    p.close()
                    del self.placed[name]
                    if self.streams:
                        self.columns[name] = _Column(self.path, self.specs[name])
            for c in self.columns.values():
                self._write_chunks(c, self._next)
            self._next += 1

    def _clean(self, r: ChunkResult, name: str) -> bool:
        """Whether chunk ``r`` placed every row of column ``name`` (so the placed file has no hole there)."""
        return not r.bad and len(r.placed.get(name, ())) == len(self.plan.chunk_range(r.chunk))

    def _write_chunks(self, c: _Column, upto: int) -> None:
        """Chunks ``c.chunks .. upto`` of column ``c``, each item as :class:`Provisional` gives it to the rewrite."""
        while c.chunks <= upto:
            chunk = [self.results[c.chunks]]
            for item in Provisional(self.path, self.plan, c.spec, chunk, self.good).items():
                c.write(item)
            c.end_chunk()

    def take(self, name: str, dtype: np.dtype, data_bytes: int, header: bytes = b"", spans: bool = False
             ) -> tuple[Path, str | None, int | None] | None:
        """The stream (or placed file) of column ``name``, flushed, when it holds the rewrite's bytes for ``dtype``
        and ``data_bytes``: ``(file, checksum, span rows)``. Where the column may be checksummed by ``spans`` (a
        ragged N-D column, cache/spans.py) and no row was skipped, so that the chunks are the spans, the file comes
        with its span checksum once ``header`` is written, and the rows of each span; else with None (the caller
        writes the header and reads the file back). None when it is not the column (and a stream's file is
        removed)."""
        spanned = spans and bool(self.good.all())
        p = self.placed.pop(name, None)
        if p is not None:
            p.close()
            whole = p.chunks == self.plan.num_chunks and int(p.offsets[-1] - p.offsets[0]) == data_bytes
            if not self.broken and whole and np.dtype(dtype) == np.dtype(p.spec.dtype):
                return p.file, p.checksum(header) if spanned else None, self.plan.chunk_rows if spanned else None
            return None
        c = self.columns.pop(name, None)
        if c is None:
            return None
        ok = (not self.broken and c.chunks == self.plan.num_chunks and c.dtypes <= {np.dtype(dtype).str}
              and c.data == data_bytes)
        c.close()
        if not ok:
            c.file.unlink(missing_ok=True)
            return None
        if spanned:
            return c.file, combine([xxhash.xxh3_64_intdigest(header), *c.digests]), self.plan.chunk_rows
        return c.file, None, None

    def discard(self) -> None:
        """Remove every stream not taken (a placed file stays: the rewrite may read items from it)."""
        for p in self.placed.values():
            p.close()
        self.placed.clear()
        for c in self.columns.values():
            c.close()
            c.file.unlink(missing_ok=True)
        self.columns.clear()


@contextmanager
def write_ahead(path: Path, plan: BuildPlan, fresh: bool, placed: Mapping[str, np.ndarray] | None = None,
                streams: bool = True) -> Iterator[StreamAhead | None]:
    """A :class:`StreamAhead` for a build from its first chunk (``fresh``; else None), its thread ended and the
    streams the commit did not take removed on the way out, whatever happened. ``placed``: the byte offsets of the
    columns the workers place (bake/placed.py). ``streams``: False for a build in this process, whose baking thread
    the stream's writes would take the GIL from (workers=1, realdata.py's photos: 15.4 s against 10.4 s): its
    placed columns are taken when whole (their digests cost the thread nothing), the others rewritten at commit."""
    stream = StreamAhead(path, plan, placed, streams) if fresh else None
    try:
        yield stream
    finally:
        if stream is not None:
            stream.finish()
            stream.discard()
