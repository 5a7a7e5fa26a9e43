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

from ..errors import FormatError
from .format import MANIFEST, check_manifest

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
        raise FormatError(f"{path} is not valid JSON ({e}); rebuild the cache with --force") from e
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
