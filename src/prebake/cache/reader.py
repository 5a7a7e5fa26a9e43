"""``prebake.open``: a committed cache as a map-style torch Dataset.

Columns are memory-mapped read-only when the cache is opened; nothing is read
until an item is asked for. ``cache[i]`` returns a dict of writable numpy arrays
(copies of one row, so ``torch.from_numpy`` never warns about non-writable memory).

One Cache serves one committed version for its whole life. The manifest and every
column are opened through one descriptor of the cache directory, so a rebuild that
swaps a new cache into place cannot mix into an open one: the maps keep the old files
alive. The dataset pickles without its memory maps; the receiving process (a spawn
DataLoader worker) maps the files again and checks that the manifest there has the
same checksum, else it raises :class:`~prebake.errors.CacheChangedError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
import torch.utils.data

from ..errors import CacheChangedError, CacheCorruptError, CacheNotFoundError, opt
from .files import lock_holder, map_npy, npy_layout, open_dir, open_member, read_manifest
from .format import (
    CHECKSUM_KEY,
    ITEM_KEYS,
    LOCK_SUFFIX,
    MANIFEST,
    PARTIAL_SUFFIX,
    ColumnSpec,
    column_specs,
    committed_files,
    partial_path,
)
from .indices import is_many, item_index, item_indices
from .splits import row_keys
from .tuples import Tuples

_OPEN_TRIES = 3  # a rebuild may swap the directory while it is being opened: try again


class Ragged:
    """A read-only ragged column: ``values[offsets[i]:offsets[i+1]]`` is item i.

    ``values``: every item concatenated along axis 0; ``offsets``: int64, one more than the items.
    """

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]


class Shaped:
    """A read-only ragged N-D column: item i is ``values[offsets[i]:offsets[i+1]]`` at shape ``shapes[i]``.

    ``values``: every item's elements, 1-D, in C order; ``offsets``: int64 element offsets, one more
    than the items; ``shapes``: int64 ``(N, ndim)``; ``where``: the shapes file, named in errors. Photos
    of many sizes, volumes of many extents.
    """

    def __init__(self, values: np.ndarray, offsets: np.ndarray, shapes: np.ndarray, where: Path | None = None):
        self.values, self.offsets, self.shapes, self.where = values, offsets, shapes, where

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(int(s) for s in self.shapes[i])

    def __getitem__(self, i: int) -> np.ndarray:
        lo, hi, shape = int(self.offsets[i]), int(self.offsets[i + 1]), self.shape(i)
        if math.prod(shape) != hi - lo or min(shape, default=0) < 0:
            raise CacheCorruptError(f"{self.where or 'a ragged N-D column'}: item {i} has shape {shape}, but its "
                                    f"offsets hold {hi - lo} elements; run 'prebake verify' on the cache or rebuild "
                                    f"it with {opt('force')}")
        return self.values[lo:hi].reshape(shape)


def _require_committed(path: Path) -> None:
    """Raise CacheNotFoundError, saying what ``path`` is instead, unless it holds a committed cache."""
    if (path / MANIFEST).is_file() and not path.name.endswith(PARTIAL_SUFFIX):
        return
    out = path.with_name(path.name[: -len(PARTIAL_SUFFIX)]) if path.name.endswith(PARTIAL_SUFFIX) else path
    if path.name.endswith(PARTIAL_SUFFIX) or partial_path(out).exists():  # a sealed one too: committed = renamed
        holder = lock_holder(out)
        if holder is not None:
            who = f"process {holder}" if holder > 0 else "another process"
            raise CacheNotFoundError(f"{out} is being built right now by {who} (it holds {out}{LOCK_SUFFIX}); "
                                     "open it when that build has finished")
        raise CacheNotFoundError(f"{out} is an unfinished build that was interrupted (no {MANIFEST} yet); a partial "
                                 "directory never opens as a cache: re-run the same 'prebake build' command "
                                 "to resume it")
    splits = _split_caches(path)
    if splits:
        names = ", ".join(splits)
        raise CacheNotFoundError(f"{path} holds the splits {names}, one cache each: open one, for example "
                                 f"prebake.open('{path / splits[0]}')")
    raise CacheNotFoundError(f"no prebake cache at {path} (no {MANIFEST}); "
                             f"build one with 'prebake build SOURCE {path}'")


def _split_caches(path: Path) -> list[str]:
    """The names of the committed caches directly inside ``path`` (the splits of one build)."""
    try:
        return sorted(d.name for d in path.iterdir() if d.is_dir() and (d / MANIFEST).is_file()
                      and not d.name.endswith(PARTIAL_SUFFIX))
    except OSError:
        return []


class Cache(torch.utils.data.Dataset):
    """The committed cache at ``path``: ``len(cache)``, ``cache[i] -> dict``, ``.targets``, ``.classes``.

    Raises :class:`~prebake.errors.CacheNotFoundError` when ``path`` holds no committed cache
    (saying what it holds instead), and :class:`~prebake.errors.CacheCorruptError` when a file's
    size does not match the manifest.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        _require_committed(self.path)
        self.manifest: dict[str, Any] = {}
        self.specs: dict[str, ColumnSpec] = {}
        self._cols: dict[str, np.ndarray | Ragged | Shaped] = {}
        self._open(expected=None)
        self._targets: np.ndarray | None = None
        self._preloaded: dict[tuple[str, str], Any] = {}

    @property
    def version(self) -> str:
        """The manifest checksum: what identifies the committed version this Cache serves."""
        return str(self.manifest[CHECKSUM_KEY])

    def _open(self, expected: str | None) -> None:
        """Read the manifest and map every column from one directory descriptor (see the module docstring)."""
        for attempt in range(_OPEN_TRIES):
            with open_dir(self.path) as dir_fd:
                try:
                    manifest = read_manifest(self.path, dir_fd)
                    if expected is None or manifest[CHECKSUM_KEY] == expected:
                        cols = self._map_all(dir_fd, manifest)
                except (CacheCorruptError, CacheNotFoundError):
                    if attempt + 1 < _OPEN_TRIES and _swapped(self.path, dir_fd):
                        continue  # a rebuild replaced the directory while we read it
                    raise
            if expected is not None and manifest[CHECKSUM_KEY] != expected:
                raise CacheChangedError(
                    f"{self.path} was rebuilt after this Cache was opened (manifest checksum {expected}, "
                    f"now {manifest[CHECKSUM_KEY]}); this process would mix two versions of the cache: "
                    f"open it again with prebake.open({str(self.path)!r}) and restart the DataLoader workers"
                )
            self.manifest, self.specs, self._cols = manifest, column_specs(manifest), cols
            self._keys: list[str] | None = None  # read on first use (source_keys)
            return

    def _map_all(self, dir_fd: int, manifest: dict[str, Any]) -> dict[str, np.ndarray | Ragged | Shaped]:
        """Every column mapped, after a cheap check of each file (size and .npy header; no bytes read)."""
        n = int(manifest["num_items"])
        files = committed_files(manifest)
        fds: dict[str, int] = {}
        try:
            for fname, meta in files.items():
                fds[fname] = open_member(dir_fd, fname, self.path / fname)
                size = os.fstat(fds[fname]).st_size
                if size != meta["bytes"]:
                    raise CacheCorruptError(
                        f"{self.path / fname} is {size:,} bytes, manifest says {meta['bytes']:,} bytes — the file "
                        f"was truncated or replaced; run 'prebake verify {self.path}' or rebuild with {opt('force')}"
                    )
            return {name: self._map(fds, spec, n) for name, spec in column_specs(manifest).items()}
        finally:
            for fd in fds.values():
                os.close(fd)

    def _map(self, fds: dict[str, int], spec: ColumnSpec, n: int) -> np.ndarray | Ragged | Shaped:
        dtype = np.dtype(spec.dtype)
        if not spec.ragged:
            [f] = spec.files
            return map_npy(fds[f], self.path / f, dtype, (n, *spec.row_shape))
        values_file, offsets_file = spec.files[:2]
        offsets = map_npy(fds[offsets_file], self.path / offsets_file, np.dtype(np.int64), (n + 1,))
        shown = self.path / values_file
        rows = npy_layout(fds[values_file], shown)[0][:1]
        values = map_npy(fds[values_file], shown, dtype, (rows[0] if rows else -1, *spec.row_shape))
        if int(offsets[0]) != 0 or int(offsets[-1]) != len(values):
            raise CacheCorruptError(
                f"{self.path / offsets_file} runs from {int(offsets[0])} to {int(offsets[-1])}, expected 0 to "
                f"{len(values)} (the rows of {values_file}); run 'prebake verify {self.path}' "
                f"or rebuild with {opt('force')}"
            )
        if not spec.shaped:
            return Ragged(values, offsets)
        shapes_file = spec.files[2]
        shapes = map_npy(fds[shapes_file], self.path / shapes_file, np.dtype(np.int64), (n, spec.ndim))
        return Shaped(values, offsets, shapes, self.path / shapes_file)

    # -- columns --------------------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        return list(self.specs)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.get("classes") or [])

    @property
    def source_keys(self) -> list[str] | None:
        """Each item's key in its source, by row: a file source's path relative to its root (a CSV's path as the
        CSV gives it, an HDF5 dataset's name, an array's or a dataset's index), read from ``_item_keys.json``.
        None for a cache that records none. A CacheCorruptError when the file does not match the manifest."""
        if not self.manifest.get("item_keys"):
            return None
        if self._keys is None:  # read and checked once per opened version, not on every access
            self._keys = row_keys(self.path, self.manifest)
            if self._keys is None:
                raise CacheCorruptError(f"{self.path / ITEM_KEYS} does not match its manifest entry (size, checksum "
                                        "or one key per row); run 'prebake verify' on it, then rebuild with --force")
        return self._keys

    @property
    def targets(self) -> np.ndarray:
        """The ``label`` column as an in-memory int64 array, in source order."""
        if self._targets is None:
            if "label" not in self.specs:
                raise AttributeError(f"{self.path} has no 'label' column (columns: {self.columns})")
            self._targets = np.array(self.column("label"))
        return self._targets

    def column(self, name: str) -> np.ndarray | Ragged | Shaped:
        """The whole column, memory-mapped read-only (a :class:`Ragged` for ragged columns, a :class:`Shaped`
        for ragged N-D ones)."""
        try:
            return self._cols[name]
        except KeyError:
            raise KeyError(f"{self.path} has no column {name!r}; columns are {self.columns}") from None

    def preloaded(self, name: str, device: Any = None) -> Any:
        """The column copied into RAM (``device=None``, a numpy array) or onto ``device`` (a tensor).

        A ragged column becomes a :class:`Ragged` whose ``values`` are copied the same way; its
        ``offsets`` stay in RAM as numpy (a batch's row positions are computed on the host, a few
        integers per sample). A column torch cannot hold (str, bytes) stays a numpy array in RAM
        even for a device. Made once per Cache object: every ``Loader(cache, preload=...)`` over the
        same object shares it, so 100 client views of one preloaded cache hold one copy.
        """
        key = (name, "ram" if device is None else str(torch.device(device)))
        if key not in self._preloaded:
            col = self.column(name)
            if isinstance(col, Shaped):
                self._preloaded[key] = Shaped(_copy_to(col.values, device), np.array(col.offsets),
                                              np.array(col.shapes), col.where)
            elif isinstance(col, Ragged):
                self._preloaded[key] = Ragged(_copy_to(col.values, device), np.array(col.offsets))
            else:
                self._preloaded[key] = _copy_to(col, device)
        return self._preloaded[key]

    def tuples(self, *names: str) -> Tuples:
        """A torchvision-style view: ``image, label = cache.tuples("image", "label")[i]``."""
        return Tuples(self, names)

    # -- Dataset ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.manifest["num_items"])

    def __getitem__(self, i: int | slice | Sequence[int] | np.ndarray) -> dict[str, Any]:
        """``cache[i]``: one item. ``cache[[i, j, ...]]``, ``cache[start:stop]`` or ``cache[mask]`` (a boolean
        mask, one entry per item): a whole batch, one gather per column, as a dict of arrays (lists for ragged
        columns) — what ``DataLoader(cache, batch_size=None, sampler=BatchSampler(...))`` hands on, with no
        per-sample collate. Anything else is an :class:`~prebake.errors.IndicesError` (an IndexError)."""
        if is_many(i):
            return self._batch(i)
        j = item_index(i, len(self), "a cache")
        return {name: self._row(name, spec, j) for name, spec in self.specs.items()}

    def _row(self, name: str, spec: ColumnSpec, j: int) -> np.ndarray:
        col = self.column(name)
        if isinstance(col, (Ragged, Shaped)):
            return np.array(col[j])
        return np.array(col[j : j + 1]).reshape(spec.shape)  # a slice keeps "S5"; col[j] would be a bare scalar

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """A batch for DataLoader's per-sample collate: one gather per column, split into rows."""
        idx = item_indices(indices, len(self), "a cache")
        batch = self._batch(idx)
        return [{name: batch[name][k] for name in self.specs} for k in range(len(idx))]

    def _batch(self, indices: Any) -> dict[str, Any]:
        """One sorted gather per fixed column (memmaps read fastest in order), in the asked order."""
        idx = item_indices(indices, len(self), "a cache")
        order = np.argsort(idx, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        batch: dict[str, Any] = {}
        for name, spec in self.specs.items():
            col = self.column(name)
            if isinstance(col, (Ragged, Shaped)):
                batch[name] = [np.array(col[j]) for j in idx]
            else:
                batch[name] = np.asarray(col[idx[order]])[inverse]  # fancy indexing copies: writable
        return batch

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cols"] = {}  # memory maps are reopened in the receiving process
        state["_preloaded"] = {}  # preloaded copies are not sent either
        state["_keys"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open(expected=self.version)  # the same committed version, or CacheChangedError

    def __repr__(self) -> str:
        cols = ", ".join(f"{n}:{s.dtype}{list(s.shape)}{'*' if s.ragged and not s.shaped else ''}"
                         for n, s in self.specs.items())
        return f"Cache({str(self.path)!r}, items={len(self)}, columns=[{cols}])"


def _swapped(path: Path, dir_fd: int) -> bool:
    """Whether ``path`` names another directory than ``dir_fd`` now (a rebuild was published)."""
    try:
        now, held = os.stat(path), os.fstat(dir_fd)
    except OSError:
        return True
    return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)


@overload
def open_cache(path: str | os.PathLike[str], as_tuple: None = None) -> Cache: ...
@overload
def open_cache(path: str | os.PathLike[str], as_tuple: Sequence[str]) -> Tuples: ...
def open_cache(path: str | os.PathLike[str], as_tuple: Sequence[str] | None = None) -> Cache | Tuples:
    """Open the committed cache at ``path`` (``prebake.open``); see :class:`Cache`.

    Args:
        path: the cache directory (the one holding ``manifest.json``).
        as_tuple: column names; when given, ``ds[i]`` returns a tuple of those columns, in that
            order, as ``torchvision.datasets`` do (``image, label = ds[i]``). See :class:`Tuples`.
    """
    cache = Cache(path)
    return cache if as_tuple is None else Tuples(cache, as_tuple)


def torch_dtype_ok(dtype: np.dtype) -> bool:
    """Whether torch can hold ``dtype`` (numbers and bool, in any byte order); str and bytes cannot."""
    return np.dtype(dtype).newbyteorder("=") in _TORCH_DTYPES


def native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in the machine's byte order (torch refuses the other one); a copy only when it is not."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _copy_to(arr: np.ndarray, device: Any) -> Any:
    copy = np.array(arr)
    if device is None or not torch_dtype_ok(copy.dtype):
        return copy
    return torch.from_numpy(native(copy)).to(device)


_TORCH_DTYPES = {np.dtype(t) for t in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8",
                                       "c16")}
