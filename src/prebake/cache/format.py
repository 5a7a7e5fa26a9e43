"""The on-disk cache format, declared once. The writer and the reader import it.

A cache is a directory of plain files that numpy alone can read::

    cache/cifar10/train/
      manifest.json         written last; its presence means "committed"
      image.npy             uint8 (N, 3, H, W), standard .npy header
      label.npy             int64 (N,)
      signal.values.npy     ragged column: every item concatenated along axis 0
      signal.offsets.npy    int64 (N+1,): item i is values[offsets[i]:offsets[i+1]]
      photo.values.npy      ragged N-D column (items differ beyond axis 0): every item's elements,
                            1-D, in C order
      photo.offsets.npy     int64 (N+1,): element offsets, item i is values[offsets[i]:offsets[i+1]]
      photo.shapes.npy      int64 (N, ndim): item i has shape shapes[i]
      _item_ids.npy         uint64 (N,), optional: xxh3 of each row's input identity, so a
                            rebuild copies unchanged rows instead of baking them again
      _item_keys.json       the source key of each row (a JSON list), so a rebuild can carry
                            splits.json over by key
      build.log             what the build did and why, in words (not checksummed: a log)
      splits.json           optional, from prebake split: index lists of group-aware splits

While it is being built the directory is ``cache/cifar10/train.partial/`` and
also holds the resume journal (``_plan.json``, ``_journal.jsonl``, ``_shards/``).
Those files are removed before the rename that commits the cache.

The manifest protects itself: ``manifest_xxh3_64`` is the xxh3-64 of its canonical
content (every other key, as sorted compact ASCII JSON, see :func:`manifest_checksum`),
so any change to a value that a reader or a rebuild relies on is detected. It is a
checksum against corruption and careless edits, not a signature. Every value is also
checked against the schema (:func:`check_manifest`): a ``files`` table must name exactly
the files the format implies for its column, so no manifest can point a check at one
file while the reader opens another.

A column's manifest entry gives its ``shape`` with ``null`` for each axis that varies per item:
``[3, 32, 32]`` is fixed; ``[null, 2]`` (only axis 0 varies) is a ragged column of rows
(values + offsets); ``[3, null, null]`` (another axis varies: photos of many sizes) is a ragged
N-D column (values + offsets + shapes). Every item has the same number of axes. The entry's
optional ``schema`` records how the build decided it: the dtypes the items had, with counts,
the rule that made the column's dtype from them, and the smallest and largest item shape.
A prebake that predates the N-D layout refuses such a manifest (its shape check takes ``null``
only at axis 0, and its files table has no shapes file), so it never misreads the values.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ..errors import FormatError, opt

FORMAT_NAME = "prebake-cache"
FORMAT_VERSION = 2  # 2: the manifest carries its own checksum (manifest_xxh3_64)
SELF_CHECKSUM_SINCE = 2  # the first format version whose manifest checksums itself
MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
REPLACED_SUFFIX = ".replaced"
ITEM_IDS = "_item_ids.npy"
ITEM_KEYS = "_item_keys.json"  # the source key of each row: how a rebuild maps splits.json onto new rows
PLAN = "_plan.json"
JOURNAL = "_journal.jsonl"
SHARDS = "_shards"
COMPACT, COMPACTED = "_compact", "_compacted"  # in a partial build: rows copied without the skipped ones
REWRITE, REWRITTEN = "_rewrite", "_rewritten"  # in a partial build: columns rewritten to the schema of every item
SPLITS = "splits.json"  # beside the columns, written by prebake split (not in the manifest)
BUILD_LOG = "build.log"  # beside the columns: what the build did and why, in words (not in the manifest)

#: Manifest keys, in the order they are written. Pinned by tests/cache/test_format.py.
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
    "item_keys",
    "manifest_xxh3_64",
)
#: Keys a manifest may lack: caches written before prebake recorded them.
OPTIONAL_KEYS = ("item_keys",)
CHECKSUM_KEY = "manifest_xxh3_64"

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_HEX16_RE = re.compile(r"^[0-9a-f]{16}$")
_MAX_DIM = 1 << 48  # no axis, row count or file size of a real cache comes near this


@dataclass(frozen=True)
class ColumnSpec:
    """One column: numpy dtype string, per-item shape, and whether it is ragged.

    For a ragged column of rows ``shape`` is the per-item shape after the variable first
    axis, so an item of a ragged ``(T, 2)`` column has ``shape == (2,)``. For a ragged N-D
    column (:attr:`shaped`) ``shape`` is the whole item shape with ``None`` for each axis
    that varies, at least one of them past axis 0: ``(3, None, None)`` for RGB photos of
    many sizes.
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    ragged: bool = False

    def __post_init__(self) -> None:
        validate_column_name(self.name)
        validate_dtype(np.dtype(self.dtype), self.name)
        if None in self.shape and not (self.ragged and None in self.shape[1:]):
            raise FormatError(f"column {self.name!r} has shape {self.shape}: None (an axis that varies) belongs to "
                              "a ragged column and at an axis past 0; a column whose items vary only in axis 0 "
                              "is ragged with the shape after that axis")

    @property
    def shaped(self) -> bool:
        """A ragged N-D column: items differ in an axis past the first (values, offsets and shapes files)."""
        return self.ragged and None in self.shape

    @property
    def ndim(self) -> int:
        """The number of axes of every item."""
        return len(self.shape) + (self.ragged and not self.shaped)

    @property
    def varying(self) -> tuple[int, ...]:
        """The item axes whose size differs from item to item."""
        if self.shaped:
            return tuple(a for a, s in enumerate(self.shape) if s is None)
        return (0,) if self.ragged else ()

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one row of the column's (main) file after axis 0: an item's for a fixed column, a
        row's for a ragged one, () for a ragged N-D column (its values are every element, 1-D)."""
        return () if self.shaped else tuple(s for s in self.shape if s is not None)

    @property
    def files(self) -> tuple[str, ...]:
        if self.shaped:
            return (f"{self.name}.values.npy", f"{self.name}.offsets.npy", f"{self.name}.shapes.npy")
        if self.ragged:
            return (f"{self.name}.values.npy", f"{self.name}.offsets.npy")
        return (f"{self.name}.npy",)

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (a ragged N-D column: of one element per varying axis)."""
        return int(np.dtype(self.dtype).itemsize * math.prod(1 if s is None else s for s in self.shape))

    def to_json(self) -> dict[str, Any]:
        shape: list[int | None] = list(self.shape)
        if self.ragged and not self.shaped:
            shape = [None, *shape]
        return {"dtype": self.dtype, "shape": shape, "ragged": self.ragged}

    @classmethod
    def of(cls, name: str, dtype: np.dtype, shape: tuple[int | None, ...], ragged: bool = False) -> ColumnSpec:
        """A spec for data of ``dtype``; checks the full dtype (``dtype.str`` drops struct fields)."""
        validate_dtype(np.dtype(dtype), name)
        return cls(name, np.dtype(dtype).str, tuple(None if s is None else int(s) for s in shape), ragged)

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> ColumnSpec:
        shape = list(d["shape"])
        if d.get("ragged") and None not in shape[1:]:
            shape = shape[1:]
        return cls(name, str(d["dtype"]), tuple(None if s is None else int(s) for s in shape), bool(d.get("ragged")))


def runs_column(label: str, cls: int | str) -> str:
    """The column where the bake step ``prebake.steps.FgBgIndices`` stores the runs of class ``cls`` of the label
    column ``label``, and where ``prebake.Patches`` reads them."""
    return f"{label}_runs_{cls}"


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


def offsets_problem(offsets: np.ndarray, num_items: int, rows: int) -> str | None:
    """What is wrong with the offsets of a ragged column of ``num_items`` items over ``rows``
    value rows (None: nothing): they must be ``num_items + 1`` int64 values, non-decreasing
    from 0 to ``rows``, so that item i is ``values[offsets[i]:offsets[i+1]]`` and no other's."""
    if offsets.dtype != np.int64:
        return f"their dtype is {offsets.dtype}, not int64"
    if offsets.shape != (num_items + 1,):
        return f"their shape is {offsets.shape}, not ({num_items + 1},)"
    if offsets[0] != 0:
        return f"offsets[0] is {int(offsets[0])}, not 0"
    if offsets[-1] != rows:
        return f"offsets[{num_items}] is {int(offsets[-1])}, not {rows} (the rows of the values)"
    down = np.flatnonzero(np.diff(offsets) < 0)
    if len(down):
        i = int(down[0])
        return f"offsets[{i + 1}] is {int(offsets[i + 1])}, below offsets[{i}] = {int(offsets[i])}"
    return None


def shapes_problem(shapes: np.ndarray, offsets: np.ndarray, spec: ColumnSpec) -> str | None:
    """What is wrong with the shapes of a ragged N-D column whose offsets are sound (None: nothing):
    ``(N, ndim)`` int64, non-negative, equal to the spec's size on every axis that does not vary,
    and each item's element count ``prod(shapes[i])`` equal to ``offsets[i+1] - offsets[i]``."""
    n = len(offsets) - 1
    if shapes.dtype != np.int64:
        return f"their dtype is {shapes.dtype}, not int64"
    if shapes.shape != (n, spec.ndim):
        return f"their shape is {shapes.shape}, not ({n}, {spec.ndim})"
    if n == 0:
        return None
    if (shapes < 0).any():
        return f"item {int(np.flatnonzero((shapes < 0).any(axis=1))[0])} has a negative size"
    for a, size in enumerate(spec.shape):
        off = np.flatnonzero(shapes[:, a] != size) if size is not None else np.empty(0, np.int64)
        if len(off):
            return f"item {int(off[0])} has {int(shapes[off[0], a])} on axis {a}, the column's size there is {size}"
    counts = np.prod(shapes, axis=1, dtype=np.int64)
    wrong = np.flatnonzero(counts != np.diff(offsets))
    if len(wrong):
        i = int(wrong[0])
        return (f"item {i} has shape {tuple(int(x) for x in shapes[i])} = {int(counts[i])} elements, its offsets "
                f"hold {int(offsets[i + 1] - offsets[i])}")
    return None


def partial_path(out: Path) -> Path:
    """Where the build of ``out`` happens until it is committed."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """xxh3-64 of the manifest's canonical content: every key but the checksum, sorted, compact ASCII JSON."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return xxhash.xxh3_64_hexdigest(blob.encode("ascii"))


def sign_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with its checksum as the last key (what the writer stores)."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    return {**body, CHECKSUM_KEY: manifest_checksum(body)}


def check_manifest(manifest: Any, path: Path, any_version: bool = False) -> dict[str, Any]:
    """The parsed ``manifest.json`` at ``path``, if it is an intact manifest of this format version
    (``any_version``: of any version that checksums itself, which is what deleting one needs).

    Raises :class:`FormatError` naming the entry for anything else: another format or
    version, a checksum that does not match the content, or a value of the wrong type or
    range (so no reader, verify or rebuild ever meets a raw KeyError or TypeError).
    """
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise FormatError(f"{path} is not a prebake manifest (format={got!r}): its directory is not a prebake "
                          "cache, and prebake never replaces or deletes it; give the path of a prebake cache")
    version = manifest.get("format_version")
    known = version >= SELF_CHECKSUM_SINCE if any_version and type(version) is int else version == FORMAT_VERSION
    if not known or type(version) is not int:
        raise FormatError(
            f"{path} has format version {version!r}, this prebake reads version {FORMAT_VERSION}; "
            f"rebuild the cache with this prebake ({opt('force')})"
        )
    stored, actual = manifest.get(CHECKSUM_KEY), manifest_checksum(manifest)
    if stored != actual:
        raise FormatError(
            f"{path}: manifest checksum is {actual}, the manifest says {stored!r} — the manifest was "
            f"edited or corrupted after it was written; rebuild the cache with {opt('force')}"
        )
    _check_schema(manifest, _Where(path))
    return manifest


class _Where:
    """Names an entry of one manifest in error messages."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, entry: str, got: Any, expected: str) -> FormatError:
        shown = repr(got)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return FormatError(f"{self.path}: {entry} is {shown}, expected {expected}; the manifest is damaged: "
                           f"rebuild the cache with {opt('force')}")


def _check_schema(m: dict[str, Any], at: _Where) -> None:
    missing = [k for k in MANIFEST_KEYS if k not in m and k not in OPTIONAL_KEYS]
    if missing:
        raise at.fail("the key list", sorted(m), f"the keys {list(MANIFEST_KEYS)} (missing {missing})")
    for key in ("prebake_version", "created"):
        _expect(isinstance(m[key], str), at, key, m[key], "a string")
    _count(m["num_items"], at, "num_items")
    _expect(isinstance(m["columns"], dict), at, "columns", m["columns"], "an object of columns")
    for name, col in m["columns"].items():
        _check_column(name, col, at)
    classes = m["classes"]
    ok = classes is None or isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    _expect(ok, at, "classes", classes, "null or a list of strings")
    fp = m["fingerprint"]
    ok = isinstance(fp, dict) and isinstance(fp.get("digest"), str) and isinstance(fp.get("inputs"), dict)
    _expect(ok, at, "fingerprint", fp, 'an object with a string "digest" and an object "inputs"')
    _expect(isinstance(m["skipped"], list), at, "skipped", m["skipped"], "a list")
    for k, s in enumerate(m["skipped"]):
        ok = (isinstance(s, dict) and _is_count(s.get("index")) and isinstance(s.get("key"), str)
              and isinstance(s.get("reason"), str))
        _expect(ok, at, f"skipped[{k}]", s, 'an object with an integer "index" and string "key" and "reason"')
    _check_stats(m["stats"], at)
    if m["item_ids"] is not None:
        _file_meta(m["item_ids"], at, "item_ids")
    if m.get("item_keys") is not None:
        _file_meta(m["item_keys"], at, "item_keys")


def _check_column(name: Any, col: Any, at: _Where) -> None:
    entry = f"columns.{name}"
    try:
        validate_column_name(name)
    except FormatError:
        raise at.fail("a column name", name, "letters, digits, '_' and '-' (no path separators, no '..')") from None
    ok = isinstance(col, dict) and isinstance(col.get("dtype"), str) and isinstance(col.get("ragged"), bool)
    _expect(ok, at, entry, col, 'an object with a string "dtype" and a boolean "ragged"')
    try:
        dtype = np.dtype(col["dtype"])
    except (TypeError, ValueError, SyntaxError):
        raise at.fail(f"{entry}.dtype", col["dtype"], "a numpy dtype string such as '|u1' or '<f4'") from None
    try:
        validate_dtype(dtype, name)
    except FormatError as e:
        raise at.fail(f"{entry}.dtype", col["dtype"], str(e).split("; ")[-1]) from None
    _expect(dtype.itemsize > 0, at, f"{entry}.dtype", col["dtype"], "a dtype of at least one byte")
    shape = col.get("shape")
    dims = _spec_shape(shape, col["ragged"])
    if dims is None or math.prod(d for d in dims if d is not None) * dtype.itemsize >= _MAX_DIM:
        raise at.fail(f"{entry}.shape", shape, "[null, d1, ...] of non-negative integers, or such a list with null "
                      "at each axis that varies" if col["ragged"] else "a list of non-negative integers")
    schema = col.get("schema")
    _expect(schema is None or isinstance(schema, dict), at, f"{entry}.schema", schema, "an object")
    files = col.get("files")
    spec = ColumnSpec(name, dtype.str, dims, col["ragged"])
    spec_files = spec.files
    ok = isinstance(files, dict) and sorted(files) == sorted(spec_files)
    _expect(ok, at, f"{entry}.files", sorted(files) if isinstance(files, dict) else files,
            f"exactly the files {list(spec_files)} that the format names for column {name!r}")
    for fname, meta in files.items():
        _file_meta(meta, at, f"{entry}.files.{fname}")
        spanned = isinstance(meta, dict) and "span_rows" in meta
        _expect(not spanned or spec.shaped and fname == spec_files[0], at, f"{entry}.files.{fname}.span_rows",
                meta.get("span_rows") if spanned else None, "absent: only a ragged N-D column's values file is "
                "checksummed by spans")


def _spec_shape(shape: Any, ragged: bool) -> tuple[int | None, ...] | None:
    """A manifest's column shape as :class:`ColumnSpec` holds it (None: not a shape this format writes)."""
    if not isinstance(shape, list) or not all(d is None or _is_count(d) for d in shape):
        return None
    if not ragged:
        return None if None in shape else tuple(shape)
    if None in shape[1:]:
        return tuple(shape)  # a ragged N-D column
    return tuple(shape[1:]) if shape and shape[0] is None else None


def _file_meta(meta: Any, at: _Where, entry: str) -> None:
    ok = isinstance(meta, dict) and _is_count(meta.get("bytes")) and isinstance(meta.get("xxh3_64"), str)
    ok = ok and bool(_HEX16_RE.match(meta["xxh3_64"]))
    _expect(ok, at, entry, meta, 'an object with an integer "bytes" and 16 hex digits "xxh3_64"')
    if "span_rows" in meta:  # checksummed by spans of rows (cache/spans.py)
        rows = meta["span_rows"]
        _expect(_is_count(rows) and rows > 0, at, f"{entry}.span_rows", rows, "a positive integer")


def _check_stats(stats: Any, at: _Where) -> None:
    _expect(isinstance(stats, dict) and isinstance(stats.get("columns", {}), dict), at, "stats", stats,
            'an object with an object "columns"')
    hist = stats.get("label_histogram")
    ok = hist is None or isinstance(hist, dict) and all(_is_count(v) for v in hist.values())
    _expect(ok, at, "stats.label_histogram", hist, "an object of label -> count")


def _is_count(v: Any) -> bool:
    return type(v) is int and 0 <= v < _MAX_DIM


def _count(v: Any, at: _Where, entry: str) -> None:
    _expect(_is_count(v), at, entry, v, "a non-negative integer")


def _expect(ok: bool, at: _Where, entry: str, got: Any, expected: str) -> None:
    if not ok:
        raise at.fail(entry, got, expected)


def describe_column(entry: dict[str, Any]) -> str:
    """A manifest column entry in words, for ``prebake info``: its layout, which axes vary, the range of its
    item shapes, and its dtype with the rule that chose it (``ragged N-D, axes 1, 2 vary: 3 x 20..480 x
    16..640; uint8 (uniform: uint8 x 67)``)."""
    shape, schema = entry["shape"], entry.get("schema") or {}
    lo, hi = schema.get("shape_min"), schema.get("shape_max")
    varying = [a for a, d in enumerate(shape) if d is None]
    if not entry["ragged"]:
        layout = f"fixed {list(shape)}"
    else:
        kind = "ragged N-D" if None in shape[1:] else "ragged rows"
        layout = f"{kind}, {'axis' if len(varying) == 1 else 'axes'} {', '.join(map(str, varying))} " \
                 f"{'varies' if len(varying) == 1 else 'vary'}"
        if lo and hi and len(lo) == len(hi):
            layout += ": " + " x ".join(str(a) if a == b else f"{a}..{b}" for a, b in zip(lo, hi))
    dtype = str(np.dtype(entry["dtype"]))
    seen = schema.get("dtypes") or {}
    if not seen:
        return f"{layout}; {dtype}"
    ranked = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))
    counts = ", ".join(f"{np.dtype(d)} x {n:,}" for d, n in ranked[:3])
    counts += f" and {len(ranked) - 3} more" if len(ranked) > 3 else ""
    rules = {"given": "given by --dtype, items were", "promoted": "promoted from"}
    rule = rules.get(str(schema.get("rule")), "uniform:")
    return f"{layout}; {dtype} ({rule} {counts})"


def committed_files(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every data file of a committed cache: ``{file name: {"bytes", "xxh3_64"}}``.

    The names are the ones the format implies (:attr:`ColumnSpec.files`), which
    :func:`check_manifest` has made sure the manifest's tables agree with.
    """
    files: dict[str, dict[str, Any]] = {}
    for spec in column_specs(manifest).values():
        table = manifest["columns"][spec.name]["files"]
        files.update({f: table[f] for f in spec.files})
    if manifest.get("item_ids"):
        files[ITEM_IDS] = manifest["item_ids"]
    if manifest.get("item_keys"):
        files[ITEM_KEYS] = manifest["item_keys"]
    return files


def column_specs(manifest: dict[str, Any]) -> dict[str, ColumnSpec]:
    return {name: ColumnSpec.from_json(name, d) for name, d in manifest["columns"].items()}
