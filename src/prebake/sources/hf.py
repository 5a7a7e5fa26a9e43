"""A Hugging Face ``datasets.Dataset`` as a source: what ``prebake.build(dataset, out)`` reads.

:func:`sources` is what the build's source detection calls for a ``datasets.Dataset`` or
``DatasetDict``; :class:`HFSource` plans one cache column per dataset column and reads the rows,
leaving ``Image`` and ``Audio`` values encoded until a bake worker decodes them (:mod:`.hf_media`).
What each feature becomes, the renames and the identity are described in
:mod:`prebake.integrations.hf`, the user-facing side (with the export, ``to_hf``). ``datasets``
is never imported here unless a dataset of it was made, so detection costs nothing otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import xxhash

from ..errors import BadItemError, SourceError
from ..identity.files import file_identity
from .base import Source

if TYPE_CHECKING:
    from . import SourceOptions


@dataclass(frozen=True)
class Column:
    """How one dataset column is baked: its kind, its cache name, dtype and per-item shape."""

    name: str  # in the dataset
    out: str  # in the cache
    kind: str  # "value", "text", "label", "image" or "audio"
    dtype: str | None = None
    shape: tuple[int, ...] = ()
    ragged: bool = False


def sources(dataset: Any, options: SourceOptions | None = None) -> dict[str, Source] | None:
    """``{split: HFSource}`` for a ``datasets.Dataset`` (split ``""``) or ``DatasetDict``; None for anything
    else. Imports nothing: a dataset of that package exists only once it is imported."""
    hf = sys.modules.get("datasets")
    if hf is None:
        return None
    if isinstance(dataset, (hf.IterableDataset, hf.IterableDatasetDict)):
        raise SourceError(f"a streaming {type(dataset).__name__} cannot be baked: prebake needs the number of items "
                          "and each item by index; load it without streaming=True, or take a part of it with "
                          "datasets.Dataset.from_generator(lambda: (yield from stream.take(n)), features=...)")
    if isinstance(dataset, hf.DatasetDict):
        for split in dataset:
            if not split or split in (".", "..") or "/" in split or os.sep in split:
                raise SourceError(f"the DatasetDict split {split!r} cannot name a cache directory (out/<split>); "
                                  "rename it, e.g. ds['train'] = ds.pop(old)")
        return {split: HFSource(d, options, split) for split, d in dataset.items()}
    if isinstance(dataset, hf.Dataset):
        return {"": HFSource(dataset, options)}
    return None


class HFSource(Source):
    """A ``datasets.Dataset`` as a prebake source (see the module docstring).

    Args:
        dataset: the ``datasets.Dataset``.
        options: :class:`~prebake.SourceOptions` (``channel``, ``audio_dtype``, ``max_pixels``).
        split: the name of its split in a ``DatasetDict`` (for messages and the identity).
    """

    kind = "hf"

    def __init__(self, dataset: Any, options: SourceOptions | None = None, split: str = ""):
        from . import SourceOptions

        self.options = options or SourceOptions()
        self.dataset, self.split = dataset, split
        self.name = f"datasets:{dataset.info.dataset_name or 'in-memory'}" + (f"[{split}]" if split else "")
        self.columns = plan_columns(dataset.features, dataset.data, self.name)
        self.ragged_columns = tuple(c.out for c in self.columns if c.ragged)  # type: ignore[misc]
        label = next((c for c in self.columns if c.out == "label" and c.kind == "label"), None)
        self.classes = list(dataset.features[label.name].names) if label is not None else None
        self._raw = _undecoded(dataset, self.columns)
        self._nullable = nullable_columns(dataset.data)
        self._arrow = dataset.with_format("arrow") if self._nullable else None
        self._keys = [str(i) for i in range(len(dataset))]
        self._tables: tuple[list[str], str | None] | None = None

    def keys(self) -> list[str]:
        return self._keys

    def read(self, index: int) -> dict[str, Any]:
        if self._arrow is not None:
            row = self._arrow[index]
            missing = [name for name in self._nullable if has_null(row.column(name).combine_chunks())]
            if missing:
                raise BadItemError(f"column {missing[0]!r} is missing (null)")
        row = self._raw[index]
        item: dict[str, Any] = {}
        for c in self.columns:
            item.update(self._convert(c, row[c.name]))
        return item

    def _convert(self, c: Column, value: Any) -> dict[str, Any]:
        from .hf_media import decode_audio, decode_image

        if c.kind == "image":
            return {c.out: decode_image(value, self.dataset.features[c.name], self.options.max_pixels)}
        if c.kind == "audio":
            signal, rate = decode_audio(value, self.dataset.features[c.name], self.options)
            return {c.out: signal, _rate_name(c): np.int64(rate)}
        if c.kind == "text":
            return {c.out: np.array(value, dtype=c.dtype)}
        out = np.asarray(value)
        if out.dtype == object:
            raise BadItemError(f"column {c.name!r} holds nested lists of different lengths or nulls")
        out = out.astype(c.dtype, copy=False)
        if out.shape[c.ragged:] != c.shape:
            want = ("(n, " + ", ".join(map(str, c.shape)) + ")") if c.ragged else str(c.shape)
            raise BadItemError(f"column {c.name!r} has shape {out.shape}, its feature says {want}")
        return {c.out: out}

    def describe(self) -> dict[str, Any]:
        ds = self.dataset
        params = {"fingerprint": ds._fingerprint, "features": ds.features.to_dict(), "split": self.split,
                  "num_rows": len(ds), "columns": {c.out: c.name for c in self.columns}}
        if any(c.kind == "audio" for c in self.columns):
            params.update(channel=self.options.channel, audio_dtype=self.options.audio_dtype)
        if self._tables is None:  # hashing in-memory tables reads them: once per source, not per describe()
            self._tables = table_identity(ds)
        files, content = self._tables
        root = os.path.commonpath([os.path.dirname(f) for f in files]) if files else self.name
        return {"kind": self.kind, "root": root, "params": {**params, "content": content},
                "files": file_identity(files, root, content=self.content_hash) if files else {}}


def _rate_name(c: Column) -> str:
    return "sample_rate" if c.out == "signal" else f"{c.out}_sample_rate"


def _undecoded(dataset: Any, columns: Sequence[Column]) -> Any:
    """The dataset with Image/Audio left encoded (the workers decode them) and rows as numpy."""
    raw = dataset
    for c in columns:
        if c.kind in ("image", "audio"):
            raw = raw.cast_column(c.name, type(dataset.features[c.name])(decode=False))
    return raw.with_format("numpy")


# -- the column plan ---------------------------------------------------------------------------

def plan_columns(features: Mapping[str, Any], table: Any, where: str) -> list[Column]:
    """One :class:`Column` per feature, renamed as the module docstring says."""
    cols = [_column(name, feature, table, where) for name, feature in features.items()]
    taken = {c.name for c in cols}
    renames = {}
    for kind, target in (("image", "image"), ("audio", "signal"), ("label", "label")):
        of_kind = [c for c in cols if c.kind == kind]
        named = [c for c in of_kind if c.name == target]
        pick = named[0] if named else of_kind[0] if len(of_kind) == 1 else None
        if pick is not None and pick.name != target and target not in taken:
            renames[pick.name] = target
    if "signal" in renames.values() and "sample_rate" in taken:
        renames = {k: v for k, v in renames.items() if v != "signal"}
    out = [Column(c.name, renames.get(c.name, c.name), c.kind, c.dtype, c.shape, c.ragged) for c in cols]
    names = [c.out for c in out] + [_rate_name(c) for c in out if c.kind == "audio"]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise SourceError(f"{where}: the cache columns {clash} would be written twice (an Audio column's "
                          "<name>_sample_rate beside a column of that name); rename one with ds.rename_column")
    return out


def _column(name: str, feature: Any, table: Any, where: str) -> Column:
    kind = type(feature).__name__
    if kind in ("Image", "Audio"):
        return Column(name, name, kind.lower(), ragged=kind == "Audio")
    if kind == "ClassLabel":
        return Column(name, name, "label", "int64")
    if kind == "Value" and feature.dtype in ("string", "large_string", "binary", "large_binary"):
        return Column(name, name, "text", _text_dtype(name, feature.dtype, table))
    try:
        dtype, shape = _array_type(feature)
    except (TypeError, ValueError) as e:
        raise SourceError(f"{where}: column {name!r} has the feature {feature!r}, which prebake cannot bake as a "
                          f"column ({e}); cast it (ds.cast_column), flatten it (ds.flatten()) or drop it "
                          "(ds.remove_columns)") from None
    ragged = bool(shape) and shape[0] is None
    if None in shape[ragged:]:
        raise SourceError(f"{where}: column {name!r} ({feature!r}) varies in length on an inner axis; a cache column "
                          "may vary only along its first axis: pad it to a fixed length, or drop it")
    return Column(name, name, "value", dtype, cast("tuple[int, ...]", shape[ragged:]), ragged)  # no None: refused above


def _array_type(feature: Any) -> tuple[str, tuple[int | None, ...]]:
    """(numpy dtype, per-item shape with None for a variable axis) of a Value, list or ArrayXD feature."""
    kind = type(feature).__name__
    if kind == "Value":
        dtype = np.dtype(feature.pa_type.to_pandas_dtype())
        if dtype.kind not in "biuf":
            raise TypeError(f"Arrow type {feature.dtype} is not a number or bool")
        return dtype.str, ()
    if kind in ("List", "Sequence", "LargeList") or isinstance(feature, list):
        inner = feature[0] if isinstance(feature, list) else feature.feature
        dtype, shape = _array_type(inner)
        length = getattr(feature, "length", -1)
        return dtype, (None if length == -1 else int(length), *shape)
    if kind.startswith("Array") and kind.endswith("D"):
        dtype, _ = _array_type(_value(feature.dtype))
        return dtype, tuple(None if s is None else int(s) for s in feature.shape)
    raise TypeError(f"a {kind} feature")


def _value(dtype: str) -> Any:
    import datasets

    return datasets.Value(dtype)


def _text_dtype(name: str, arrow: str, table: Any) -> str:
    """``U<n>``/``S<n>`` as wide as the longest value of the column (at least 1)."""
    import pyarrow.compute as pc

    column = table.column(name)
    lengths = pc.utf8_length(column) if "string" in arrow else pc.binary_length(column)
    longest = pc.max(lengths).as_py() or 1
    return f"{'<U' if 'string' in arrow else '|S'}{max(1, int(longest))}"


# -- what the dataset is made of, and its nulls -----------------------------------------------------

def table_identity(dataset: Any) -> tuple[list[str], str | None]:
    """``(Arrow files, xxh3 of the in-memory tables or None)`` behind ``dataset`` (its rows and its indices
    mapping): files are identified by the build like any source's, in-memory tables by their bytes."""
    from datasets.table import ConcatenationTable, MemoryMappedTable

    files: list[str] = []
    h = xxhash.xxh3_64()
    hashed = False
    for table in (dataset.data, getattr(dataset, "_indices", None)):
        if table is None:
            continue
        blocks = [b for row in table.blocks for b in row] if isinstance(table, ConcatenationTable) else [table]
        for block in blocks:
            if isinstance(block, MemoryMappedTable):
                files.append(os.path.abspath(block.path))
                h.update(repr(block.replays).encode())  # casts replayed over the file
            else:
                _hash_table(h, block.table)
                hashed = True
    return sorted(set(files)), h.hexdigest() if hashed else None


def _hash_table(h: Any, table: Any) -> None:
    h.update(str(table.schema).encode())
    for column in table.columns:
        for chunk in column.chunks:
            h.update(f"|{chunk.type}|{chunk.offset}|{len(chunk)}|".encode())
            for buf in chunk.buffers():
                if buf is not None:
                    h.update(memoryview(buf))


def nullable_columns(table: Any) -> list[str]:
    """The columns of an Arrow table that hold a null anywhere, nested lists included (the numpy rows of
    ``datasets`` show a null int as 0 and a null float as NaN, so nulls are found in Arrow)."""
    return [name for name in table.column_names if any(has_null(chunk) for chunk in table.column(name).chunks)]


def has_null(arr: Any) -> bool:
    """Whether an Arrow array holds a null, itself or inside its lists."""
    import pyarrow as pa

    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if arr.null_count:
        return True
    if isinstance(arr, (pa.ListArray, pa.LargeListArray, pa.FixedSizeListArray)):
        return has_null(arr.flatten())
    return False  # a struct (an Image's bytes and path) is missing only when the whole value is
