"""The on-disk cache format, declared once. The writer and the reader import it.

A cache is a directory of plain files that numpy alone can read::

    cache/cifar10/train/
      manifest.json         written last; its presence means "committed"
      image.npy             uint8 (N, 3, H, W), standard .npy header
      label.npy             int64 (N,)
      signal.values.npy     ragged column: every item concatenated along axis 0
      signal.offsets.npy    int64 (N+1,): item i is values[offsets[i]:offsets[i+1]]
      _item_ids.npy         uint64 (N,), optional: xxh3 of each row's input identity, so a
                            rebuild copies unchanged rows instead of baking them again
      build.log             what the build did and why, in words (not checksummed: a log)
      splits.json           optional, from prebake split: index lists of group-aware splits

While it is being built the directory is ``cache/cifar10/train.partial/`` and
also holds the resume journal (``_plan.json``, ``_journal.jsonl``, ``_shards/``).
Those files are removed before the rename that commits the cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError, opt

FORMAT_NAME = "prebake-cache"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
REPLACED_SUFFIX = ".replaced"
ITEM_IDS = "_item_ids.npy"
PLAN = "_plan.json"
JOURNAL = "_journal.jsonl"
SHARDS = "_shards"
SPLITS = "splits.json"  # beside the columns, written by prebake split (not in the manifest)
BUILD_LOG = "build.log"  # beside the columns: what the build did and why, in words (not in the manifest)

#: Manifest keys, in the order they are written. Pinned by tests/test_format.py.
MANIFEST_KEYS = (
    "format",
    "format_version",
    "prebake_version",
    "created",
    "num_items",
    "columns",
    "classes",
    "fingerprint",
    "skipped",
    "stats",
    "item_ids",
)

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")


@dataclass(frozen=True)
class ColumnSpec:
    """One column: numpy dtype string, per-item shape, and whether it is ragged.

    For a ragged column ``shape`` is the per-item shape after the variable first
    axis, so an item of a ragged ``(T, 2)`` column has ``shape == (2,)``.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    ragged: bool = False

    def __post_init__(self) -> None:
        validate_column_name(self.name)
        validate_dtype(np.dtype(self.dtype), self.name)

    @property
    def files(self) -> tuple[str, ...]:
        if self.ragged:
            return (f"{self.name}.values.npy", f"{self.name}.offsets.npy")
        return (f"{self.name}.npy",)

    @property
    def row_bytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * np.prod(self.shape, dtype=np.int64))

    def to_json(self) -> dict[str, Any]:
        shape: list[int | None] = list(self.shape)
        if self.ragged:
            shape = [None, *shape]
        return {"dtype": self.dtype, "shape": shape, "ragged": self.ragged}

    @classmethod
    def of(cls, name: str, dtype: np.dtype, shape: tuple[int, ...], ragged: bool = False) -> ColumnSpec:
        """A spec for data of ``dtype``; checks the full dtype (``dtype.str`` drops struct fields)."""
        validate_dtype(np.dtype(dtype), name)
        return cls(name, np.dtype(dtype).str, tuple(int(s) for s in shape), ragged)

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> ColumnSpec:
        shape = list(d["shape"])
        if d.get("ragged"):
            shape = shape[1:]
        return cls(name, str(d["dtype"]), tuple(int(s) for s in shape), bool(d.get("ragged")))


def validate_column_name(name: str) -> None:
    """Column names become file names: no separators, no '..', no leading dot."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.startswith("_"):
        raise FormatError(
            f"column name {name!r} is not allowed: use letters, digits, '_' and '-', "
            "not starting with '_' (no path separators, no '..')"
        )


def validate_dtype(dtype: np.dtype, column: str = "?") -> None:
    """Refuse anything np.load(allow_pickle=False) could not read back."""
    if dtype.hasobject:
        raise FormatError(
            f"column {column!r} has dtype {dtype}, which holds Python objects; prebake never "
            "pickles: convert it to a numeric, bool, bytes or fixed-width str array"
        )
    if dtype.fields is not None:
        raise FormatError(
            f"column {column!r} has structured dtype {dtype}; store each field as its own column"
        )


def partial_path(out: Path) -> Path:
    """Where the build of ``out`` happens until it is committed."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` at ``path``, if it is a manifest of this format version."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise FormatError(f"{path} is not a prebake manifest (format={got!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{path} has format version {version}, this prebake reads version {FORMAT_VERSION}; "
            f"rebuild the cache with this prebake ({opt('force')})"
        )
    return manifest


def committed_files(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every data file of a committed cache: ``{file name: {"bytes", "xxh3_64"}}``."""
    files = {f: meta for col in manifest["columns"].values() for f, meta in col["files"].items()}
    if manifest.get("item_ids"):
        files[ITEM_IDS] = manifest["item_ids"]
    return files


def column_specs(manifest: dict[str, Any]) -> dict[str, ColumnSpec]:
    return {name: ColumnSpec.from_json(name, d) for name, d in manifest["columns"].items()}
