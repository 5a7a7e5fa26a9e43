"""Span checksums: how the checksum of a values file is taken when the build's workers wrote it in place.

A file's ``xxh3_64`` in the manifest is the xxh3-64 of the whole file. A ragged N-D column whose
items the workers write straight to their place in the values file (bake/placed.py: photos of
every size) would then have to be read back once, in order, by one process, to hash it: on the
benchmark's 2,400 photos that read-back was 1.47 GB and a fifth of the build's time
(benchmarks/realdata.py). Such a file is checksummed by spans instead, and its manifest entry
says so with ``"span_rows": R`` (R: the build's rows per chunk). So is a column the build streams
in row order while the workers bake (bake/stream.py), when no row was skipped:

- the spans are the file's ``.npy`` header, then rows ``[0, R)``, ``[R, 2R)``, ... to the last
  row, each span the bytes of its rows as the column's offsets file places them;
- ``xxh3_64`` is the xxh3-64 of every span's xxh3-64, in order, as 8 bytes little-endian each.

Each worker (or the stream) hashes the rows it writes from memory, and the building process combines
the digests.
Checking such a file (``prebake verify``, an export, an incremental build reusing rows) reads it
the same way, with the column's offsets file (checked on its own first). A changed byte anywhere
in the file changes its span's digest, so the file's checksum, as a whole-file checksum would.

Only ragged N-D columns carry span checksums, and a prebake before them refuses every cache with
such a column (tests/cache/test_format.py), so no reader takes one for a whole-file checksum.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ..errors import CacheCorruptError
from .files import fd_checksum, npy_layout
from .format import ColumnSpec, column_specs

SPAN_ROWS = "span_rows"  # the file table's key (format.py checks it)
_BLOCK = 8 << 20


def combine(digests: Sequence[int]) -> str:
    """The file checksum from its spans' xxh3-64 digests, in order (16 hex digits)."""
    return xxhash.xxh3_64_hexdigest(np.asarray(digests, dtype="<u8").tobytes())


def bounds(data_offset: int, offsets: np.ndarray, itemsize: int, span_rows: int) -> list[int]:
    """The byte bounds of the spans of a values file whose data starts at ``data_offset``: ``[0, data_offset, ...]``,
    one more every ``span_rows`` rows of the column's element ``offsets`` (rows + 1 of them), the last at its end."""
    rows = len(offsets) - 1
    cuts = [*range(0, rows, span_rows), rows] if rows > 0 else [0]
    return [0, *(data_offset + int(offsets[r]) * itemsize for r in cuts)]


def fd_span_checksum(fd: int, spans: Sequence[int]) -> str:
    """The span checksum of the open file ``fd`` cut at byte ``spans`` (a bound past its end hashes what is there)."""
    size = os.fstat(fd).st_size
    if not size:
        return combine([xxhash.xxh3_64_intdigest(b"")] * (len(spans) - 1))
    digests = []
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
        for a, b in zip(spans, spans[1:]):
            h = xxhash.xxh3_64()
            for start in range(a, min(b, size), _BLOCK):
                h.update(view[start : min(start + _BLOCK, b, size)])
            digests.append(h.intdigest())
    return combine(digests)


def column_of(manifest: Mapping[str, Any], fname: str) -> ColumnSpec | None:
    """The ragged N-D column whose values file is ``fname`` (the only files span checksums are taken of), or None."""
    for spec in column_specs(dict(manifest)).values():
        if spec.shaped and spec.files[0] == fname:
            return spec
    return None


def member_checksum(path: Path, manifest: Mapping[str, Any], fname: str, meta: Mapping[str, Any]) -> str:
    """The checksum of the cache file ``path / fname`` in the way its manifest entry ``meta`` says: whole-file, or
    by spans (the values file of a ragged N-D column, cut by its offsets file). A CacheCorruptError where the
    offsets or the header cannot cut it."""
    fd = os.open(path / fname, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if SPAN_ROWS not in meta:
            return fd_checksum(fd)
        return fd_span_checksum(fd, member_spans(path, manifest, fname, fd, int(meta[SPAN_ROWS])))
    finally:
        os.close(fd)


def member_spans(path: Path, manifest: Mapping[str, Any], fname: str, fd: int, span_rows: int) -> list[int]:
    """The span bounds of the values file ``fname`` (open as ``fd``), from its header and its column's offsets
    file; a CacheCorruptError naming what cannot give them."""
    spec = column_of(manifest, fname)
    if spec is None:
        raise CacheCorruptError(f"{path / fname}: its manifest entry has {SPAN_ROWS!r}, but it holds no ragged N-D "
                                "column's values; the manifest was edited: rebuild the cache")
    offsets_file = path / spec.files[1]
    try:
        offsets = np.load(offsets_file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheCorruptError(f"{offsets_file} cannot be read to check {path / fname} ({e})") from None
    return spans_of(fd, path / fname, offsets, offsets_file, int(manifest.get("num_items", -1)), span_rows)


def spans_of(fd: int, shown: Path, offsets: np.ndarray, offsets_file: Path, rows: int, span_rows: int) -> list[int]:
    """The span bounds of the values file ``shown`` (open as ``fd``) by its column's element ``offsets`` (read from
    ``offsets_file``, ``rows + 1`` of them); a CacheCorruptError when they cannot cut it."""
    ok = (offsets.dtype == np.int64 and offsets.shape == (rows + 1,) and span_rows > 0
          and int(offsets[0]) == 0 and bool((np.diff(offsets) >= 0).all()))
    if not ok:
        raise CacheCorruptError(f"{offsets_file} is not {rows + 1} non-decreasing int64 offsets from 0, so {shown} "
                                "cannot be checked against its checksum; rebuild the cache")
    _, dtype, data_offset = npy_layout(fd, shown)
    return bounds(data_offset, offsets, dtype.itemsize, span_rows)

