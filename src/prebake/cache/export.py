"""A cache as one HDF5 file (``prebake export CACHE FILE.h5``), readable with plain h5py.

Layout, declared here for the writer and for the reader (:mod:`prebake.sources.hdf5`)::

    FILE.h5
      /image               (N, C, H, W) uint8, chunked   one dataset per fixed column
      /label               (N,) int64
      /patient_id          (N,) UTF-8 strings
      /signal/values       (M, ...)   a ragged column: a group holding every item concatenated
      /signal/offsets      (N+1,) int64: item i is values[offsets[i]:offsets[i+1]]
      /photo/values        (E,) a ragged N-D column: every item's elements, 1-D, in C order
      /photo/offsets       (N+1,) int64: element offsets
      /photo/shapes        (N, ndim) int64: item i is values[offsets[i]:offsets[i+1]] at shape shapes[i]
      attributes of /:     prebake_format, prebake_version, num_items, classes, manifest (JSON text)

Every column dataset carries the attribute ``numpy_dtype``, the cache's dtype string, and
its rows are read back into exactly that dtype, so ``prebake build FILE.h5 OUT`` gives
byte-identical columns: numbers, bool, complex and void keep their type and byte order;
``S`` bytes stay fixed-length bytes (any bytes, not only UTF-8); ``<U`` text is stored as
fixed-length UTF-8; datetime64 and timedelta64 are stored as their int64 counts.
Datasets are chunked along the first axis (about 1 MiB a chunk, so one row reads one chunk
or a few; a dataset with a zero-length axis is not chunked); ``compression`` is ``None``,
``"gzip"`` (with ``level``) or ``"lzf"``, with the byte-shuffle filter.

The export reads every column file once, hashing the bytes it copies, and refuses a cache
whose checksums do not match its manifest. It writes a temporary file beside the
target and renames it into place when complete; on any failure (a full disk included) the
temporary file is removed. It replaces an existing target only when that is a file prebake
exported (or when told to), never a directory. h5py is optional (``pip install 'prebake[hdf5]'``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from .._version import __version__
from ..errors import CacheCorruptError, ForeignOutputError, FormatError, OptionError, SourceError, opt
from .export_file import Sink, check_room, export_bytes, write_failed
from .files import fsync_path, map_npy, npy_layout, open_dir, open_member, read_manifest
from .format import ColumnSpec, column_specs
from .spans import SPAN_ROWS, fd_span_checksum, spans_of

log = logging.getLogger(__name__)
HDF5_FORMAT = "prebake-hdf5"
VALUES, OFFSETS, SHAPES = "values", "offsets", "shapes"
NUMPY_DTYPE = "numpy_dtype"  # attribute: the numpy dtype a dataset's rows read back into
COMPRESSIONS = ("gzip", "lzf")
_CHUNK_BYTES = 1 << 20
_COPY_BYTES = 64 << 20


def h5py_module() -> Any:
    """h5py, or an error that says how to install it."""
    try:
        import h5py
    except ImportError:
        raise SourceError("HDF5 files need h5py, which is not installed: pip install 'prebake[hdf5]'") from None
    return h5py


class _Stopped(Exception):
    """The sink recorded a failed write: stop copying, let HDF5 close its file."""


def export_hdf5(cache: str | os.PathLike[str], out: str | os.PathLike[str], compression: str | None = None,
                level: int | None = None, overwrite: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the committed cache at ``cache`` as the HDF5 file ``out`` (layout in the module docstring).

    ``compression``: None, ``"gzip"`` (``level`` 0-9, default 4) or ``"lzf"``. ``overwrite``:
    replace ``out`` even when it is not a file prebake exported (never a directory).
    ``progress``, when given, is called as ``progress(bytes_done, bytes_total)`` as columns
    are copied. Returns the path written.
    """
    h5py = h5py_module()
    cache, out = Path(cache), Path(os.path.abspath(out))
    filters = _filters(compression, level)
    with open_dir(cache) as dir_fd:
        manifest = read_manifest(cache, dir_fd)
        specs = column_specs(manifest)
        stored = {name: stored_dtype(np.dtype(s.dtype), name) for name, s in specs.items()}  # refused up front
        _warn_label(cache, specs)
        _check_target(out, overwrite, cache)
        files = {name: _column_files(dir_fd, cache, manifest, s) for name, s in specs.items()}
    total = sum(f.array.nbytes for group in files.values() for f in group)
    needed = export_bytes(total, sum(len(g) for g in files.values())) if compression is None else None
    if needed is not None:
        check_room(out, needed)
    tmp = out.with_name(f"{out.name}.{secrets.token_hex(4)}.partial")  # a new name: nothing there is replaced
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise write_failed(out, e, 0, needed) from None
    sink = Sink(fd)
    try:
        copy = _Copy(filters, total, progress, sink)
        try:
            with h5py.File(sink, "w") as f:
                _root_attrs(f, manifest)
                for name, spec in specs.items():
                    copy.column(f, spec, files[name], stored[name])
        except _Stopped:
            pass
        _finish(sink, out, needed)
        try:
            os.replace(tmp, out)
            fsync_path(out.parent)
        except OSError as e:
            raise write_failed(out, e, sink.written, needed) from None
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)
    return out


def _finish(sink: Sink, out: Path, needed: int | None) -> None:
    if sink.error is None:
        try:
            os.fsync(sink.fd)
        except OSError as e:
            sink.error = e
    if sink.error is not None:
        raise write_failed(out, sink.error, sink.written, needed)


def _filters(compression: str | None, level: int | None) -> dict[str, Any]:
    if compression not in (None, *COMPRESSIONS):
        raise OptionError(f"compression {compression!r} is not one of none, {', '.join(COMPRESSIONS)}; "
                          "pick one of them")
    if level is not None and (compression != "gzip" or type(level) is not int or not 0 <= level <= 9):
        raise OptionError(f"level {level!r} is a gzip level, a whole number 0-9 with compression 'gzip'; "
                          "drop it or use gzip")
    return {"compression": compression, "shuffle": compression is not None,
            **({"compression_opts": 4 if level is None else level} if compression == "gzip" else {})}


def stored_dtype(dtype: np.dtype, column: str) -> np.dtype | None:
    """The type a column of ``dtype`` is written as (None: UTF-8 text); refuses a dtype HDF5 cannot hold."""
    if dtype.kind == "U":
        return None
    if dtype.kind in "Mm":
        return _int_twin(dtype)
    if dtype.kind in "biufcSV" and not dtype.hasobject and dtype.fields is None and dtype.subdtype is None:
        return dtype
    raise FormatError(f"column {column!r} has dtype {dtype.str}, which an HDF5 export cannot store byte for byte; "
                      "convert it to a numeric, bool, bytes, str or datetime64 column, or keep the .npy cache")


def _warn_label(cache: Path, specs: dict[str, ColumnSpec]) -> None:
    label = specs.get("label")
    if label is not None and np.dtype(label.dtype).kind in "iu" and np.dtype(label.dtype) != np.dtype(np.int64):
        log.warning("%s: its label column is %s; 'prebake build' of the exported file stores labels as int64, as "
                    "every build does (the values are kept)", cache, label.dtype)


def _int_twin(dtype: np.dtype) -> np.dtype:
    """The int64 of ``dtype``'s byte order: how datetime64 and timedelta64 counts are stored."""
    return np.dtype(np.int64).newbyteorder(dtype.byteorder)


def _check_target(out: Path, overwrite: bool, cache: Path) -> None:
    """Refuse a target that is not ours to replace (see the module docstring)."""
    if not out.parent.is_dir():
        raise OptionError(f"{out}: the folder {out.parent} does not exist; create it, or export to another folder")
    if out.parent.resolve().is_relative_to(cache.resolve()):
        raise OptionError(f"{out} is inside the cache {cache}, which holds only its own files; export to a path "
                          "outside it")
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise ForeignOutputError(f"{out} is a directory; prebake never replaces a directory, with or without "
                                 f"{opt('force')}: give a file name such as {out / (cache.name + '.h5')}")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise ForeignOutputError(f"{out} is not a regular file (a device, FIFO or socket); give another file name")
    if not overwrite and not (stat.S_ISREG(st.st_mode) and is_export(out)):
        raise ForeignOutputError(f"{out} exists and is not a file prebake exported, so it is left as it is: choose "
                                 "another file name, or replace it with --force (overwrite=True in Python)")


def is_export(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file that ``prebake export`` wrote."""
    h5py = h5py_module()
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("prebake_format") == HDF5_FORMAT)
    except (OSError, ValueError):
        return False


class _ColumnFile:
    """One column file of the cache, mapped; :meth:`blocks` copies it in row blocks and hashes the copies."""

    def __init__(self, dir_fd: int, shown: Path, meta: dict[str, Any], dtype: np.dtype, shape: tuple[int, ...],
                 offsets: _ColumnFile | None = None):
        """``offsets``: the column's offsets file, which cuts a span-checksummed values file (cache/spans.py)."""
        self.shown, self.meta = shown, meta
        self.spanned: str | None = None  # a span-checksummed file's checksum, taken from the file as opened
        fd = open_member(dir_fd, shown.name, shown)
        try:
            size = os.fstat(fd).st_size
            if size != meta["bytes"]:
                raise CacheCorruptError(f"{shown} is {size:,} bytes, manifest says {meta['bytes']:,}: truncated or "
                                        f"replaced; nothing was exported: rebuild the cache with {opt('force')}")
            rows = shape[0] if shape[0] >= 0 else (npy_layout(fd, shown)[0][:1] or (-1,))[0]
            self.array = map_npy(fd, shown, dtype, (rows, *shape[1:]))
            self.header = os.pread(fd, size - self.array.nbytes, 0)
            if SPAN_ROWS in meta and offsets is not None:
                cuts = spans_of(fd, shown, offsets.array, offsets.shown, len(offsets.array) - 1, int(meta[SPAN_ROWS]))
                self.spanned = fd_span_checksum(fd, cuts)
        finally:
            os.close(fd)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, rows copied out of the map)``; then a CacheCorruptError if the bytes hashed do not
        match the manifest's checksum."""
        h = xxhash.xxh3_64(self.header) if self.spanned is None else None
        data = self.array
        step = max(1, _COPY_BYTES // max(1, data[:1].nbytes))
        for start in range(0, len(data), step):
            block = np.array(data[start : start + step])
            if h is not None:
                # numpy declares the buffer protocol to type checkers only from Python 3.12
                h.update(memoryview(block.reshape(-1).view(np.uint8)))  # type: ignore[arg-type]
            yield start, block
        digest = self.spanned if h is None else h.hexdigest()
        if digest != self.meta["xxh3_64"]:
            raise CacheCorruptError(f"{self.shown} checksum is {digest}, manifest says {self.meta['xxh3_64']}: "
                                    f"the bytes changed on disk since the build; nothing was exported: run "
                                    f"'prebake verify {self.shown.parent}' and rebuild the cache with {opt('force')}")


def _column_files(dir_fd: int, cache: Path, manifest: dict[str, Any], spec: ColumnSpec) -> list[_ColumnFile]:
    table, n = manifest["columns"][spec.name]["files"], int(manifest["num_items"])
    dtype = np.dtype(spec.dtype)
    if not spec.ragged:
        [name] = spec.files
        return [_ColumnFile(dir_fd, cache / name, table[name], dtype, (n, *spec.row_shape))]
    values, offsets = spec.files[:2]
    cuts = _ColumnFile(dir_fd, cache / offsets, table[offsets], np.dtype(np.int64), (n + 1,))
    files = [_ColumnFile(dir_fd, cache / values, table[values], dtype, (-1, *spec.row_shape), cuts), cuts]
    if spec.shaped:
        shapes = spec.files[2]
        files.append(_ColumnFile(dir_fd, cache / shapes, table[shapes], np.dtype(np.int64), (n, spec.ndim)))
    return files


class _Copy:
    """Copies column files into datasets, counting bytes for ``progress`` and stopping when the sink fails."""

    def __init__(self, filters: dict[str, Any], total: int, progress: Callable[[int, int], None] | None, sink: Sink):
        self.filters, self.total, self.progress, self.sink, self.done = filters, total, progress, sink, 0

    def column(self, f: Any, spec: ColumnSpec, files: list[_ColumnFile], stored: np.dtype | None) -> None:
        if not spec.ragged:
            self.dataset(f, spec.name, files[0], stored, self.filters)
            return
        group = f.create_group(spec.name)
        group.attrs["ragged"] = True
        self.dataset(group, VALUES, files[0], stored, self.filters)
        self.dataset(group, OFFSETS, files[1], np.dtype(np.int64), {})
        if spec.shaped:
            self.dataset(group, SHAPES, files[2], np.dtype(np.int64), {})

    def dataset(self, parent: Any, name: str, src: _ColumnFile, stored: np.dtype | None,
                filters: dict[str, Any]) -> None:
        data = src.array
        h5type = h5py_module().string_dtype("utf-8", _utf8_width(src)) if stored is None else stored
        chunked = len(data) > 0 and all(data.shape[1:])  # HDF5 has no chunk with a zero-length axis
        chunk_rows = max(1, min(len(data), _CHUNK_BYTES // max(1, data[:1].nbytes)))
        ds = parent.create_dataset(name, shape=data.shape, dtype=h5type,
                                   **({"chunks": (chunk_rows, *data.shape[1:]), **filters} if chunked else {}))
        ds.attrs[NUMPY_DTYPE] = data.dtype.str
        for start, block in src.blocks():
            if block.size:
                ds[start : start + len(block)] = _as_stored(block, stored, h5type, src.shown, start)
            self.done += block.nbytes
            if self.progress:
                self.progress(self.done, self.total)
            if self.sink.error is not None:
                raise _Stopped


def _as_stored(block: np.ndarray, stored: np.dtype | None, h5type: Any, shown: Path, start: int) -> np.ndarray:
    if stored is None:
        return _utf8(block, shown, start).astype(h5type)
    return block.view(stored) if block.dtype.kind in "Mm" else block


def _utf8(block: np.ndarray, shown: Path, start: int) -> np.ndarray:
    try:
        return np.char.encode(block, "utf-8")
    except (UnicodeEncodeError, SystemError, ValueError):  # a lone surrogate, or a code point past U+10FFFF
        raise FormatError(f"{shown}: rows from {start} hold text that is not valid Unicode, which HDF5 cannot "
                          "store as UTF-8; fix those strings or keep the .npy cache") from None


def _utf8_width(src: _ColumnFile) -> int:
    """The longest UTF-8 encoding of the column's strings (one checksummed pass before the copy: corrupt
    bytes are a CacheCorruptError before any of them is decoded as text)."""
    width, bad = 1, None
    for start, block in src.blocks():
        try:
            width = max(width, int(np.char.str_len(_utf8(block, src.shown, start)).max()) if block.size else 1)
        except FormatError as e:
            bad = bad or e
    if bad is not None:
        raise bad
    return width


def _root_attrs(f: Any, manifest: dict[str, Any]) -> None:
    f.attrs["prebake_format"] = HDF5_FORMAT
    f.attrs["prebake_version"] = __version__
    f.attrs["num_items"] = int(manifest["num_items"])
    f.attrs["classes"] = json.dumps(manifest.get("classes"))
    f.attrs["manifest"] = json.dumps(manifest)


# -- reading (prebake.sources.hdf5) -----------------------------------------------------------


def column_dtype(ds: Any, where: str) -> np.dtype:
    """The dtype the rows of ``ds`` are read into: its ``numpy_dtype`` attribute when that describes the
    stored type, else a ``<U`` width for text, else the stored dtype (byte order included)."""
    raw = ds.attrs.get(NUMPY_DTYPE)
    if raw is None:
        return np.dtype(string_width(ds)) if is_string_dataset(ds) else ds.dtype
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        dtype = np.dtype(text)
    except TypeError:
        dtype = None
    if dtype is None or not _describes(dtype, ds):
        raise SourceError(f"{where}: its attribute {NUMPY_DTYPE}={text!r} does not describe its stored type "
                          f"{ds.dtype}; delete the attribute, or export the cache again")
    return dtype


def _describes(dtype: np.dtype, ds: Any) -> bool:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        return False
    if dtype.kind == "U":
        return is_string_dataset(ds)
    if dtype.kind in "Mm":
        return ds.dtype.kind == "i" and ds.dtype.itemsize == 8
    if dtype.kind == "S":
        return ds.dtype.kind == "S" and ds.dtype.itemsize == dtype.itemsize
    same_order = ds.dtype.newbyteorder("=") == dtype.newbyteorder("=")
    return dtype.kind in "biufcV" and ds.dtype.kind == dtype.kind and same_order


def read_rows(ds: Any, rows: Any, dtype: np.dtype) -> np.ndarray:
    """Rows of ``ds`` (an index or a slice) as an array of exactly ``dtype`` (a 0-d one for one row)."""
    if dtype.kind == "U":
        return read_string_rows(ds, rows).astype(dtype)
    raw = np.asarray(ds[rows])
    if dtype.kind in "Mm":
        return raw.astype(_int_twin(dtype)).view(dtype)
    return np.asarray(raw, dtype=dtype)


def read_string_rows(ds: Any, rows: Any) -> np.ndarray:
    """Rows of a string dataset as numpy ``<U`` (the width of its ``numpy_dtype`` attribute, if any)."""
    raw = np.asarray(ds[rows])
    if raw.dtype.kind == "O":  # variable-length strings
        text = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in raw.reshape(-1)]
        raw = np.array(text).reshape(raw.shape)
    elif raw.dtype.kind == "S":
        raw = np.char.decode(raw, "utf-8")
    wanted = ds.attrs.get(NUMPY_DTYPE)
    return raw.astype(str(wanted)) if wanted is not None else raw


def string_width(ds: Any) -> str:
    """The dtype a string dataset's rows are read into: ``<U`` of the longest value when every value is UTF-8
    text (one pass over the dataset), else bytes (``|S`` of the longest value), so a column of raw bytes such as
    digests keeps every row rather than losing those that are not text."""
    wanted = ds.attrs.get(NUMPY_DTYPE)
    if wanted is not None:
        return str(wanted)
    try:
        values = read_string_rows(ds, slice(None))
    except UnicodeDecodeError:
        return f"|S{max(1, ds.dtype.itemsize if ds.dtype.kind == 'S' else _bytes_width(ds))}"
    if ds.dtype.kind == "S":
        return f"<U{max(1, ds.dtype.itemsize)}"
    return f"<U{max(1, int(np.char.str_len(values).max()) if values.size else 1)}"


def _bytes_width(ds: Any) -> int:
    """The longest value of a variable-length bytes dataset."""
    raw = np.asarray(ds[()]).reshape(-1)
    return max((len(v) for v in raw), default=1)


def is_string_dataset(ds: Any) -> bool:
    h5py = h5py_module()
    return ds.dtype.kind == "S" or h5py.check_string_dtype(ds.dtype) is not None
