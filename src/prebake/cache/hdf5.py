"""A cache as one HDF5 file (``prebake export CACHE FILE.h5``), readable with plain h5py.

Layout, declared here for the writer and for the reader (:mod:`prebake.bake.sources.hdf5`)::

    FILE.h5
      /image               (N, C, H, W) uint8, chunked   one dataset per fixed column
      /label               (N,) int64
      /patient_id          (N,) UTF-8 strings, attribute numpy_dtype="<U12"
      /signal/values       (M, ...)   a ragged column: a group holding every item concatenated
      /signal/offsets      (N+1,) int64: item i is values[offsets[i]:offsets[i+1]]
      attributes of /:     prebake_format, prebake_version, num_items, classes, manifest (JSON text)

Every dataset is chunked along the first axis (about 1 MiB a chunk, so one row reads one
chunk or a few); ``compression`` is ``None``, ``"gzip"`` (with ``level``) or ``"lzf"``, with
the byte-shuffle filter. Strings are stored as fixed-length UTF-8 and read back into the
``<U`` width named by their ``numpy_dtype`` attribute, so ``prebake build FILE.h5 OUT``
gives byte-identical columns. The file is written as ``FILE.h5.partial`` and renamed when
complete. h5py is optional (``pip install 'prebake[hdf5]'``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import CacheNotFoundError, PrebakeError, SourceError
from .files import read_manifest
from .format import MANIFEST, column_specs

HDF5_FORMAT = "prebake-hdf5"
VALUES, OFFSETS = "values", "offsets"
NUMPY_DTYPE = "numpy_dtype"  # attribute: the numpy dtype a string dataset reads back into
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


def export_hdf5(cache: str | os.PathLike[str], out: str | os.PathLike[str], compression: str | None = None,
                level: int | None = None, overwrite: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the committed cache at ``cache`` as the HDF5 file ``out`` (layout in the module docstring).

    ``compression``: None, ``"gzip"`` (``level`` 0-9, default 4) or ``"lzf"``. ``overwrite``:
    replace an existing ``out``. ``progress``, when given, is called as
    ``progress(bytes_done, bytes_total)`` as columns are copied. Returns the path written.
    """
    h5py = h5py_module()
    cache, out = Path(cache), Path(out)
    if not (cache / MANIFEST).is_file():
        raise CacheNotFoundError(f"no prebake cache at {cache} (no {MANIFEST}); build one with 'prebake build'")
    if compression not in (None, *COMPRESSIONS):
        raise PrebakeError(f"compression {compression!r} is not one of none, {', '.join(COMPRESSIONS)}")
    if out.exists() and not overwrite:
        raise PrebakeError(f"{out} exists; choose another file name, or overwrite it (--force)")
    manifest = read_manifest(cache)
    specs = column_specs(manifest)
    arrays = {name: [np.load(cache / f, mmap_mode="r", allow_pickle=False) for f in s.files] for name, s in specs.items()}
    total = sum(a.nbytes for group in arrays.values() for a in group)
    partial = out.with_name(out.name + ".partial")
    filters = {"compression": compression, "shuffle": compression is not None,
               **({"compression_opts": 4 if level is None else level} if compression == "gzip" else {})}
    done = 0
    try:
        with h5py.File(partial, "w") as f:
            _root_attrs(f, manifest)
            for name, spec in specs.items():
                if spec.ragged:
                    group = f.create_group(name)
                    group.attrs["ragged"] = True
                    done = _write(group, VALUES, arrays[name][0], filters, done, total, progress)
                    done = _write(group, OFFSETS, arrays[name][1], {}, done, total, progress)
                else:
                    done = _write(f, name, arrays[name][0], filters, done, total, progress)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def _root_attrs(f: Any, manifest: dict[str, Any]) -> None:
    f.attrs["prebake_format"] = HDF5_FORMAT
    f.attrs["prebake_version"] = __version__
    f.attrs["num_items"] = int(manifest["num_items"])
    f.attrs["classes"] = json.dumps(manifest.get("classes"))
    f.attrs["manifest"] = json.dumps(manifest)


def _write(parent: Any, name: str, data: np.ndarray, filters: dict[str, Any], done: int, total: int,
           progress: Callable[[int, int], None] | None) -> int:
    """One dataset, copied in blocks of rows (a memmap never loads whole)."""
    h5py = h5py_module()
    strings = data.dtype.kind == "U"
    dtype = h5py.string_dtype("utf-8", _utf8_width(data)) if strings else data.dtype
    row_bytes = max(1, data[:1].nbytes)
    chunk_rows = max(1, min(len(data), _CHUNK_BYTES // row_bytes)) if len(data) else None
    ds = parent.create_dataset(name, shape=data.shape, dtype=dtype,
                               chunks=(chunk_rows, *data.shape[1:]) if chunk_rows else None,
                               **(filters if chunk_rows else {}))
    if strings:
        ds.attrs[NUMPY_DTYPE] = data.dtype.str
    step = max(1, _COPY_BYTES // row_bytes)
    for start in range(0, len(data), step):
        block = np.asarray(data[start : start + step])
        ds[start : start + len(block)] = np.char.encode(block, "utf-8").astype(dtype) if strings else block
        done += block.nbytes
        if progress:
            progress(done, total)
    return done


def _utf8_width(data: np.ndarray) -> int:
    if not len(data):
        return 1
    return max(1, int(np.char.str_len(np.char.encode(np.asarray(data), "utf-8")).max()))


def read_string_rows(ds: Any, rows: Any) -> np.ndarray:
    """Rows of a string dataset as numpy ``<U`` (the width of its ``numpy_dtype`` attribute, if any)."""
    raw = np.asarray(ds[rows])
    if raw.dtype.kind == "O":  # variable-length strings
        raw = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in raw.reshape(-1)]).reshape(raw.shape)
    elif raw.dtype.kind == "S":
        raw = np.char.decode(raw, "utf-8")
    wanted = ds.attrs.get(NUMPY_DTYPE)
    return raw.astype(str(wanted)) if wanted is not None else raw


def string_width(ds: Any) -> str:
    """The ``<U`` dtype a string dataset's rows are read into (one pass for variable-length ones)."""
    wanted = ds.attrs.get(NUMPY_DTYPE)
    if wanted is not None:
        return str(wanted)
    if ds.dtype.kind == "S":
        return f"<U{max(1, ds.dtype.itemsize)}"
    values = read_string_rows(ds, slice(None))
    return f"<U{max(1, int(np.char.str_len(values).max()) if values.size else 1)}"


def is_string_dataset(ds: Any) -> bool:
    h5py = h5py_module()
    return ds.dtype.kind == "S" or h5py.check_string_dtype(ds.dtype) is not None

