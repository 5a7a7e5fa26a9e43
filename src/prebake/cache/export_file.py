"""The file an HDF5 export is written through, so that a full disk is an error and never a crash.

HDF5 that sees one of its writes fail can crash later, while closing the file: on a full
disk ``prebake export`` died of SIGSEGV (tests/faults/test_hdf5_exchange.py). So h5py
writes through :class:`Sink`, a file object whose failed writes HDF5 never sees: the first
failure is recorded, that write and every later one are kept in memory (reads see them), the
export stops copying rows, HDF5 closes a consistent file, and the caller removes it and
raises :class:`prebake.errors.DiskFullError`.
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

from ..errors import DiskFullError, PrebakeError

#: What a write fails with when there is no room: a full disk, a quota, the file size limit.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_METADATA_BYTES = 64 << 10  # superblock, object headers and B-trees of a few dozen datasets


class Sink:
    """A read-write file object over ``fd`` for ``h5py.File(sink, "w")`` (see the module docstring)."""

    def __init__(self, fd: int):
        self.fd, self.pos = fd, 0
        self.error: OSError | None = None
        self.written = 0  # bytes that reached the file
        self._kept: list[tuple[int, bytes]] = []  # (offset, bytes) written after the failure, in order

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self._size()}[whence]
        self.pos = base + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += os.pwrite(self.fd, view[done:], self.pos + done)
                self.written += done
            except OSError as e:
                self.error = e
        if self.error is not None:
            self._kept.append((self.pos, bytes(view)))
        self.pos += len(view)
        return len(view)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(0, self._size() - self.pos)
        out = bytearray(size)
        got = os.pread(self.fd, size, self.pos)
        out[: len(got)] = got
        for at, blob in self._kept:  # later writes win, as they would on disk
            lo, hi = max(at, self.pos), min(at + len(blob), self.pos + size)
            if lo < hi:
                out[lo - self.pos : hi - self.pos] = blob[lo - at : hi - at]
        self.pos += size
        return bytes(out)

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(memoryview(buf).cast("B")))
        memoryview(buf).cast("B")[: len(data)] = data
        return len(data)

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as e:
                self.error = e
        return size

    def flush(self) -> None:
        """Every write already went to the file (pwrite); fsync is the caller's, at the end."""

    def _on_disk(self) -> int:
        return os.fstat(self.fd).st_size

    def _size(self) -> int:
        return max([self._on_disk(), *(at + len(b) for at, b in self._kept)])


def check_room(target: Path, needed: int) -> None:
    """Refuse, before writing, an export of about ``needed`` bytes that cannot fit beside ``target``."""
    free = free_bytes(target.parent)
    if needed > free:
        raise DiskFullError(f"{target}: the export needs about {needed:,} bytes and {target.parent} has {free:,} "
                            f"bytes free: free some space or export to another disk")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and needed > limit:
        raise DiskFullError(f"{target}: the export needs about {needed:,} bytes, over this process's file size "
                            f"limit of {limit:,} bytes (ulimit -f): raise the limit or export to another disk")


def export_bytes(data_bytes: int, datasets: int) -> int:
    """About how large an uncompressed export of ``data_bytes`` in ``datasets`` datasets is."""
    return data_bytes + _METADATA_BYTES + 4096 * datasets


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def write_failed(target: Path, error: OSError, written: int, needed: int | None) -> PrebakeError:
    """The error for an export whose writes failed with ``error`` (the caller removes its temporary file)."""
    what = f"after {written:,} bytes" + (f" of about {needed:,}" if needed else "")
    if error.errno == errno.EFBIG:
        return DiskFullError(f"{target}: the export reached the largest file this process may write (ulimit -f) or "
                             f"this filesystem holds, {what} ({error.strerror}); nothing was left behind: raise the "
                             "limit or export to another disk")
    if error.errno in NO_ROOM:
        return DiskFullError(f"{target}: the disk filled up {what} ({error.strerror}); {free_bytes(target.parent):,} "
                             f"bytes are free in {target.parent} and nothing was left behind: free some space or "
                             "export to another disk, then export again")
    return PrebakeError(f"{target}: writing failed {what} ({error.strerror}); nothing was left behind: check the "
                        f"permissions of {target.parent} and the disk, then export again")
