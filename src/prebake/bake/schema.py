"""A column's schema comes from every item, never the first: the rules, shared by workers and commit.

The first item that bakes gives each column a *provisional* spec, so workers can write rows
into preallocated memory maps (the fast path: on a uniform source nothing else happens). An
item that does not fit it is not bad: the worker spills its value (bake/spill.py) and the
commit decides the column from every item:

- **dtype**: the user's (``--dtype COL=DTYPE``: every item is cast to it, a value it cannot hold
  exactly is a bad item, while a float cast to a narrower float rounds to the nearest); else the
  items' one dtype when they all agree (byte order kept); else ``numpy.result_type`` of them
  all, refused when it cannot hold every value of their dtypes exactly (int64 beside uint64
  gives float64; int64 beside float32 too) or when the items mix kinds (text, bytes, numbers,
  dates): a :class:`SchemaError` naming the column, the dtypes, an item of each, and the
  fix. Strings and bytes widen to the longest.
- **shape**: fixed when every item agrees; a ragged column of rows when only axis 0 varies (or
  the column was declared ragged); a ragged N-D column when any other axis varies. Items with
  different numbers of axes are refused.

The rules depend on the set of items only, so the order of the source never changes the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import BadItemError, SchemaError, opt

_FAMILY = {"b": "number", "i": "number", "u": "number", "f": "number", "c": "number", "U": "text", "S": "bytes",
           "M": "datetime", "m": "timedelta", "V": "raw bytes"}


def family(dtype: np.dtype) -> str:
    """The kind of values a dtype holds; dtypes of different families never share a column."""
    return _FAMILY.get(dtype.kind, dtype.kind)


def lossless(src: np.dtype, dst: np.dtype) -> bool:
    """Whether every value of ``src`` is held exactly by ``dst`` (numpy's "safe" casts, less int -> float
    casts that round: int64 -> float64 is "safe" to numpy, but 2**53 + 1 is not a float64)."""
    if src == dst:
        return True
    if family(src) != family(dst) or not np.can_cast(src, dst, "safe"):
        return False
    if src.kind in "iu" and dst.kind in "fc":
        bits = src.itemsize * 8 - (src.kind == "i")
        return bits <= np.finfo(dst).nmant + 1
    return True


def fits(src: np.dtype, dst: np.dtype) -> bool:
    """Whether an item of ``src`` can be written into a column of ``dst`` as it is (exactly)."""
    return src == dst or lossless(src, dst)


def cast_checked(value: np.ndarray, dtype: np.dtype, column: str) -> np.ndarray:
    """``value`` as ``dtype`` (the user's ``--dtype``), or a BadItemError naming the value the dtype cannot hold."""
    if value.dtype == dtype:
        return value
    given = dtype_option(column, dtype.name)
    if family(value.dtype) != family(dtype):
        raise BadItemError(f"column {column!r} holds {family(value.dtype)} ({value.dtype}), which {given} cannot "
                           f"hold: give a {family(value.dtype)} dtype, or convert the values in a step")
    if value.size and value.dtype.kind in "biufc" and dtype.kind in "biuf":
        _check_range(value, dtype, column, given)
    out = value.astype(dtype)
    if not value.size or (dtype.kind in "fc" and value.dtype.kind in "fc"):
        return out  # a float to a narrower float rounds to the nearest (range checked above): what is asked for
    back = out.astype(value.dtype)
    if np.array_equal(back, value):
        return out
    if dtype.kind in "fc":
        lost = value[back != value]
        raise BadItemError(f"column {column!r} holds integers that {dtype} does not hold exactly: {_shown(lost)} "
                           f"({given}; never rounded); give a wider float dtype (float64 holds every integer up to "
                           "2**53), or an integer one")
    raise BadItemError(f"column {column!r} holds values that {given} does not hold exactly (text longer "
                       "than its width, a finer time unit); give a wider dtype")


def _check_range(value: np.ndarray, dtype: np.dtype, column: str, given: str) -> None:
    if value.dtype.kind == "c":
        if np.any(value.imag != 0):
            raise BadItemError(f"column {column!r} holds complex values, which {given} cannot hold; give a complex "
                               "dtype")
        value = value.real
    if dtype.kind == "f":
        big = np.abs(value) > np.finfo(dtype).max
        if big.any():
            raise BadItemError(f"column {column!r} is out of {dtype}'s range ±{np.finfo(dtype).max:.4g}: it holds "
                               f"{_shown(value[big])} ({given}); give a wider dtype")
        return
    lo, hi = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    low, high = value.min(), value.max()
    if low < lo or high > hi:
        bad = low if low < lo else high
        raise BadItemError(f"column {column!r} is out of {dtype}'s range {lo}..{hi}: it holds {_shown(bad)} "
                           f"({given}; never wrapped); give a wider dtype")
    if value.dtype.kind in "fc" and not np.array_equal(np.rint(value), value):
        raise BadItemError(f"column {column!r} holds fractions, which {dtype} cannot hold exactly: "
                           f"{_shown(value[np.rint(value) != value])} ({given}); give a float dtype, or round the "
                           "values in a step")


def _shown(values: Any) -> str:
    """The first of ``values`` as a plain number."""
    return repr(np.asarray(values).reshape(-1)[0].item())


def promote(column: str, seen: Mapping[str, tuple[int, str]]) -> tuple[np.dtype, str]:
    """The dtype of a column whose items had the dtypes ``seen`` (``{dtype: (count, key of an item)}``), and
    the rule that gave it: "uniform" or "promoted". Raises :class:`SchemaError` (see the module docstring)."""
    dtypes = [np.dtype(d) for d in seen]
    if len(seen) == 1:
        return dtypes[0], "uniform"
    families = sorted({family(d) for d in dtypes})
    if len(families) > 1:
        raise refusal(column, seen, f"mix {' and '.join(families)}, which no dtype holds together",
                      f"make the column one kind in a step (for example str(value)), or give {column!r} another name "
                      "where it differs")
    try:
        dtype = np.result_type(*dtypes)
    except TypeError:
        raise refusal(column, seen, "have no common dtype", f"give every item one dtype with "
                      f"{dtype_option(column, 'DTYPE')}") from None
    lost = [d for d in dtypes if not lossless(d, dtype)]
    if lost:
        raise refusal(column, seen, f"promote to {dtype}, which does not hold every {lost[0]} value exactly",
                      f"give the column a dtype with {dtype_option(column, _suggest(dtypes))} (a value it cannot "
                      "hold is then a bad item, never wrapped)")
    return dtype, "promoted"


def dtype_option(column: str, dtype: str) -> str:
    """``dtypes={'COL': 'DTYPE'}``, which the CLI prints as ``--dtype COL=DTYPE``."""
    return opt("dtypes", {column: dtype})


def _suggest(dtypes: list[np.dtype]) -> str:
    return "float64" if any(d.kind in "fc" for d in dtypes) else "int64"


def refusal(column: str, seen: Mapping[str, tuple[int, str]], what: str, fix: str) -> SchemaError:
    """A SchemaError naming the column, each dtype with its count and an item that has it, and the fix."""
    shown = "; ".join(f"{np.dtype(d)} ({n:,} item{'s' if n != 1 else ''}, e.g. {key})"
                      for d, (n, key) in sorted(seen.items(), key=lambda kv: -kv[1][0]))
    return SchemaError(f"column {column!r}: its items have the dtypes {shown}, which {what}; nothing was "
                       f"committed — {fix}")


def check_ndims(column: str, ndims: Mapping[int, tuple[int, str]]) -> int:
    """The one number of axes of a column's items (``{ndim: (count, key of an item)}``), or a SchemaError."""
    if len(ndims) == 1:
        return next(iter(ndims))
    shown = "; ".join(f"{d} axes ({n:,} item{'s' if n != 1 else ''}, e.g. {key})"
                      for d, (n, key) in sorted(ndims.items()))
    hint = f" ({opt('rgb')} gives every image 3 channels)" if column == "image" else ""
    raise SchemaError(f"column {column!r}: its items have different numbers of axes: {shown}; a column holds items "
                      f"of one number of axes, whatever their sizes; nothing was committed — make them agree in a "
                      f"step{hint}")


def layout(lo: tuple[int, ...], hi: tuple[int, ...], declared: bool) -> tuple[tuple[int | None, ...], bool]:
    """``(spec shape, ragged)`` of a column whose item shapes range from ``lo`` to ``hi`` per axis."""
    varying = [a for a in range(len(lo)) if lo[a] != hi[a]]
    if any(a > 0 for a in varying):
        return tuple(None if a in varying else lo[a] for a in range(len(lo))), True
    if varying or declared:
        return tuple(lo[1:]), True
    return tuple(lo), False


def schema_entry(seen: Mapping[str, tuple[int, str]], rule: str, lo: tuple[int, ...], hi: tuple[int, ...]
                 ) -> dict[str, Any]:
    """The manifest's record of how a column was decided (``columns.<name>.schema``)."""
    return {"dtypes": {d: n for d, (n, _) in sorted(seen.items())}, "rule": rule,
            "shape_min": [int(x) for x in lo], "shape_max": [int(x) for x in hi]}
