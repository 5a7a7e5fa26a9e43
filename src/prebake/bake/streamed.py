"""A ``.npy`` written front to back in one pass, checksummed as its bytes go out, its pages let go behind it.

The commit's rewrite of a column (bake/rewrite.py) writes every item once, in row order: the
file is the header ``np.lib.format.open_memmap`` writes, then the items' bytes. Hashing them on
the way saves the second pass over the file that the manifest's checksum took; writing with
``write`` instead of through a map of a preallocated file saves a page fault per page; and
asking the kernel to write back and drop the pages already written keeps the page cache the
build holds small. On the shared VM the benchmarks run on, memory not recently touched costs
about 1.6 CPU-s a GB to touch again, so a build that recycles a few pages beats one that dirties
1.5 GB (benchmarks/realdata.py's images).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from types import TracebackType

import numpy as np
import xxhash

from ..errors import PrebakeError
from .space import NO_ROOM, disk_full

_WINDOW = 32 << 20  # bytes between write-back requests: the dirty pages one file holds at a time


def drop_pages(fd: int, start: int = 0, length: int = 0) -> None:
    """Start writing back, and drop once clean, the page cache of ``fd``'s bytes ``[start, start + length)``
    (``length`` 0: to the end); a no-op where the platform has no ``posix_fadvise``."""
    _advise(fd, start, length, "POSIX_FADV_DONTNEED")


def read_ahead(fd: int) -> None:
    """Ask the kernel to start reading all of ``fd`` into the page cache (the next file the commit reads)."""
    _advise(fd, 0, 0, "POSIX_FADV_WILLNEED")


def _advise(fd: int, start: int, length: int, advice: str) -> None:
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):  # only advice: a filesystem that ignores it loses nothing
            advise(fd, start, length, getattr(os, advice))


class NpyStream:
    """``path``, a new .npy of ``dtype`` and ``shape``, written by :meth:`write` of its elements in C order.

    :attr:`checksum` is the xxh3-64 of the whole file (what ``cache.files.file_checksum`` gives)."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...], what: str):
        self.path, self.dtype, self.what = path, np.dtype(dtype), what
        self.size = self.dtype.itemsize * int(np.prod(shape, dtype=np.int64))  # the data's bytes
        self._hash = xxhash.xxh3_64()
        self._raw = self._open(path)
        self._f = io.BufferedWriter(self._raw, 1 << 20)
        self._written = self._dropped = 0
        head = io.BytesIO()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        try:  # the header open_memmap writes: version 1.0 where it fits, else 2.0
            np.lib.format.write_array_header_1_0(head, header)
        except ValueError:
            head = io.BytesIO()
            np.lib.format.write_array_header_2_0(head, header)
        self._put(memoryview(head.getvalue()))
        self._data_start = self._written

    def _open(self, path: Path) -> io.FileIO:
        try:
            return io.FileIO(path, "w")
        except OSError as e:
            raise self._no_room(e) if e.errno in NO_ROOM else e from None

    def _no_room(self, e: OSError) -> OSError:
        return disk_full(self.path.parent, self.size, self.what, cause=e)

    def write(self, values: np.ndarray) -> None:
        """Append ``values`` (any shape; cast to the file's dtype) as the next elements in C order."""
        data = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1).view(np.uint8)  # a scalar row too
        if data.size:
            self._put(data.data)

    def _put(self, data: memoryview) -> None:
        self._hash.update(data)
        try:
            self._f.write(data)
        except OSError as e:
            raise self._no_room(e) if e.errno in NO_ROOM else e from None
        self._written += len(data)
        self._let_go()

    def _let_go(self) -> None:
        if self._written - self._dropped >= 2 * _WINDOW:
            self._f.flush()
            drop_pages(self._raw.fileno(), self._dropped, _WINDOW)  # written back by now: dropped
            drop_pages(self._raw.fileno(), self._dropped + _WINDOW, _WINDOW)  # its write-back starts
            self._dropped += _WINDOW

    def close(self) -> str:
        """Flush, fsync, and give the file's xxh3-64 (a PrebakeError when the values written do not fill the shape:
        a bug, never a file to commit)."""
        self._f.flush()
        if self._written - self._data_start != self.size:
            raise PrebakeError(f"{self.path}: {self._written - self._data_start:,} bytes of values written, its "
                               f"header says {self.size:,}; nothing was committed — report this as a bug")
        os.fsync(self._raw.fileno())
        drop_pages(self._raw.fileno())
        self._f.close()
        return self._hash.hexdigest()

    @property
    def checksum(self) -> str:
        return self._hash.hexdigest()

    def __enter__(self) -> NpyStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            with contextlib.suppress(OSError):
                self._f.close()
