"""While the workers bake, the building process writes ahead what the commit's rewrite would write.

A column that spills (items of other shapes: photos of every size) is rewritten at commit from
every item, in row order (bake/rewrite.py): the commit then reads every spilled byte back and
writes it again while the workers sit idle. A :class:`StreamAhead` does that write during the
build instead, in a thread of the building process: as chunks finish, in chunk order, it appends
their items to ``_shards/<column>.stream.bin``, its data starting :data:`HEAD` bytes in, where the
``.npy`` header goes. At commit, :meth:`StreamAhead.take` gives the file for a column only when it
holds exactly what the rewrite would write (every chunk, each item already of the column's final
dtype, the byte count the final shapes give, a header of :data:`HEAD` bytes); the commit then
moves it into place, after writing the header and checksumming the file in one read unless the
stream began with that very header (the source's guess of the column's length,
:meth:`Source.predicted_elements`) and checksummed itself as it wrote. Anything else (a
resumed build, a dtype promoted at commit, a full disk, an error) leaves the rewrite as it was:
the stream is an optimisation, never the record. The spill shards stay the durable copy.

It reads the shards and writes the stream past the page cache (bake/direct.py). Through the page
cache it cost more CPU than it saved wall time, and was once backed out for that; past it, 2,400
mixed photos with 2 workers commit in 0.66-0.82 s instead of 2.07-2.32 s (benchmarks/realdata.py's
data, load 1.2-1.8), and in 0.01 s when the stream checksummed itself. It runs beside worker
processes only: in a build in this process its thread would take the GIL from the baking thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xxhash

from ..cache.format import SHARDS, ColumnSpec
from .direct import DirectWriter
from .plan import BuildPlan, ChunkResult
from .provisional import Provisional
from .streamed import npy_header

log = logging.getLogger("prebake")

HEAD = 128  # the .npy 1.0 header of a values file of one varying axis: what np.save writes for any length


def stream_file(path: Path, name: str) -> Path:
    """Where the stream of column ``name`` of the partial build ``path`` is written."""
    return path / SHARDS / f"{name}.stream.bin"


class _Column:
    """One column's stream: the file, how far it got, the dtypes it wrote."""

    def __init__(self, path: Path, spec: ColumnSpec, predicted: int | None = None):
        self.spec, self.file = spec, stream_file(path, spec.name)
        self.out = DirectWriter(lambda flags: os.open(self.file, flags, 0o644))  # past the page cache (direct.py)
        # with the source's guess of the column's length, the header it would have goes first, and the file is
        # checksummed as it is written: the commit then need not read it back (0.82 s for 1.44 GB of photos)
        head = None if predicted is None else npy_header(np.dtype(spec.dtype), (predicted,))
        self.header = head if head is not None and len(head) == HEAD else None
        self.hash = None if self.header is None else xxhash.xxh3_64(self.header)
        self.out.write(self.header or bytes(HEAD))  # the header, or its room
        self.chunks = self.data = 0
        self.dtypes: set[str] = set()

    def write(self, item: np.ndarray) -> None:
        self.dtypes.add(item.dtype.str)
        data = np.ascontiguousarray(item).reshape(-1).view(np.uint8)
        if data.size:
            self.out.write(data.data)
            if self.hash is not None:
                self.hash.update(data.data)
            self.data += data.size

    def sync(self) -> None:
        self.out.sync()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.out.close()


class StreamAhead:
    """Streams the columns that spill, chunk by chunk in order, in a thread; :meth:`add` each finished chunk,
    :meth:`finish` after the last, :meth:`take` at commit."""

    def __init__(self, path: Path, plan: BuildPlan, predict: Callable[[str], int | None] | None = None):
        self.path, self.plan, self.predict = path, plan, predict
        self.specs = {c.name: c for c in plan.item_columns if c.name in {k.name for k in plan.kept}}
        self.good = np.ones(plan.num_keys, dtype=bool)
        self.results: dict[int, ChunkResult] = {}
        self.columns: dict[str, _Column] = {}
        self.broken = False
        self._next = 0
        self._queue: queue.Queue[ChunkResult | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="prebake-stream-ahead")
        self._thread.start()

    def add(self, result: ChunkResult) -> None:
        self._queue.put(result)

    def finish(self) -> None:
        """Wait until every chunk added is written (or the stream gave up), and close the files."""
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
            if name in self.specs and name not in self.columns:
                predicted = self.predict(name) if self.predict is not None else None
                self.columns[name] = _Column(self.path, self.specs[name], predicted)  # caught up from chunk 0 below
        while self.columns and self._next in self.results:
            for c in self.columns.values():
                self._write_chunks(c, self._next)
            self._next += 1

    def _write_chunks(self, c: _Column, upto: int) -> None:
        """Chunks ``c.chunks .. upto`` of column ``c``, each item as :class:`Provisional` gives it to the rewrite."""
        while c.chunks <= upto:
            chunk = [self.results[c.chunks]]
            for item in Provisional(self.path, self.plan, c.spec, chunk, self.good).items():
                c.write(item)
            c.chunks += 1

    def take(self, name: str, dtype: np.dtype, data_bytes: int, header: bytes = b"") -> tuple[Path, str | None] | None:
        """The stream of column ``name``, flushed, when it holds the rewrite's bytes for ``dtype`` and
        ``data_bytes``, with its xxh3-64 when it begins with ``header`` already (else None: the caller writes the
        header and reads the file back); None when it is not the column (and its file is removed)."""
        c = self.columns.pop(name, None)
        if c is None:
            return None
        ok = (not self.broken and c.chunks == self.plan.num_chunks and c.dtypes <= {np.dtype(dtype).str}
              and c.data == data_bytes)
        c.close()
        if not ok:
            c.file.unlink(missing_ok=True)
            return None
        return c.file, c.hash.hexdigest() if c.hash is not None and c.header == header else None

    def discard(self) -> None:
        """Remove every stream not taken."""
        for c in self.columns.values():
            c.close()
            c.file.unlink(missing_ok=True)
        self.columns.clear()


@contextmanager
def write_ahead(path: Path, plan: BuildPlan, fresh: bool, predict: Callable[[str], int | None] | None = None
                ) -> Iterator[StreamAhead | None]:
    """A :class:`StreamAhead` for a build from its first chunk by worker processes (``fresh``; else None), its
    thread ended and the streams the commit did not take removed on the way out, whatever happened. ``predict``:
    a column's length over every item as the source guesses it (:meth:`Source.predicted_elements`), if any."""
    stream = StreamAhead(path, plan, predict) if fresh else None
    try:
        yield stream
    finally:
        if stream is not None:
            stream.finish()
            stream.discard()
