"""Every file operation on a cache directory: durable writes, checksums, reading the manifest.

The format itself (names, specs, rules) is declared in :mod:`prebake.cache.format`,
which opens no files. The writer and the reader do their I/O through here.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import xxhash

from ..errors import FormatError, opt
from .format import LOCK_SUFFIX, MANIFEST, check_manifest

_CHECKSUM_BLOCK = 8 << 20


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory (a directory fsync makes renames durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_checksum(path: str | os.PathLike[str]) -> str:
    """xxh3-64 of the whole file (header included), as 16 hex digits.

    Hashed straight from a read-only map: no copy out of the page cache, which
    made this 5x faster than buffered reads on a 150 MB column.
    """
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return h.hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
            for start in range(0, len(view), _CHECKSUM_BLOCK):
                h.update(view[start : start + _CHECKSUM_BLOCK])
    return h.hexdigest()


def read_manifest(cache_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of the cache at ``cache_dir``, checked against this format version."""
    path = Path(cache_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(f"{path} is not valid JSON ({e}); rebuild the cache with {opt('force')}") from e
    return check_manifest(manifest, path)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON durably: temp file, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_paths(paths: Iterable[Path]) -> None:
    """Delete files and directory trees; missing ones are fine."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def write_lock_holder(out: Path) -> None:
    """Record this process as the builder of ``out``, in the lock file it holds (for messages)."""
    fd = os.open(str(out) + LOCK_SUFFIX, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)  # another descriptor: the builder's flock stays held


def lock_holder(out: Path) -> int | None:
    """The pid of the process building ``out`` now (-1 if it has not written it yet), or None."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; say nothing rather than guess
        return None
    try:
        fd = os.open(str(out) + LOCK_SUFFIX, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
