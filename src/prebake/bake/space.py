"""Disk space: check it and reserve it before writing, so a full disk is a clear error up front.

Workers write rows into memory maps. A map of a sparse file gets its blocks only when a
page is first written; on a full disk that write cannot fail politely, and the kernel
sends SIGBUS, which killed a one-worker build with no message (exit -7) and wedged a
pool. So every file that is written through a map is first allocated with
``posix_fallocate``: after that, writes through the map never need a new block.
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import numpy as np

from ..errors import DiskFullError

#: errno values that mean "no room": a full filesystem, a full quota, the file size limit.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_free(directory: Path, needed: int, what: str) -> None:
    """DiskFullError when the filesystem holding ``directory`` has fewer than ``needed`` bytes free."""
    free = free_bytes(directory)
    if needed > free:
        raise disk_full(directory, needed, what, free=free)


def allocate(path: Path, size: int, what: str) -> None:
    """Give the file at ``path`` all its blocks up to ``size`` bytes (``posix_fallocate``)."""
    fd = os.open(path, os.O_RDWR)
    try:
        if size > 0:
            os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in NO_ROOM:
            raise disk_full(path.parent, size, what, cause=e) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        # the filesystem cannot preallocate (glibc emulates it where it can): the free-space check stands
    finally:
        os.close(fd)


def allocate_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.memmap:
    """A new .npy of ``dtype`` and ``shape`` with every block allocated, mapped for writing."""
    try:
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    except OSError as e:
        if e.errno in NO_ROOM:
            raise disk_full(path.parent, npy_bytes(dtype, shape), what, cause=e) from None
        raise
    allocate(path, path.stat().st_size, what)
    return mm


def npy_bytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """The size of a .npy file of ``dtype`` and ``shape`` (a 128-byte version 1.0 header for our columns)."""
    return 128 + int(np.dtype(dtype).itemsize) * int(np.prod(shape, dtype=np.int64))


def disk_full(directory: Path, needed: int, what: str, *, free: int | None = None,
              cause: OSError | None = None) -> DiskFullError:
    """The error for "no room": what was needed, what is free, where, and the fix."""
    try:
        free = free_bytes(directory) if free is None else free
        room = f"the filesystem holding {directory} has {free:,} bytes free"
    except OSError:
        room = f"the filesystem holding {directory} cannot say how much is free"
    if cause is not None and cause.errno == errno.EFBIG:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = "unlimited" if limit == resource.RLIM_INFINITY else f"{limit:,} bytes"
        return DiskFullError(
            f"{what} needs a file of {needed:,} bytes, over this process's file size limit ({shown}, "
            f"'ulimit -f'); {room} — raise the limit, or build into another directory"
        )
    return DiskFullError(
        f"not enough disk space: {what} needs {needed:,} bytes, {room} — free at least "
        f"{max(0, needed - (free or 0)):,} bytes or build into a directory on another disk"
    )
