"""An HDF5 file as a source: every dataset with one row per item becomes a column.

- The datasets of the file's top level, or of the group ``group`` names (``hdf5_group``,
  CLI ``--hdf5-group train``, or a path ``data.h5/train``: the layout Keras-era scripts
  write, ``/train/x``, ``/train/y``), whose first axis has the item count N are columns;
  N is the ``num_items`` attribute of a file ``prebake export`` wrote, else the length of
  the datasets named as items by convention (``image(s)``, ``label(s)``, ``x``, ``y``,
  ``target(s)``, ``input(s)``) when they agree, else the length whose datasets hold the
  most bytes (a table of 3 channel means never outvotes 100 images). Other datasets are
  left out, with a warning that names them; in a file prebake exported, every column its
  manifest lists must be there with N rows. A top level with no datasets but groups that
  hold some is refused with the groups to choose from.
- A variable-length dataset of numbers is a ragged column; a compound dataset gives one
  column per field; a name that cannot be a column name is renamed by a stated rule and
  the original kept in the source's identity (:mod:`.hdf5_columns`).
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

from ..cache.export import OFFSETS, SHAPES, VALUES, column_dtype, h5py_module, read_rows
from ..cache.files import file_checksum
from ..cache.format import offsets_problem
from ..errors import BadItemError, SourceError, opt
from ..identity.files import file_identity
from .base import Source
from .hdf5_columns import Column, group_columns, named
from .hdf5links import LinkedFiles

log = logging.getLogger(__name__)
# Datasets that hold one row per item by convention (Keras' x/y, torchvision-style image/label): their length is
# the item count, whatever small tables of class names or channel means the file also holds.
_ITEM_NAMES = ("label", "labels", "image", "images", "target", "targets", "x", "y", "input", "inputs")
_CHUNK_CACHE = 64 << 20


class Hdf5Source(Source):
    """Items ``{column: row}`` from the datasets of an HDF5 file (see the module docstring)."""

    kind = "hdf5"

    def __init__(self, path: str | os.PathLike[str], group: str | None = None):
        self.path = Path(path).resolve()
        self.group = (group.strip("/") or None) if group else None  # "/" is the file's top level
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
        base = self._base(f, links)
        prefix = f"{self.group}/" if self.group else ""
        for member in base:  # a dangling link is refused, not left out
            links.follow(base, member, prefix + member)
        columns, other = group_columns(base, prefix)
        columns = [c for c in columns if self._usable(f, c, links)]
        unstorable = {c: why for c in columns if (why := _unstorable(f[c.path], c))}
        if unstorable:
            log.warning("%s: left out %s", self.path, "; ".join(
                f"{c.path if c.field is None else f'{c.path}.{c.field}'} ({why})" for c, why in unstorable.items()))
            columns = [c for c in columns if c not in unstorable]
        self.num_items = self._item_count(f, columns)
        rows = {c.path: self._rows(f, c) for c in columns}
        exported = "num_items" in f.attrs  # its ragged columns are checked below, never left out
        kept = [c for c in columns if rows[c.path] == self.num_items or (c.kind == "ragged" and exported)]
        h5py = h5py_module()
        groups = sorted(prefix + o for o in other if isinstance(base.get(o), h5py.Group))
        left_out = sorted({c.path for c in columns if c not in kept} | {prefix + o for o in other} - set(groups))
        if left_out:
            log.warning("%s: left out %s: not one row per item (%d items)", self.path, ", ".join(left_out),
                        self.num_items)
        if groups:
            log.warning("%s: left out the group%s %s; bake one group's datasets with %s", self.path,
                        "s" if len(groups) > 1 else "", ", ".join(groups), opt("hdf5_group", groups[0]))
        order = _manifest_order(f)
        kept, self.renamed = named(sorted(kept, key=lambda c: order.get(c.name, len(order))))
        if not kept and not (exported and self.num_items == 0 and not order):  # an exported cache of no items
            raise SourceError(f"{self.path} holds no dataset with a first axis of {self.num_items} rows to bake")
        self.columns = kept
        self.ragged_columns = tuple(c.name for c in kept if c.kind in ("ragged", "vlen"))  # type: ignore[misc]
        self._check_exported(order)
        self._offsets = {c.name: self._checked_offsets(f[c.path], c.name) for c in kept if c.kind == "ragged"}
        self.dtypes = {c.name: self._dtype(f, c) for c in kept}
        for c in kept:
            for part in ((VALUES, OFFSETS) if c.kind == "ragged" else ("",)):
                links.storage(f[f"{c.path}/{part}" if part else c.path], f"{c.path}/{part}" if part else c.path)
        self.linked = list(links.files)
        self.classes = _classes(f)
        self.order = [c.name for c in kept]

    def _base(self, f: Any, links: LinkedFiles) -> Any:
        """The group whose members are the columns: the file, or ``group``."""
        if self.group is None:
            return f
        h5py = h5py_module()
        links.follow(f, self.group, self.group)
        obj = f.get(self.group)
        if not isinstance(obj, h5py.Group):
            raise SourceError(f"{self.path} has no group {self.group!r} ({opt('hdf5_group')}); its groups with "
                              f"datasets are {_data_groups(f) or 'none'}")
        return obj

    def _usable(self, f: Any, c: Column, links: LinkedFiles) -> bool:
        """A ragged group needs both parts as datasets of at least one axis (else a SourceError)."""
        if c.kind != "ragged":
            return True
        h5py = h5py_module()
        group = f[c.path]
        for part in (VALUES, OFFSETS):
            links.follow(group, part, f"{c.path}/{part}")
        if not all(isinstance(group[p], h5py.Dataset) and group[p].ndim >= 1 for p in (VALUES, OFFSETS)):
            raise SourceError(f"{self.path}: group {c.path!r} has {VALUES} and {OFFSETS} that are not both "
                              "datasets of at least one axis; a ragged column needs both: fix the file")
        return True

    @staticmethod
    def _rows(f: Any, c: Column) -> int:
        return len(f[c.path][OFFSETS]) - 1 if c.kind == "ragged" else len(f[c.path])

    def _dtype(self, f: Any, c: Column) -> np.dtype:
        where = f"{self.path}: dataset {c.path!r}"
        if c.kind == "ragged":
            return column_dtype(f[c.path][VALUES], where)
        ds = f[c.path]
        if c.kind == "field":
            field = ds.dtype.fields[c.field][0]
            if field.kind == "O":  # variable-length text (the only object field _unstorable lets through)
                return _text_dtype(np.asarray(ds.fields(c.field)[()]))
            return field.base  # a subarray field's rows keep its shape, not its dtype
        if c.kind == "vlen":
            return np.dtype(h5py_module().check_vlen_dtype(ds.dtype))
        return column_dtype(ds, where)

    def _item_count(self, f: Any, columns: list[Column]) -> int:
        if "num_items" in f.attrs:
            n = f.attrs["num_items"]
            if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)) or n < 0:
                raise SourceError(f"{self.path}: the attribute num_items is {n!r}, not a whole number of items; "
                                  "export the cache again, or delete the attribute")
            return int(n)
        lengths = Counter(self._rows(f, c) for c in columns)
        if not lengths:
            where = f"in the group {self.group!r}" if self.group else "at the top level"
            groups = _data_groups(f)
            fix = f"; choose a group with {opt('hdf5_group')}: {', '.join(groups)}" if groups and not self.group else ""
            raise SourceError(f"{self.path} holds no datasets {where} to bake{fix}")
        named = {c.path: self._rows(f, c) for c in columns if c.kind == "fixed" and c.name.lower() in _ITEM_NAMES}
        if len(set(named.values())) > 1:  # image and label of different lengths: leaving either out loses items
            shown = ", ".join(f"{p} has {n:,}" for p, n in sorted(named.items()))
            raise SourceError(f"{self.path}: the datasets that hold one row per item by their names disagree on the "
                              f"number of items ({shown} rows); make them the same length, or bake the ones that "
                              "agree from a file of their own")
        if named:
            return next(iter(named.values()))
        size: Counter[int] = Counter()
        for c in columns:
            ds = f[c.path][VALUES] if c.kind == "ragged" else f[c.path]
            size[self._rows(f, c)] += ds.size * ds.dtype.itemsize
        return max(lengths, key=lambda n: (size[n], lengths[n], n))

    def _check_exported(self, order: dict[str, int]) -> None:
        """Every column the manifest of an exported file lists must be there, with one row per item."""
        missing = sorted(set(order) - {c.name for c in self.columns})
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
            return {c.name: self._value(f, c, index) for c in self.columns}  # the exported cache's column order
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BadItemError(f"cannot read row {index} of {self.path.name}: {e}") from None

    def _value(self, f: Any, c: Column, index: int) -> np.ndarray:
        dtype = self.dtypes[c.name]
        if c.kind == "ragged":
            lo, hi = self._offsets[c.name][index], self._offsets[c.name][index + 1]
            rows = read_rows(f[c.path][VALUES], slice(int(lo), int(hi)), dtype)
            return rows.reshape(f[c.path][SHAPES][index]) if SHAPES in f[c.path] else rows  # a ragged N-D column
        if c.kind == "field":
            value = f[c.path].fields(c.field)[index]
            if dtype.kind == "U" and isinstance(value, bytes):  # h5py gives a text field's values as bytes
                value = value.decode("utf-8")
            return np.asarray(value, dtype=dtype)
        if c.kind == "vlen":
            return np.asarray(f[c.path][index], dtype=dtype).reshape(-1)
        return read_rows(f[c.path], index, dtype)

    def describe(self) -> dict[str, Any]:
        st = self.path.stat()
        params = {"file": self.path.name, "columns": self.order, "xxh3_64": file_checksum(self.path),
                  **({"group": self.group} if self.group else {}),
                  **({"renamed": self.renamed} if self.renamed else {})}  # the file's own names, kept in the manifest
        files = {self.path.name: [st.st_size, 0]}  # content, not mtime, decides
        files.update(file_identity(self.linked, self.path.parent, content=self.content_hash))
        return {"kind": self.kind, "root": str(self.path.parent), "params": params, "files": files}


def _unstorable(ds: Any, c: Column) -> str | None:
    """Why a column cannot hold this dataset's (or field's) rows, or None: object references, nested compounds,
    a compound's variable-length field, a variable-length dataset of more than one axis. Such a dataset is left
    out with a warning that names it, so the file's other columns still bake (a per-row failure would make every
    item bad)."""
    if c.kind == "ragged":
        return None
    h5py = h5py_module()
    dtype = ds.dtype.fields[c.field][0] if c.kind == "field" else ds.dtype
    if h5py.check_ref_dtype(dtype) is not None:
        return "object references, which no column holds"
    if dtype.base.fields is not None:
        return "a compound inside a compound; give it its own dataset"
    if c.kind == "vlen" and ds.ndim > 1:
        return f"variable-length rows in {ds.ndim} axes; a ragged column holds one variable axis per item"
    if c.kind == "field" and dtype.hasobject and (dtype.kind != "O" or h5py.check_string_dtype(dtype) is None):
        return "variable-length values inside a table's field; store them as a dataset of their own"
    return None


def _text_dtype(values: np.ndarray) -> np.dtype:
    """``<U`` of the longest value when every value of a variable-length text field is text (UTF-8), else bytes."""
    flat = values.reshape(-1)
    try:
        text = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
    except UnicodeDecodeError:
        return np.dtype(f"|S{max((len(v) for v in flat), default=1) or 1}")
    return np.dtype(f"<U{max((len(v) for v in text), default=1) or 1}")


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


def _data_groups(f: Any) -> list[str]:
    """The groups of the file that directly hold a dataset (what ``hdf5_group`` can name), at most ten."""
    h5py = h5py_module()
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if len(found) < 10 and isinstance(obj, h5py.Group) and any(isinstance(obj.get(m), h5py.Dataset) for m in obj):
            found.append(name)

    f.visititems(visit)
    return found
