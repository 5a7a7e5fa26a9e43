"""Write columns that are already in memory as a cache (no source, no workers).

>>> import numpy as np, prebake, tempfile
>>> d = tempfile.mkdtemp()
>>> cache = prebake.write_arrays(d + "/c", {"x": np.arange(6, dtype=np.int16).reshape(3, 2),
...                                         "seq": [np.ones(2), np.ones(0), np.ones(5)]})
>>> cache[2]["x"].tolist(), cache[2]["seq"].shape
([4, 5], (5,))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import xxhash

from ..cache.format import ColumnSpec
from ..cache.ownership import check_output
from ..cache.reader import Cache, Ragged
from ..cache.stats import chunk_stats
from ..errors import FormatError
from ..identity import fingerprint as fpr
from .partial import PartialCache
from .plan import BuildPlan, ChunkResult

Column = Union[np.ndarray, Ragged, Sequence[np.ndarray]]


def write_arrays(out: str | os.PathLike[str], columns: Mapping[str, Column],
                 classes: Sequence[str] | None = None) -> Cache:
    """Commit ``columns`` as a cache at ``out`` and open it.

    A column is an array (item i is ``arr[i]``), a list of arrays (ragged: their
    first axes may differ), or a :class:`Ragged` ``(values, offsets)`` pair. ``classes``:
    the class names, if ``label`` holds class indices.

    An existing ``out`` is replaced only when it is a cache prebake can prove it wrote
    (see :mod:`prebake.cache.ownership`); anything else there is a ForeignOutputError, before any work.
    """
    out = Path(os.path.abspath(out))
    check_output(out)
    fixed, ragged = _split(columns)
    lengths = {len(v) for v in fixed.values()} | {len(v) for v in ragged.values()}
    if len(lengths) > 1:
        raise FormatError(f"columns have different lengths {sorted(lengths)}; every column needs one row per item")
    n = lengths.pop() if lengths else 0
    specs = [ColumnSpec.of(k, v.dtype, v.shape[1:]) for k, v in fixed.items()]
    specs += [ColumnSpec.of(k, r.values.dtype, r.values.shape[1:], ragged=True) for k, r in ragged.items()]
    fp = fpr.make({"kind": "memory", "xxh3": _content_hash(fixed, ragged)}, [], {})
    plan = BuildPlan(fp["digest"], n, max(n, 1), tuple(specs), declared=tuple(ragged))  # lists stay ragged
    partial = PartialCache.start(out, plan)
    if n:
        cols = partial.open_columns().arrays
        stats = {}
        for k, v in fixed.items():
            cols[k][:] = v
            stats[k] = chunk_stats(v)
        for spec in partial.plan.ragged:
            r = ragged[spec.name]
            partial.write_shard(spec, 0, [r[i] for i in range(n)])
            stats[spec.name] = chunk_stats(np.asarray(r.values))
        del cols
        partial.record([ChunkResult(0, [], {k: s for k, s in stats.items() if s is not None})])
    partial.seal([str(i) for i in range(n)], list(classes) if classes is not None else None, fp)
    return Cache(partial.publish())


def _split(columns: Mapping[str, Column]) -> tuple[dict[str, np.ndarray], dict[str, Ragged]]:
    fixed: dict[str, np.ndarray] = {}
    ragged: dict[str, Ragged] = {}
    for name, col in columns.items():
        if isinstance(col, Ragged):
            ragged[name] = Ragged(np.asarray(col.values), np.asarray(col.offsets, dtype=np.int64))
        elif isinstance(col, np.ndarray):
            if col.ndim == 0:
                raise FormatError(f"column {name!r} is a 0-d array; a column needs one row per item")
            fixed[name] = col
        else:
            items = [np.asarray(a) for a in col]
            if not items:
                raise FormatError(f"ragged column {name!r} is an empty list; pass Ragged(values, offsets) to give "
                                  "its dtype")
            offsets = np.zeros(len(items) + 1, dtype=np.int64)
            np.cumsum([len(a) for a in _check_items(name, items)], out=offsets[1:])
            ragged[name] = Ragged(np.concatenate(items, dtype=_common_dtype(name, items)), offsets)
    return fixed, ragged


def _check_items(name: str, items: list[np.ndarray]) -> list[np.ndarray]:
    """The items of a list column: each at least 1-d, all alike beyond their first axis."""
    for i, a in enumerate(items):
        if a.ndim == 0:
            raise FormatError(f"column {name!r}: item {i} is a scalar ({a!r}); a list column holds arrays of one "
                              "or more axes: wrap it as [value], or give the column as one array")
        if a.shape[1:] != items[0].shape[1:]:
            raise FormatError(f"column {name!r}: item {i} has shape {a.shape} and item 0 {items[0].shape}; the "
                              "items of a list column may differ in their first axis only: pad or crop them to "
                              "one shape beyond it, or bake them with prebake.build, which keeps each item's shape")
    return items


def _common_dtype(name: str, items: list[np.ndarray]) -> np.dtype:
    """The items' dtype, or numpy's promotion of theirs (int16 and float32: float32); one dtype keeps its byte order."""
    dtypes = {a.dtype for a in items}
    if len(dtypes) == 1:
        return dtypes.pop()
    kinds = {d.kind for d in dtypes}
    if not (kinds <= set("biufc") or len(kinds) == 1) or "O" in kinds:  # numbers never silently become text
        raise FormatError(f"column {name!r}: its items' dtypes {sorted(map(str, dtypes))} have no common type; "
                          "convert them to one dtype first")
    return np.result_type(*dtypes)


def _content_hash(fixed: Mapping[str, np.ndarray], ragged: Mapping[str, Ragged]) -> str:
    h = xxhash.xxh3_128()
    for name, arr in [*fixed.items(), *((k, r.values) for k, r in ragged.items()),
                      *((k + ".offsets", r.offsets) for k, r in ragged.items())]:
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        # numpy declares the buffer protocol to type checkers only from Python 3.12
        h.update(np.ascontiguousarray(arr).view(np.uint8).reshape(-1) if arr.size else b"")  # type: ignore[arg-type]
    return h.hexdigest()
