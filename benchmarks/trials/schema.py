"""The schema comes from every item: random mixes of shapes, dtypes, string widths and row orders.

Each trial makes a random set of items (a numeric column of several dtypes of one family and
several shapes of one number of axes, a text column of random widths, a ragged column, a
column of Python integer lists some of which are empty, a label, an ``id``) with a few planted
bad ones (NaN), and builds it in two random row orders, with random worker counts and chunk
sizes. A failure is: a kept set that depends on the order, a valid item skipped or a planted
bad one kept, a value or dtype other than the stated rule's (the items' one dtype, else
numpy's promotion; empty items never vote), a column layout other than the rule's (fixed /
rows / N-D), or any error that is not a PrebakeError. Some trials mix dtypes no dtype holds
exactly (int64 beside uint64, text beside numbers, an int64 beyond 2**53 beside floats): both
orders must then refuse the build with a SchemaError that names the column and the fix;
int64 beside floats with every value within 2**53 must build, as float64.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.errors import PrebakeError, SchemaError

from . import Row

_FAMILIES = [("i1", "i2", "u1", "u2", "i4"), ("f2", "f4", "u1", "i2"), ("u1",), ("f8", "i4", "u2"), ("i2", ">i2")]
_REFUSED = [("i8", "u8"), ("u8", "i1"), ("i8", "u8", "f8")]
_BY_VALUE = [("i8", "f4"), ("u8", "f8"), ("i8", "f8", "i2")]  # float64 holds them when their values are within 2**53


class Items:
    """A map-style dataset over precomputed items, in a given order."""

    def __init__(self, items: list[dict[str, Any]], order: np.ndarray, tag: str):
        self.items, self.order, self.tag = items, order, tag

    def __len__(self) -> int:
        return len(self.order)

    def fingerprint(self) -> str:
        return self.tag

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[int(self.order[i])]
        if item is None:
            raise ValueError("planted bad item")
        return dict(item)


def _make(rng: np.random.Generator) -> tuple[list[Any], set[int], dict[str, Any]]:
    """Random items, the ids of the planted bad ones, and what the rule says the columns must be."""
    n = int(rng.integers(4, 24))
    refused, by_value = rng.random() < 0.2, rng.random() < 0.2
    mixes = _REFUSED if refused else _BY_VALUE if by_value else _FAMILIES
    dtypes = mixes[int(rng.integers(len(mixes)))]
    ndim = int(rng.integers(1, 4))
    vary = [bool(rng.random() < 0.4) for _ in range(ndim)]
    base = [int(rng.integers(1, 4)) for _ in range(ndim)]
    items: list[Any] = []
    for k in range(n):
        shape = tuple(b + (int(rng.integers(0, 3)) if v else 0) for b, v in zip(base, vary))
        dt = np.dtype(dtypes[int(rng.integers(len(dtypes)))])
        hi = 100 if dt.kind != "b" else 2
        x = rng.integers(0, hi, shape).astype(dt)
        if by_value and dt.kind in "iu" and dt.itemsize == 8 and rng.random() < 0.1:
            x.reshape(-1)[0] = 2**53 + int(rng.integers(0, 2))  # 2**53 + 1 is no float64
        ragged = np.arange(int(rng.integers(0, 4)), dtype=np.int16)
        lists = np.asarray([int(v) for v in rng.integers(-5, 5, int(rng.integers(0, 3)))])  # [] is float64 to numpy
        items.append({"x": x, "s": "t" * int(rng.integers(0, 12)), "r": ragged, "e": lists, "label": k % 3, "id": k})
    bad = {k for k in range(n) if rng.random() < 0.15 and items[k]["x"].dtype.kind == "f"}
    for k in bad:
        items[k]["x"] = items[k]["x"].copy()
        items[k]["x"].reshape(-1)[0] = np.nan
    if refused and rng.random() < 0.3:
        items[0]["x"] = np.full(items[0]["x"].shape, "text")  # text beside numbers: refused too
    return items, bad, _expected(items, bad)


def _expected(items: list[dict[str, Any]], bad: set[int]) -> dict[str, Any]:
    good = [it for k, it in enumerate(items) if k not in bad]
    if not good:
        return {}
    dts = {it["x"].dtype for it in good}
    dtype = dts.pop() if len(dts) == 1 else np.result_type(*[it["x"].dtype for it in good])
    shapes = np.array([it["x"].shape for it in good])
    varying = [a for a in range(shapes.shape[1]) if len(set(shapes[:, a])) > 1]
    if any(a > 0 for a in varying):
        shape: list[Any] = [None if a in varying else int(shapes[0, a]) for a in range(shapes.shape[1])]
    elif varying:
        shape = [None, *shapes[0, 1:].tolist()]
    else:
        shape = shapes[0].tolist()
    lengths = {len(it["e"]) for it in good}
    e_shape = [lengths.pop()] if len(lengths) == 1 else [None]
    e_dtype = "<i8" if any(len(it["e"]) for it in good) else "<f8"  # empty items vote only when all are empty
    return {"dtype": np.dtype(dtype).str, "shape": shape, "width": max(len(it["s"]) for it in good),
            "e": (e_dtype, e_shape)}


def _refused_mix(items: list[Any], bad: set[int]) -> bool:
    """The stated rule, written out independently: one dtype, or numpy's promotion when it holds every value
    exactly, never text beside numbers. An integer dtype a float promotion holds only up to its mantissa is held
    when the column has float items, the integer dtypes promote to an integer, and its values are within it."""
    good = [it["x"] for k, it in enumerate(items) if k not in bad]
    dts = {x.dtype for x in good}
    if len(dts) < 2:
        return False
    if len({d.kind == "U" for d in dts}) > 1:
        return True
    to = np.result_type(*dts)
    ints = [d for d in dts if d.kind in "iu"]
    by_value = to.kind == "f" and len(ints) < len(dts) and (not ints or np.result_type(*ints).kind in "iu")
    for d in dts:
        if d.kind in "iu" and to.kind == "f" and d.itemsize * 8 - (d.kind == "i") > np.finfo(to).nmant + 1:
            top = max(abs(int(v)) for x in good if x.dtype == d for v in x.reshape(-1).tolist())
            if not by_value or top > 2 ** (np.finfo(to).nmant + 1):
                return True
        elif not np.can_cast(d, to, "safe"):
            return True
    return False


def _build(work: Path, items: list[Any], order: np.ndarray, rng: np.random.Generator, tag: str) -> Any:
    out = work / f"c{int(rng.integers(1 << 30))}"
    return prebake.build(Items(items, order, tag), out, workers=int(rng.choice([0, 2])),
                         chunk_rows=int(rng.integers(1, 8)), progress=False)


def _check(row: Row, cache: Any, items: list[Any], bad: set[int], want: dict[str, Any], tag: str) -> set[int]:
    kept = {int(cache[i]["id"]) for i in range(len(cache))}
    row.check(kept == set(range(len(items))) - bad, f"{tag}: kept {sorted(kept)}, planted bad {sorted(bad)}")
    col = cache.manifest["columns"]["x"]
    row.check(col["dtype"] == want["dtype"] and col["shape"] == want["shape"],
              f"{tag}: x is {col['dtype']} {col['shape']}, the rule says {want['dtype']} {want['shape']}")
    row.check(cache.manifest["columns"]["s"]["dtype"] == f"<U{max(1, want['width'])}",
              f"{tag}: s is {cache.manifest['columns']['s']['dtype']}, the longest string has {want['width']}")
    e = cache.manifest["columns"]["e"]
    row.check((e["dtype"], e["shape"]) == want["e"],
              f"{tag}: e is {e['dtype']} {e['shape']}, the rule says {want['e']}")
    for i in range(len(cache)):
        got = cache[i]
        ref = items[int(got["id"])]
        same = got["x"].dtype == np.dtype(want["dtype"]) and np.array_equal(got["x"], ref["x"].astype(want["dtype"]))
        same &= str(got["s"]) == ref["s"] and np.array_equal(got["r"], ref["r"]) and np.array_equal(got["e"], ref["e"])
        row.check(bool(same), f"{tag}: item {int(got['id'])} differs from the reference")
    return kept


def schema(work_dir: Path, trials: int, seed: Any = 0) -> Row:
    """``trials`` random item sets, each built in two random orders (see the module docstring)."""
    row = Row("schema from every item: shapes, dtypes, strings, orders")
    rng = np.random.default_rng(seed)
    log = logging.getLogger("prebake")
    level = log.level
    log.setLevel(logging.ERROR)  # every trial skips items on purpose
    try:
        for t in range(trials):
            _trial(row, Path(work_dir) / f"t{t}", rng, f"{seed}-{t}", t)
    finally:
        log.setLevel(level)
    return row


def _trial(row: Row, work: Path, rng: np.random.Generator, tag: str, t: int) -> None:
    items, bad, want = _make(rng)
    refuse = _refused_mix(items, bad)
    kept_sets = []
    for k in range(2):
        order = rng.permutation(len(items))
        where = f"trial {t} order {k}"
        try:
            cache = _build(work, items, order, rng, tag)
        except SchemaError as e:
            row.check(refuse and "'x'" in str(e) and ("dtypes" in str(e) or "step" in str(e)),
                      f"{where}: refused a mix the rule allows: {e}")
            continue
        except PrebakeError as e:
            row.check(not want, f"{where}: {type(e).__name__}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - anything but a PrebakeError is a failure to report
            row.fail(f"{where}: {type(e).__name__}: {e}")
            continue
        row.check(not refuse, f"{where}: a mix no dtype holds exactly was built: {cache.manifest['columns']['x']}")
        if not refuse:
            kept_sets.append(_check(row, cache, items, bad, want, where))
    if len(kept_sets) == 2:
        row.check(kept_sets[0] == kept_sets[1], f"trial {t}: the kept set depends on the row order")
    shutil.rmtree(work, ignore_errors=True)
