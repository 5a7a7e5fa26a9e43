"""A column's schema comes from every item, never the first: the rules, shared by workers and commit.

The first item that bakes gives each column a *provisional* spec, so workers can write rows
into preallocated memory maps (the fast path: on a uniform source nothing else happens). An
item that does not fit it is not bad: the worker spills its value (bake/spill.py) and the
commit decides the column from every item:

- **dtype**: the user's (``--dtype COL=DTYPE``: every item is cast to it, a value it cannot hold
  exactly is a bad item, while a float cast to a narrower float rounds to the nearest); else the
  items' one dtype when they all agree (byte order kept); else ``numpy.result_type`` of them all
  when it holds every value of the items exactly, checked per dtype:

  - a dtype whose every value the promotion holds is held (int16 beside uint16: int32);
  - an integer dtype that a float promotion holds only in part (int64 or uint64 in float64) is
    held when the column has float items, its integer dtypes promote to an integer among
    themselves, and each of its values lies within the float's exact range: ``|v| <= 2**53`` for
    float64, ``2**24`` for float32, ``2**11`` for float16. So the Python numbers 1, 2.5, 3
    (int64 and float64 to numpy) make a float64 column. The workers record each integer dtype's
    min and max per chunk (:attr:`~prebake.bake.plan.ChunkResult.ranges`); a chunk journaled
    without them (by an older prebake) leaves the values unknown, and the dtype alone decides;
  - anything else is refused with a :class:`SchemaError` naming the column, the dtypes, an item of
    each, the value that does not fit when there is one, and the fix: int64 beside uint64 (they
    share no integer dtype: refused whatever else the column holds, a long double included), an
    int64 of 2**53 + 1 beside floats, dates or durations of different units (numpy calls days to
    ns "safe", but 9999-12-31 in ns wraps to 1816), items that mix kinds (text, bytes, numbers,
    dates).

  An item with no elements (``np.asarray([])``, which numpy makes float64) holds no value: it
  never votes, and any dtype of its family holds it, so it neither changes the dtype nor is
  refused, wherever it comes; beside another family (an empty list among strings) the build is
  refused as a mix of kinds. Only when every item of a column is empty do their dtypes vote.
  Strings and bytes widen to the longest.
- **shape**: fixed when every item agrees; a ragged column of rows when only axis 0 varies (or
  the column was declared ragged); a ragged N-D column when any other axis varies. Items with
  different numbers of axes are refused.

The rules depend on the set of items only, so the order of the source never changes the result.
A set of items with elements that they refuse stays refused as items are added, so the build
stops at the first chunk that shows it (:class:`~prebake.bake.rewrite.SchemaSoFar`, which
leaves the dtypes of empty items to the end).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    if src.kind in "Mm" and np.datetime_data(src)[0] != np.datetime_data(dst)[0]:
        return False  # numpy calls days -> ns "safe", but 9999-12-31 in ns wraps to 1816: a finer unit holds less
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
    given = dtype_option(column, dtype.str[1:] if dtype.kind in "US" else dtype.name)  # U5 as typed, not str160
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
    if dtype.kind == "f":  # beyond the largest finite value once rounded (65504.1 rounds to float16's 65504: held)
        with np.errstate(over="ignore"):
            big = ~np.isfinite(value.astype(dtype)) & np.isfinite(value)
        if big.any():
            raise BadItemError(f"column {column!r} is out of {dtype}'s range ±{np.finfo(dtype).max:.4g}: it holds "
                               f"{_shown(value[big])} ({given}); give a wider dtype")
        return
    lo, hi = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise BadItemError(f"column {column!r} holds NaN or Inf, which {dtype} cannot hold ({given}); give a float "
                           "dtype, or replace them in a step")
    low, high = value.min(), value.max()
    # a float compared with 2**64 - 1 rounds it to 2**64, so 2.0**64 looked in range: compare past the rounding
    over = high >= float(hi) if value.dtype.kind == "f" and float(hi) > hi else high > hi
    if low < lo or over:
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


Seen = Mapping[str, tuple[int, str]]  # {dtype: (items, key of an item)}
Ranges = Mapping[str, tuple[int, int] | None]  # {integer dtype: (min, max) of its items' values, None: unknown}


def promote(column: str, seen: Seen, empty: Seen | None = None, ranges: Ranges | None = None,
            holder: Callable[[np.dtype, int], str | None] | None = None) -> tuple[np.dtype, str]:
    """The dtype of a column whose items with elements had the dtypes ``seen`` and those with none ``empty``, and the
    rule that gave it: "uniform" or "promoted". ``ranges``: the values of the integer items, which a float promotion
    may hold even when it does not hold their dtype; ``holder(dtype, value)``: the key of an item of that dtype that
    holds the value, for the refusal to name. Raises :class:`SchemaError` (see the module docstring)."""
    check_families(column, seen, empty or {})
    votes = seen or empty or {}  # items with no elements vote only when every item has none
    dtypes = [np.dtype(d) for d in votes]
    if len(votes) == 1:
        return dtypes[0], "uniform"
    try:
        dtype = np.result_type(*dtypes)
    except TypeError:
        raise refusal(column, votes, "have no common dtype", f"give every item one dtype with "
                      f"{dtype_option(column, 'DTYPE')}") from None
    ints = [d for d in dtypes if d.kind in "iu"]
    if len(ints) > 1 and np.result_type(*ints).kind not in "iu":  # whatever else comes: refused in any order
        raise refusal(column, votes, f"promote to {dtype}, which does not hold every value exactly "
                      f"({' and '.join(map(str, ints))} share no integer dtype)",
                      f"give the column a dtype with {dtype_option(column, _suggest(dtypes))} (a value it cannot "
                      "hold exactly is then a bad item, never rounded or wrapped)")
    lost = _not_held(dtypes, dtype, {np.dtype(d): r for d, r in (ranges or {}).items()})
    if lost:
        d, value = lost[0]
        what = f"promote to {dtype}, which does not hold every {d} value exactly"
        if value is not None:
            key = holder(d, value) if holder is not None else None
            what = (f"promote to {dtype}, which holds integers exactly only within ±2**{np.finfo(dtype).nmant + 1}, "
                    f"and the {d} items include {value}" + (f" (item {key})" if key is not None else ""))
        elif _by_value(dtypes, dtype) and d.kind in "iu":
            what += (f" (the values of {d} items baked by an older prebake are unknown: {opt('force')} bakes them "
                     "again, and checks them)")
        raise refusal(column, votes, what, f"give the column a dtype with {dtype_option(column, _suggest(dtypes))} "
                      "(a value it cannot hold exactly is then a bad item, never rounded or wrapped)")
    return dtype, "promoted"


def check_families(column: str, seen: Seen, empty: Seen) -> None:
    """A SchemaError when the items, those with no elements included, mix kinds of values (text beside numbers)."""
    families = sorted({family(np.dtype(d)) for d in [*seen, *empty]})
    if len(families) > 1:
        raise refusal(column, {**empty, **seen}, f"mix {' and '.join(families)}, which no dtype holds together",
                      f"make the column one kind in a step (for example str(value)), or give {column!r} another name "
                      "where it differs")


def _by_value(dtypes: list[np.dtype], dtype: np.dtype) -> bool:
    """Whether a float promotion may hold integer dtypes by their values: the column has float items (integer
    dtypes that share no integer dtype, int64 beside uint64, are refused before: :func:`promote`)."""
    return dtype.kind in "fc" and any(d.kind in "fc" for d in dtypes)


def _not_held(dtypes: list[np.dtype], dtype: np.dtype, ranges: Mapping[np.dtype, tuple[int, int] | None]
              ) -> list[tuple[np.dtype, int | None]]:
    """The dtypes of ``dtypes`` whose values ``dtype`` may not hold exactly, each with a value it does not hold
    (None: the dtype's rule, or values unknown)."""
    by_value = _by_value(dtypes, dtype)
    out: list[tuple[np.dtype, int | None]] = []
    for d in dtypes:
        if lossless(d, dtype):
            continue
        span = ranges.get(d) if by_value and d.kind in "iu" else None
        if span is None:
            out.append((d, None))
            continue
        limit = 2 ** (np.finfo(dtype).nmant + 1)
        lo, hi = span
        if hi > limit or lo < -limit:
            out.append((d, hi if hi > limit else lo))
    return sorted(out, key=lambda x: x[1] is None)  # a value named first


def dtype_option(column: str, dtype: str) -> str:
    """``dtypes={'COL': 'DTYPE'}``, which the CLI prints as ``--dtype COL=DTYPE``."""
    return opt("dtypes", {column: dtype})


def _suggest(dtypes: list[np.dtype]) -> str:
    if any(d.kind in "Mm" for d in dtypes):  # the finest unit: an item it cannot hold is then a bad item
        return str(np.result_type(*dtypes))
    if any(d.kind == "c" for d in dtypes):
        return "complex128"
    return "float64" if any(d.kind in "fc" for d in dtypes) else "int64"


def refusal(column: str, seen: Seen, what: str, fix: str) -> SchemaError:
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


def schema_entry(seen: Seen, rule: str, lo: tuple[int, ...], hi: tuple[int, ...], empty: Seen | None = None
                 ) -> dict[str, Any]:
    """The manifest's record of how a column was decided (``columns.<name>.schema``): the dtypes that voted, with
    their counts, and ``empty``, those of the items with no elements, which did not vote."""
    entry: dict[str, Any] = {"dtypes": {d: n for d, (n, _) in sorted(seen.items())}, "rule": rule,
                             "shape_min": [int(x) for x in lo], "shape_max": [int(x) for x in hi]}
    if empty:
        entry["empty"] = {d: n for d, (n, _) in sorted(empty.items())}
    return entry
