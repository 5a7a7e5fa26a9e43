"""A ``.npy`` written front to back in one pass, checksummed as its bytes go out, past the page cache.

The commit's rewrite of a column (bake/rewrite.py) writes every item once, in row order: the
file is the header ``np.lib.format.open_memmap`` writes, then the items' bytes. Hashing them on
the way saves the second pass over the file that the manifest's checksum took; writing with
``write`` instead of through a map of a preallocated file saves a page fault per page; and
writing with ``O_DIRECT`` (bake/direct.py) keeps the bytes out of the page cache, whose pages
cost more to find and fill than the disk write itself (benchmarks/realdata.py's images).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import xxhash

from ..errors import PrebakeError
from .direct import DirectReader, DirectWriter
from .space import NO_ROOM, disk_full


def read_checksum(file: Path) -> str:
    """xxh3-64 of the whole of ``file``, read front to back past the page cache where the filesystem allows."""
    h = xxhash.xxh3_64()
    reader = DirectReader(lambda flags: os.open(file, flags))
    try:
        for block in reader.blocks():
            h.update(block)
    finally:
        reader.close()
    return h.hexdigest()


HEAD = 128  # the .npy 1.0 header of a 1-D values file: what np.save writes for any length, and room for it


def npy_header(dtype: np.dtype, shape: Sequence[int]) -> bytes:
    """The header ``np.save`` and ``open_memmap`` write for an array of ``dtype`` and ``shape`` (version 1.0 where it
    fits, else 2.0)."""
    head = io.BytesIO()
    header: dict[str, Any] = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                              "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(head, header)
    except ValueError:
        head = io.BytesIO()
        np.lib.format.write_array_header_2_0(head, header)
    return head.getvalue()


class NpyStream:
    """``path``, a new .npy of ``dtype`` and ``shape``, written by :meth:`write` of its elements in C order.

    :attr:`checksum` is the xxh3-64 of the whole file (what ``cache.files.file_checksum`` gives)."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...], what: str):
        self.path, self.dtype, self.what = path, np.dtype(dtype), what
        self.size = self.dtype.itemsize * int(np.prod(shape, dtype=np.int64))  # the data's bytes
        self._hash = xxhash.xxh3_64()
        try:
            self._f = DirectWriter(lambda flags: os.open(path, flags, 0o644))
        except OSError as e:
            raise self._no_room(e) if e.errno in NO_ROOM else e from None
        self._written = 0
        self._put(memoryview(npy_header(self.dtype, shape)))
        self._data_start = self._written

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

    def close(self) -> str:
        """Write the rest, fsync, and give the file's xxh3-64 (a PrebakeError when the values written do not fill the
        shape: a bug, never a file to commit)."""
        if self._written - self._data_start != self.size:
            self._f.close()
            raise PrebakeError(f"{self.path}: {self._written - self._data_start:,} bytes of values written, its "
                               f"header says {self.size:,}; nothing was committed — report this as a bug")
        try:
            self._f.sync()
        except OSError as e:
            raise self._no_room(e) if e.errno in NO_ROOM else e from None
        finally:
            self._f.close()
        return self._hash.hexdigest()

    @property
    def checksum(self) -> str:
        return self._hash.hexdigest()

    def __enter__(self) -> NpyStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            self._f.close()
