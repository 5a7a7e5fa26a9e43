"""An HDF5 file as a source: every dataset with one row per item becomes a column.

- Top-level datasets whose first axis has the item count N are fixed columns under
  their own names; N is the ``num_items`` attribute of a file ``prebake export`` wrote,
  else the length shared by most datasets (``label`` and ``image`` decide a tie). Other
  datasets are left out, with a warning that names them.
- A group holding ``values`` and ``offsets`` (N + 1 int64, from 0) is a ragged column.
- String datasets become ``<U`` columns (the width of their ``numpy_dtype`` attribute,
  else the longest value); ``classes`` come from the file's attributes when present.
- The fingerprint covers the file's content (an xxh3 of its bytes), not its mtime.

The layout is :mod:`prebake.cache.hdf5`'s, so ``prebake build FILE.h5 OUT`` on an
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

from ...cache.files import file_checksum
from ...cache.format import validate_column_name
from ...cache.hdf5 import OFFSETS, VALUES, h5py_module, is_string_dataset, read_string_rows, string_width
from ...errors import BadItemError, FormatError, SourceError
from .base import Source

log = logging.getLogger(__name__)
_CHUNK_CACHE = 64 << 20


class Hdf5Source(Source):
    """Items ``{column: row}`` from the datasets of an HDF5 file (see the module docstring)."""

    kind = "hdf5"

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).resolve()
        h5py = h5py_module()
        try:
            with h5py.File(self.path, "r") as f:
                self._scan(f)
        except OSError as e:
            raise SourceError(f"{self.path} is not a readable HDF5 file ({e}): it is truncated, corrupt or not "
                              "HDF5; write it again (prebake export CACHE FILE.h5) or check the copy") from None
        self._file: Any = None
        self._pid = -1

    def _scan(self, f: Any) -> None:
        h5py = h5py_module()
        fixed = {k: v for k, v in f.items() if isinstance(v, h5py.Dataset) and v.ndim >= 1}
        ragged = {k: v for k, v in f.items() if isinstance(v, h5py.Group) and VALUES in v and OFFSETS in v}
        self.num_items = self._item_count(f, fixed, ragged)
        left_out = sorted(k for k, v in fixed.items() if len(v) != self.num_items)
        left_out += sorted(k for k, g in ragged.items() if len(g[OFFSETS]) != self.num_items + 1)
        left_out += sorted(k for k, v in f.items() if k not in fixed and k not in ragged)
        if left_out:
            log.warning("%s: left out %s: not one row per item (%d items)", self.path, ", ".join(left_out),
                        self.num_items)
        order = _manifest_order(f)
        self.fixed = sorted((k for k in fixed if len(fixed[k]) == self.num_items), key=lambda k: order.get(k, len(order)))
        self.ragged_columns = tuple(k for k in ragged if len(ragged[k][OFFSETS]) == self.num_items + 1)  # type: ignore[misc]
        for name in (*self.fixed, *self.ragged_columns):
            _check_name(name, self.path)
        if not self.fixed and not self.ragged_columns:
            raise SourceError(f"{self.path} holds no dataset with a first axis of {self.num_items} rows to bake")
        self.strings = {k: string_width(fixed[k]) for k in self.fixed if is_string_dataset(fixed[k])}
        self.strings.update({k: string_width(ragged[k][VALUES]) for k in self.ragged_columns
                             if is_string_dataset(ragged[k][VALUES])})
        self.classes = _classes(f)
        self.order = sorted((*self.fixed, *self.ragged_columns), key=lambda k: order.get(k, len(order)))
        self._offsets = {k: np.asarray(ragged[k][OFFSETS], dtype=np.int64) for k in self.ragged_columns}

    def _item_count(self, f: Any, fixed: dict[str, Any], ragged: dict[str, Any]) -> int:
        if "num_items" in f.attrs:
            return int(f.attrs["num_items"])
        lengths = Counter(len(v) for v in fixed.values())
        lengths.update(len(g[OFFSETS]) - 1 for g in ragged.values())
        if not lengths:
            raise SourceError(f"{self.path} holds no datasets (at the top level) to bake")
        for name in ("label", "image"):
            if name in fixed and lengths[len(fixed[name])] == max(lengths.values()):
                return len(fixed[name])
        return lengths.most_common(1)[0][0]

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
                    item[name] = self._row(f[name][VALUES], name, slice(int(lo), int(hi)))
                else:
                    item[name] = self._row(f[name], name, index)
        except (OSError, ValueError, KeyError) as e:
            raise BadItemError(f"cannot read row {index} of {self.path.name}: {e}") from None
        return item

    def _row(self, ds: Any, name: str, rows: Any) -> Any:
        if name in self.strings:
            return read_string_rows(ds, rows).astype(self.strings[name])
        return ds[rows]

    def describe(self) -> dict[str, Any]:
        st = self.path.stat()
        params = {"file": self.path.name, "columns": self.order, "xxh3_64": file_checksum(self.path)}
        return {"kind": self.kind, "root": str(self.path.parent), "params": params,
                "files": {self.path.name: [st.st_size, 0]}}  # content, not mtime, decides


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
