"""A prebake cache as a ``datasets.Dataset`` (:func:`prebake.integrations.hf.to_hf`): the column types of the
cache as ``datasets`` features, and the rows copied a chunk at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..cache.format import ColumnSpec
from ..cache.reader import Cache, Ragged, Shaped, native
from ..errors import OptionError
from ..load.params import names as checked_names
from ..load.params import whole
from . import require


def export(cache: Cache | str | os.PathLike[str], columns: Sequence[str] | None,
           path: str | os.PathLike[str] | None, chunk_rows: int) -> Any:
    datasets = require("datasets", "hf", "prebake.integrations.hf.to_hf")
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    chosen = cache.columns if columns is None else checked_names(columns, "columns") or []
    missing = [c for c in chosen if c not in cache.specs]
    if missing:
        raise OptionError(f"columns={list(chosen)!r}: {cache.path} has no column {missing[0]!r}; its columns are "
                          f"{cache.columns}")
    step = whole(chunk_rows, "chunk_rows", 1)
    features = datasets.Features({n: feature_of(datasets, cache, cache.specs[n]) for n in chosen})
    chunks = (_rows(cache, chosen, start, min(start + step, len(cache))) for start in range(0, len(cache), step))
    if path is not None:
        return _to_file(datasets, chunks, features, os.fspath(path))
    parts = [datasets.Dataset.from_dict(chunk, features=features) for chunk in chunks]
    if not parts:
        return datasets.Dataset.from_dict({n: [] for n in chosen}, features=features)
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _to_file(datasets: Any, chunks: Iterator[dict[str, Any]], features: Any, path: str) -> Any:
    from datasets.arrow_writer import ArrowWriter

    with ArrowWriter(features=features, path=path) as writer:
        for chunk in chunks:
            writer.write_batch(chunk)
        writer.finalize()
    return datasets.Dataset.from_file(path)


def feature_of(datasets: Any, cache: Cache, spec: ColumnSpec) -> Any:
    """The ``datasets`` feature that holds the values of one cache column unchanged."""
    value = _value(datasets, spec)
    shape = tuple(spec.shape)
    if spec.shaped:  # datasets' arrays let only their first axis vary
        raise OptionError(f"column {spec.name!r} holds items of shape {spec.to_json()['shape']} (null: varies per "
                          "item), which no datasets feature holds; leave it out with columns=[...], or bake one "
                          "size (--image-size, --volume-shape)")
    if spec.ragged:
        if not shape:
            return datasets.Sequence(value)
        return _array(datasets, spec, (None, *shape))
    if spec.name == "label" and not shape and cache.classes and np.dtype(spec.dtype).kind in "iu":
        labels = np.asarray(cache.column("label"))
        if len(labels) == 0 or (labels.min() >= -1 and labels.max() < len(cache.classes)):
            return datasets.ClassLabel(names=list(cache.classes))
    if not shape:
        return value
    if len(shape) == 1:
        return datasets.Sequence(value, length=shape[0])
    return _array(datasets, spec, shape)


def _value(datasets: Any, spec: ColumnSpec) -> Any:
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "U":
        return datasets.Value("string")
    if dtype.kind == "S":
        return datasets.Value("binary")
    if dtype.kind in "biuf":
        return datasets.Value("bool" if dtype.kind == "b" else dtype.newbyteorder("=").name)
    raise OptionError(f"column {spec.name!r} is {dtype}, which has no datasets Value type; leave it out with "
                      "columns=[...]")


def _array(datasets: Any, spec: ColumnSpec, shape: tuple[int | None, ...]) -> Any:
    kinds = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D, 5: datasets.Array5D}
    if len(shape) not in kinds or np.dtype(spec.dtype).kind not in "biuf":
        raise OptionError(f"column {spec.name!r} has items of shape {spec.to_json()['shape']} and dtype "
                          f"{spec.dtype}; datasets arrays have 2 to 5 axes of numbers: leave it out with columns=[...]")
    return kinds[len(shape)](shape=shape, dtype=_value(datasets, spec).dtype)


def _rows(cache: Cache, chosen: Sequence[str], start: int, stop: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in chosen:
        col = cache.column(name)
        if isinstance(col, (Ragged, Shaped)):
            out[name] = [native(np.asarray(col[i])) for i in range(start, stop)]
        else:
            out[name] = native(np.asarray(col[start:stop]))
    return out
