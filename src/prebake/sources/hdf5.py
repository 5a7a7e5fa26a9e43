"""An HDF5 file as a source: every dataset with one row per item becomes a column.

- Top-level datasets whose first axis has the item count N are fixed columns under
  their own names; N is the ``num_items`` attribute of a file ``prebake export`` wrote,
  else the length shared by most datasets (``label`` and ``image`` decide a tie). Other
  datasets are left out, with a warning that names them; in a file prebake exported,
  every column its manifest lists must be there with N rows.
- A group holding ``values`` and ``offsets`` is a ragged column. The offsets are checked
  as the cache's own are (:func:`prebake.cache.format.offsets_problem`: N + 1 values,
  non-decreasing from 0 to the rows of ``values``; any integer width); anything else is
  a SourceError naming the dataset, so no item ever gets another item's rows.
- Rows are read into the ``numpy_dtype`` attribute's dtype when present (an export's),
  else the stored dtype, byte order included; text datasets become ``<U`` columns (the
  longest value); ``classes`` come from the file's attributes when present.
- The fingerprint covers the file's content (an xxh3 of its bytes), not its mtime, and
  the files it links to (:mod:`.hdf5links`: external links, virtual datasets, external
  raw storage), which must all exist.

The layout is :mod:`prebake.cache.export`'s, so ``prebake build FILE.h5 OUT`` on an
exported cache gives byte-identical columns. The file is opened once per process (HDF5
handles do not survive a fork), with a chunk cache large enough that rows read in order
decompress each chunk once.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.export import OFFSETS, VALUES, column_dtype, h5py_module, read_rows
from ..cache.files import file_checksum
from ..cache.format import offsets_problem, validate_column_name
from ..errors import BadItemError, FormatError, SourceError
from ..identity.files import file_identity
from .base import Source
from .hdf5links import LinkedFiles

log = logging.getLogger(__name__)
_CHUNK_CACHE = 64 << 20


class Hdf5Source(Source):
    """Items ``{column: row}`` from the datasets of an HDF5 file (see the module docstring)."""

    kind = "hdf5"

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).resolve()
        h5py = h5py_module()
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise SourceError(f"{self.path} is not a readable HDF5 file ({e}): it is truncated, corrupt or not "
                              "HDF5; write it again (prebake export CACHE FILE.h5) or check the copy") from None
        try:
            with f:
                self._scan(f)
        except OSError as e:
            raise SourceError(f"{self.path} cannot be read ({e}): it is truncated or corrupt; write it again "
                              "(prebake export CACHE FILE.h5) or check the copy") from None
        self._file: Any = None
        self._pid = -1

    def _scan(self, f: Any) -> None:
        links = LinkedFiles(self.path)
        fixed, ragged = self._members(f, links)
        self.num_items = self._item_count(f, fixed, ragged)
        counted = {k: g for k, g in ragged.items() if len(g[OFFSETS]) == self.num_items + 1 or "num_items" in f.attrs}
        left_out = sorted(k for k, v in fixed.items() if len(v) != self.num_items)
        left_out += sorted(k for k in ragged if k not in counted)
        left_out += sorted(k for k in f if k not in fixed and k not in ragged)
        if left_out:
            log.warning("%s: left out %s: not one row per item (%d items)", self.path, ", ".join(left_out),
                        self.num_items)
        order = _manifest_order(f)
        self.fixed = sorted((k for k in fixed if len(fixed[k]) == self.num_items), key=lambda k: order.get(k, len(order)))
        self.ragged_columns = tuple(counted)  # type: ignore[misc]
        for name in (*self.fixed, *self.ragged_columns):
            _check_name(name, self.path)
        if not self.fixed and not self.ragged_columns:
            raise SourceError(f"{self.path} holds no dataset with a first axis of {self.num_items} rows to bake")
        self._check_exported(order)
        self._offsets = {k: self._checked_offsets(g, k) for k, g in counted.items()}
        datasets = {k: fixed[k] for k in self.fixed} | {f"{k}/{VALUES}": counted[k][VALUES] for k in counted}
        self.dtypes = {k.split("/")[0]: column_dtype(ds, f"{self.path}: dataset {k!r}") for k, ds in datasets.items()}
        datasets.update({f"{k}/{OFFSETS}": counted[k][OFFSETS] for k in counted})
        for where, ds in datasets.items():
            links.storage(ds, where)
        self.linked = list(links.files)
        self.classes = _classes(f)
        self.order = sorted((*self.fixed, *self.ragged_columns), key=lambda k: order.get(k, len(order)))

    def _members(self, f: Any, links: LinkedFiles) -> tuple[dict[str, Any], dict[str, Any]]:
        """Top-level datasets of at least one axis, and ragged groups; a dangling link is refused."""
        h5py = h5py_module()
        fixed, ragged = {}, {}
        for name in f:
            links.follow(f, name, name)
            obj = f[name]
            if isinstance(obj, h5py.Dataset) and obj.ndim >= 1:
                fixed[name] = obj
            elif isinstance(obj, h5py.Group) and VALUES in obj and OFFSETS in obj:
                for part in (VALUES, OFFSETS):
                    links.follow(obj, part, f"{name}/{part}")
                if not all(isinstance(obj[p], h5py.Dataset) and obj[p].ndim >= 1 for p in (VALUES, OFFSETS)):
                    raise SourceError(f"{self.path}: group {name!r} has {VALUES} and {OFFSETS} that are not both "
                                      "datasets of at least one axis; a ragged column needs both: fix the file")
                ragged[name] = obj
        return fixed, ragged

    def _item_count(self, f: Any, fixed: dict[str, Any], ragged: dict[str, Any]) -> int:
        if "num_items" in f.attrs:
            n = f.attrs["num_items"]
            if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)) or n < 0:
                raise SourceError(f"{self.path}: the attribute num_items is {n!r}, not a whole number of items; "
                                  "export the cache again, or delete the attribute")
            return int(n)
        lengths = Counter(len(v) for v in fixed.values())
        lengths.update(len(g[OFFSETS]) - 1 for g in ragged.values())
        if not lengths:
            raise SourceError(f"{self.path} holds no datasets (at the top level) to bake")
        for name in ("label", "image"):
            if name in fixed and lengths[len(fixed[name])] == max(lengths.values()):
                return len(fixed[name])
        return lengths.most_common(1)[0][0]

    def _check_exported(self, order: dict[str, int]) -> None:
        """Every column the manifest of an exported file lists must be there, with one row per item."""
        missing = sorted(set(order) - set(self.fixed) - set(self.ragged_columns))
        if missing:
            raise SourceError(f"{self.path}: its manifest lists the columns {missing}, which the file does not hold "
                              f"with {self.num_items} rows each: it was changed after the export; export it again")

    def _checked_offsets(self, group: Any, name: str) -> np.ndarray:
        """The ragged column's offsets as int64, checked as the cache's own are (else a SourceError)."""
        rows = group[VALUES].shape[0]
        raw = np.asarray(group[OFFSETS][()])
        offsets = raw.astype(np.int64) if _fits_int64(raw) else raw
        problem = offsets_problem(offsets, self.num_items, rows)
        if problem:
            raise SourceError(
                f"{self.path}: dataset '{name}/{OFFSETS}' cannot be the offsets of the ragged column {name!r} "
                f"({self.num_items} items over the {rows} rows of '{name}/{VALUES}'): {problem}. Item i is "
                f"values[offsets[i]:offsets[i+1]], so the offsets must be {self.num_items + 1} whole numbers, "
                f"non-decreasing from 0 to {rows}; fix the file, or export the cache again")
        return offsets

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for Ray workers) without the open file: each process opens its own."""
        return {**self.__dict__, "_file": None, "_pid": -1}

    def _open(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py_module().File(self.path, "r", rdcc_nbytes=_CHUNK_CACHE)
            self._pid = os.getpid()
        return self._file

    def keys(self) -> list[str]:
        return [f"{self.path.name}[{i}]" for i in range(self.num_items)]

    def read(self, index: int) -> dict[str, Any]:
        f = self._open()
        try:
            item = {}
            for name in self.order:  # the exported cache's column order
                if name in self._offsets:
                    lo, hi = self._offsets[name][index], self._offsets[name][index + 1]
                    item[name] = read_rows(f[name][VALUES], slice(int(lo), int(hi)), self.dtypes[name])
                else:
                    item[name] = read_rows(f[name], index, self.dtypes[name])
        except (OSError, ValueError, KeyError) as e:
            raise BadItemError(f"cannot read row {index} of {self.path.name}: {e}") from None
        return item

    def describe(self) -> dict[str, Any]:
        st = self.path.stat()
        params = {"file": self.path.name, "columns": self.order, "xxh3_64": file_checksum(self.path)}
        files = {self.path.name: [st.st_size, 0]}  # content, not mtime, decides
        files.update(file_identity(self.linked, self.path.parent, content=self.content_hash))
        return {"kind": self.kind, "root": str(self.path.parent), "params": params, "files": files}


def _fits_int64(raw: np.ndarray) -> bool:
    """Integers that int64 holds exactly (offsets of any integer width are accepted)."""
    if raw.dtype.kind not in "iu":
        return False
    return np.can_cast(raw.dtype, np.int64) or raw.size == 0 or int(raw.max()) <= np.iinfo(np.int64).max


def _manifest_order(f: Any) -> dict[str, int]:
    """Column positions in the manifest of an exported cache (h5py lists datasets by name)."""
    try:
        return {name: i for i, name in enumerate(json.loads(f.attrs["manifest"])["columns"])}
    except (KeyError, ValueError, TypeError):
        return {}


def _classes(f: Any) -> list[str] | None:
    raw = f.attrs.get("classes")
    if raw is None:
        return None
    try:
        value = json.loads(raw) if isinstance(raw, (str, bytes)) else [str(c) for c in raw]
    except ValueError:
        return None
    return [str(c) for c in value] if isinstance(value, list) else None


def _check_name(name: str, path: Path) -> None:
    try:
        validate_column_name(name)
    except FormatError as e:
        raise SourceError(f"{path}: dataset {name!r} cannot be a column: {e}; rename it") from None
