"""Items written by the workers straight to their place in the column's values file.

A column whose items have many shapes (photos of every size) is one values file: every item's
elements back to back, in row order. Without knowing the sizes before reading the items, the
workers spill each item to its chunk's spill shard, and the building process copies the shards
into that file in order (bake/stream.py): the column crosses the disk three times. When the
source can tell each item's size from its file's header (:meth:`Source.predicted_sizes`: an
image folder's 3 x width x height), the building process lays the column out before the workers
start (:func:`lay_out`): ``_shards/<col>.placed.bin``, the ``.npy`` header of a 1-D values file
of every predicted element, and ``_shards/<col>.placed.npy``, each row's byte offset in it. A
worker then writes each item whose bytes are the size predicted for its row at that row's offset
(:class:`PlacedWriter`) and spills only the others; the journal lists the rows it placed
(:attr:`ChunkResult.placed`), after the file was made durable.

When every row was placed (nothing skipped, every guess right), the file *is* the column: the
commit takes it, checksummed by spans of a chunk's rows that each worker hashed as it wrote them
(cache/spans.py, bake/stream.py), so it is never read back.
Otherwise its items are read from it the way spilled ones are (bake/provisional.py), and the
column is written again in order. benchmarks/realdata.py's 2,400 photos of every size, 2 workers:
2.43 s and 3.98 CPU-s to build when this was new (with the workers' heap kept, bake/pool.py, and the
sizes read from the headers, sources/headers.py), against 3.57 s and 4.87 CPU-s for the code that
spilled them, in the same run; with the read-back gone and chunks of about 64 MB, 1.77 s against
2.41 s (fresh processes, the same run).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..cache.format import ColumnSpec
from ..errors import CacheCorruptError
from .direct import ALIGN, DirectWriter, _round_up
from .npyfile import save_npy
from .plan import placed_files
from .streamed import HEAD, npy_header

log = logging.getLogger("prebake")


def lay_out(path: Path, spec: ColumnSpec, sizes: np.ndarray) -> np.ndarray | None:
    """Column ``spec``'s placed file and offsets in the partial directory ``path``, from the elements ``sizes``
    of each row; the offsets (None, and nothing written, when the sizes cannot be laid out: one size for every
    row is the fixed column the workers write anyway, a negative size is no guess)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or not len(sizes) or (sizes < 0).any() or (sizes == sizes[0]).all():
        return None
    dtype = np.dtype(spec.dtype)
    header = npy_header(dtype, (int(sizes.sum()),))
    if len(header) != HEAD:
        return None
    offsets = np.empty(len(sizes) + 1, np.int64)
    offsets[0] = HEAD
    np.cumsum(sizes * dtype.itemsize, out=offsets[1:])
    offsets[1:] += HEAD
    values, table = placed_files(path, spec.name)
    tmp = table.with_name(table.name + ".tmp")
    try:
        for f in (table, values, tmp):  # a build killed before its first chunk was journaled: nothing names them
            f.unlink(missing_ok=True)
        with open(values, "xb") as out:
            out.write(header)
            os.fsync(out.fileno())
        with open(tmp, "wb") as out:
            save_npy(out, offsets)
            os.fsync(out.fileno())
        os.replace(tmp, table)
    except OSError as e:  # no room for the layout: the workers spill instead, and meet the full disk themselves
        log.debug("%s: column %r not laid out (%s)", path, spec.name, e)
        for f in (table, values, tmp):
            with contextlib.suppress(OSError):
                f.unlink(missing_ok=True)
        return None
    return offsets


_HEADERS = threading.Lock()


def load_npy(file: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` of a file of the partial build, one thread at a time. A .npy header is parsed with Python's
    AST, whose constructor in CPython 3.11 keeps its recursion depth per interpreter: two threads parsing at once
    can fail with "AST constructor recursion depth mismatch", as the write-ahead thread (bake/stream.py) did beside
    a refusal that read a chunk to name the item holding a value (bake/rewrite.py: holder). Every read of the
    build's own .npy files from two threads goes through here."""
    with _HEADERS:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_offsets(path: Path, specs: Sequence[ColumnSpec], rows: int) -> dict[str, np.ndarray]:
    """``{column: byte offsets}`` of the columns of ``specs`` the partial directory ``path`` lays out for ``rows``
    rows (:func:`read_offsets`)."""
    return {c.name: read_offsets(path, c.name, rows) for c in specs if placed_files(path, c.name)[1].exists()}


def read_offsets(path: Path, name: str, rows: int) -> np.ndarray:
    """Column ``name``'s byte offsets, checked: ``rows + 1`` int64 from :data:`HEAD` on, never decreasing (so no
    two rows' bytes overlap); a CacheCorruptError naming the file otherwise."""
    table = placed_files(path, name)[1]
    try:
        offsets = load_npy(table)
    except FileNotFoundError:
        raise damaged(table, "is missing, and the journal names rows placed by it") from None
    except (OSError, ValueError) as e:
        raise damaged(table, f"cannot be read ({e})") from None
    ok = (offsets.dtype == np.int64 and offsets.shape == (rows + 1,) and int(offsets[0]) == HEAD
          and bool((np.diff(offsets) >= 0).all()))
    if not ok:
        raise damaged(table, f"is not a layout of {rows} rows (int64 byte offsets from {HEAD}, never decreasing)")
    return offsets


def damaged(file: Path, what: str) -> CacheCorruptError:
    """The error for a file of a partial build that is not what the journal says (``what``), and the fix."""
    return CacheCorruptError(f"{file} {what}: the build directory was damaged or changed since it was written; "
                             f"delete it with 'prebake clear {file.parent.parent}' and build again")


class PlacedWriter(DirectWriter):
    """Spans of the placed file written in place: :meth:`seek` begins a span at a byte offset, :meth:`write`
    appends to it, :meth:`sync` writes what is buffered and makes the file durable.

    Whole aligned blocks go past the page cache, each by the writing thread (bake/direct.py); a span's first and
    last partial blocks, which it shares with the rows beside it, go through the page cache, byte-exact, so two
    workers never write each other's bytes."""

    def __init__(self, name: str, dir_fd: int):
        """``name``: the placed file in the directory ``dir_fd`` (the _shards directory this process opened)."""
        super().__init__(lambda flags: os.open(name, flags & ~(os.O_CREAT | os.O_TRUNC), dir_fd=dir_fd))
        self._plain = self.fd
        if self.direct:
            self._plain = os.open(name, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)

    def seek(self, at: int) -> None:
        if at == self.tell():
            return
        self._flush()
        self._at = at // ALIGN * ALIGN
        self._fill = self._skip = at - self._at

    def _flush(self) -> None:
        """Write what is buffered of the span now, and begin the next buffer empty."""
        self._wait()
        if self._fill > self._skip:
            self._write_at(self._view, self._fill, self._at, self._skip)
        self._at += self._fill
        self._fill = self._skip = 0

    def _write_at(self, view: memoryview, length: int, at: int, skip: int = 0) -> None:
        """Write ``view[skip:length]`` at ``at + skip``: the whole blocks in it past the page cache, the rest not."""
        head = min(_round_up(skip), length) if self.direct else length
        body = head + (length - head) // ALIGN * ALIGN
        _pwrite(self._plain, view[skip:head], at + skip)
        if body > head:
            try:
                _pwrite(self.fd, view[head:body], at + head)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self.direct = False  # opened with O_DIRECT but refuses its writes: the rest through the page cache
                _pwrite(self._plain, view[head:body], at + head)
        _pwrite(self._plain, view[body:length], at + body)

    def sync(self) -> int:
        self._flush()
        os.fsync(self._plain)  # one file: its pages, whichever descriptor wrote them
        return self.tell()

    def close(self) -> None:
        plain = self._plain if self._plain != self.fd else -1
        super().close()  # the writing thread ends first: it writes through both descriptors
        if plain >= 0:
            with contextlib.suppress(OSError):
                os.close(plain)
        self._plain = -1


def _pwrite(fd: int, data: memoryview, at: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, at)
        if n <= 0:
            raise OSError(errno.EIO, f"write returned {n}")
        data, at = data[n:], at + n


def placeable(offsets: Mapping[str, np.ndarray], name: str, row: int, value: np.ndarray, dtype: np.dtype) -> int:
    """The byte offset where row ``row``'s ``value`` of column ``name`` goes, or -1 when it is not placed (the
    column is not laid out, or the value is not of its dtype and predicted size)."""
    table = offsets.get(name)
    if table is None or value.dtype != dtype:
        return -1
    at = int(table[row])
    return at if int(table[row + 1]) - at == value.nbytes else -1
