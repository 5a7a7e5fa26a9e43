"""Which columns the datasets of one HDF5 group give, and under which names.

- a dataset of at least one axis: a fixed column (one row per item);
- a **variable-length** dataset of numbers (``h5py.vlen_dtype``, HDF5's own ragged layout):
  a ragged column by itself, item i being ``ds[i]``;
- a **compound** dataset (a table of named fields): one column per field, named
  ``<dataset>_<field>``;
- a group holding ``values`` and ``offsets`` (the layout ``prebake export`` writes): a ragged
  column, its offsets checked by the source;
- other groups are not columns (``hdf5_group`` reaches the datasets inside one).

Names. A column name becomes a file name, so it takes letters, digits, ``_`` and ``-`` and
does not start with ``_`` (:func:`prebake.cache.format.validate_column_name`). A dataset
whose name is not such a name is **renamed** by one rule (:func:`column_name`): every run of
other characters becomes ``_``, leading and trailing ``_`` and ``-`` are dropped (``column``
if nothing is left: ``heart rate (bpm)`` -> ``heart_rate_bpm``), and ``_2``, ``_3``, ... is
added while the name is taken. A dataset's valid name is its own and taken first; a
compound field's ``<dataset>_<field>`` comes next, so it never takes a dataset's name. The
source records ``{new name: original}`` in its identity, so the manifest keeps the original
names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..cache.export import OFFSETS, VALUES, h5py_module
from ..cache.format import validate_column_name
from ..errors import FormatError

_OTHER = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class Column:
    """One column of the source: where its rows are in the file, and how to read them."""

    name: str  # the cache column's name
    path: str  # the dataset (or ragged group) inside the file
    kind: str  # "fixed", "field", "vlen" or "ragged"
    field: str | None = None  # a compound dataset's field

    @property
    def original(self) -> str:
        """What the file calls it (the dataset's name, with the field for a compound's)."""
        tail = self.path.rsplit("/", 1)[-1]
        return f"{tail}.{self.field}" if self.field is not None else tail


def is_valid(name: str) -> bool:
    try:
        validate_column_name(name)
    except FormatError:
        return False
    return True


def column_name(original: str, taken: set[str]) -> str:
    """``original`` as a column name by the module docstring's rule, not one of ``taken``."""
    base = _OTHER.sub("_", original).strip("_-") or "column"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def is_vlen(ds: Any) -> bool:
    """A variable-length dataset of numbers (variable-length strings are text columns)."""
    h5py = h5py_module()
    base = h5py.check_vlen_dtype(ds.dtype)
    return base is not None and h5py.check_string_dtype(ds.dtype) is None and base not in (str, bytes)


def group_columns(group: Any, prefix: str) -> tuple[list[Column], list[str]]:
    """The columns the members of ``group`` give (names not yet made valid), and the members that give none."""
    h5py = h5py_module()
    columns: list[Column] = []
    other: list[str] = []
    for member in group:
        obj = group.get(member)
        path = f"{prefix}{member}"
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 1:
            if obj.dtype.names:
                columns += [Column(f"{member}_{field}", path, "field", field) for field in obj.dtype.names]
            else:
                columns.append(Column(member, path, "vlen" if is_vlen(obj) else "fixed"))
        elif isinstance(obj, h5py.Group) and VALUES in obj and OFFSETS in obj:
            columns.append(Column(member, path, "ragged"))
        else:
            other.append(member)
    return columns, other


def named(columns: list[Column]) -> tuple[list[Column], dict[str, str]]:
    """``columns`` under valid, distinct names (see the module docstring), and ``{new name: original}``.

    A dataset's own valid name is taken first, then a compound field's ``<dataset>_<field>`` where that is
    valid and still free (a field never takes a dataset's name: the file's ``tab_a`` stays ``tab_a`` beside
    ``tab``'s field ``a``, which becomes ``tab_a_2``), then every other name is made valid by the rule."""
    names: list[str | None] = [None] * len(columns)
    taken: set[str] = set()
    for fields in (False, True):
        for k, c in enumerate(columns):
            if (c.kind == "field") == fields and is_valid(c.name) and c.name not in taken:
                names[k] = c.name
                taken.add(c.name)
    out, renamed = [], {}
    for c, name in zip(columns, names):
        if name is None:
            name = column_name(c.name, taken)
            taken.add(name)
            renamed[name] = c.original
        out.append(c if name == c.name else Column(name, c.path, c.kind, c.field))
    return out, renamed
