"""Every file operation on a cache directory: durable writes, checksums, reading the manifest.

The format itself (names, specs, rules) is declared in :mod:`prebake.cache.format`,
which opens no files. The writer and the reader do their I/O through here.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import stat
import tokenize
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ..errors import CacheCorruptError, CacheNotFoundError, FormatError, opt
from .format import LOCK_SUFFIX, MANIFEST, check_manifest

#: What numpy's .npy header parser raises on a damaged header (it evaluates a Python literal).
_BAD_HEADER = (ValueError, SyntaxError, TypeError, KeyError, IndexError, OverflowError, RecursionError,
               MemoryError, UnicodeDecodeError, EOFError, tokenize.TokenError, Warning)

_CHECKSUM_BLOCK = 8 << 20


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory (a directory fsync makes renames durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_checksum(path: str | os.PathLike[str]) -> str:
    """xxh3-64 of the whole file (header included), as 16 hex digits."""
    with open(path, "rb") as f:
        return fd_checksum(f.fileno())


def fd_checksum(fd: int) -> str:
    """xxh3-64 of the whole open file ``fd``.

    Hashed straight from a read-only map: no copy out of the page cache, which
    made this 5x faster than buffered reads on a 150 MB column.
    """
    h = xxhash.xxh3_64()
    if os.fstat(fd).st_size == 0:
        return h.hexdigest()
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
        for start in range(0, len(view), _CHECKSUM_BLOCK):
            h.update(view[start : start + _CHECKSUM_BLOCK])
    return h.hexdigest()


@contextmanager
def open_dir(path: str | os.PathLike[str]) -> Iterator[int]:
    """A descriptor of the directory ``path``: files opened relative to it all come from
    the same directory, even if a rebuild renames another one into its place meanwhile."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise CacheNotFoundError(f"no prebake cache at {path}; build one with 'prebake build SOURCE {path}'") from None
    try:
        yield fd
    finally:
        os.close(fd)


def open_member(dir_fd: int, name: str, shown: Path) -> int:
    """Open the regular file ``name`` of a cache directory read-only, never following a symlink.

    A cache's files are its own: a symlink (to anywhere), a non-regular file or a missing
    file is a :class:`CacheCorruptError`.
    """
    try:
        return _open_regular(dir_fd, name, shown)
    except FileNotFoundError:
        raise CacheCorruptError(f"{shown} is missing — the cache was damaged or is being replaced; "
                                f"run 'prebake verify {shown.parent}' or rebuild with {opt('force')}") from None


def _open_regular(dir_fd: int, name: str, shown: Path) -> int:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CacheCorruptError(_not_regular(shown, "a symlink")) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CacheCorruptError(_not_regular(shown, "not a regular file"))
    return fd


def _not_regular(shown: Path, what: str) -> str:
    return (f"{shown} is {what}; a cache reads only regular files inside its own directory, so it is "
            f"refused — replace it with the real file or rebuild the cache with {opt('force')}")


def read_manifest(cache_dir: str | os.PathLike[str], dir_fd: int | None = None,
                  any_version: bool = False) -> dict[str, Any]:
    """The manifest of the cache at ``cache_dir``, checked (checksum and schema) against this format version
    (``any_version``: against any version whose manifest checksums itself)."""
    path = Path(cache_dir) / MANIFEST
    if dir_fd is None:
        with open_dir(cache_dir) as fd:
            return read_manifest(cache_dir, fd, any_version)
    try:
        fd = _open_regular(dir_fd, MANIFEST, path)
    except FileNotFoundError:
        raise CacheNotFoundError(f"no prebake cache at {cache_dir} (no {MANIFEST}); build one with "
                                 f"'prebake build SOURCE {cache_dir}'") from None
    with os.fdopen(fd, "rb") as f:
        raw = f.read()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise FormatError(f"{path} is not UTF-8 text (byte {e.start}); the manifest is damaged: "
                          f"rebuild the cache with {opt('force')}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, or a number too long to parse
        raise FormatError(f"{path} is not valid JSON ({e}); the manifest is damaged: "
                          f"rebuild the cache with {opt('force')}") from None
    return check_manifest(manifest, path, any_version)


def npy_layout(fd: int, shown: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` from the .npy header of the open file ``fd``.

    Any damage (bad magic, unparsable header, a pickled dtype, a header larger than the
    file) is a :class:`CacheCorruptError` naming the file.
    """
    try:
        with os.fdopen(os.dup(fd), "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("error")  # a header prebake wrote never warns (a deprecated dtype alias does)
            f.seek(0)
            major, minor = np.lib.format.read_magic(f)
            if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f"unknown .npy format version {major}.{minor}")
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except _BAD_HEADER as e:
        raise CacheCorruptError(f"{shown} has a damaged .npy header ({type(e).__name__}: {e}); "
                                f"run 'prebake verify {shown.parent}' or rebuild with {opt('force')}") from None
    if fortran or dtype.hasobject or dtype.fields is not None:
        raise CacheCorruptError(f"{shown}: the .npy header declares a {'Fortran-order' if fortran else 'object'} "
                                f"array ({dtype}); prebake writes only C-order numeric columns: "
                                f"rebuild with {opt('force')}")
    return tuple(int(d) for d in shape), dtype, offset


def map_npy(fd: int, shown: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The .npy at ``fd`` as a read-only array over a memory map, checked against ``dtype`` and ``shape``.

    The map holds the file itself, so the array stays valid (and unchanged) after the
    file is renamed or deleted.
    """
    got_shape, got_dtype, offset = npy_layout(fd, shown)
    size = os.fstat(fd).st_size
    nbytes = int(np.prod(got_shape, dtype=object)) * got_dtype.itemsize
    if got_dtype != dtype or got_shape != shape or offset + nbytes != size:
        raise CacheCorruptError(
            f"{shown} holds {got_dtype} {got_shape} in {size:,} bytes, the manifest says {np.dtype(dtype)} "
            f"{shape}; the header or the file was changed: run 'prebake verify {shown.parent}' or rebuild "
            f"with {opt('force')}"
        )
    if nbytes == 0:
        return np.empty(shape, dtype)
    mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    return np.ndarray(shape, dtype, buffer=mm, offset=offset)


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
