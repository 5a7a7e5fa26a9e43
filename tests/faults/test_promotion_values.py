"""A column's dtype holds every value of its items, checked on the values (bake/schema.py): the Python numbers
1, 2.5, 3 make a float64 column, in any order; an integer a float cannot hold exactly is refused, naming it; an
item with no elements (``np.asarray([])`` is float64) never votes, wherever it comes; and a build resumed from its
journal, after a worker died mid-build, commits what an uninterrupted build commits."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import prebake
from benchmarks.trials.schema import Items
from prebake.cache.format import JOURNAL, MANIFEST, partial_path
from prebake.errors import PrebakeError, SchemaError

SCORES: list[Any] = [1, 2.5, 3, -7, 0.125, 2**53, -(2**53)]  # np.asarray: int64 and float64


def _build(items: list[Any], out: Path, order: Any = None, **kw: Any) -> Any:
    order = np.arange(len(items)) if order is None else np.asarray(order)
    kw.setdefault("workers", 0)
    return prebake.build(Items(items, order, kw.pop("tag", "values")), out, progress=False, **kw)


def _by_id(cache: Any, column: str) -> dict[int, np.ndarray]:
    return {int(cache[i]["id"]): cache[i][column] for i in range(len(cache))}


@pytest.mark.parametrize("order, workers, chunk_rows", [
    ([0, 1, 2, 3, 4, 5, 6], 0, None), ([1, 0, 2, 3, 4, 5, 6], 0, 1), ([6, 5, 4, 3, 2, 1, 0], 2, 2),
    ([2, 4, 6, 0, 1, 3, 5], 2, 1)])
def test_python_numbers_make_a_float64_column_in_any_order(tmp_path, order, workers, chunk_rows):
    items = [{"score": s, "id": k} for k, s in enumerate(SCORES)]
    cache = _build(items, tmp_path / "c", order, workers=workers, chunk_rows=chunk_rows)
    col = cache.manifest["columns"]["score"]
    assert len(cache) == len(SCORES) and cache.manifest["skipped"] == []  # before: SchemaError, nothing committed
    assert col["dtype"] == "<f8" and col["shape"] == [] and col["schema"]["rule"] == "promoted"
    assert col["schema"]["dtypes"] == {"<i8": 5, "<f8": 2}
    got = _by_id(cache, "score")
    assert all(got[k].dtype == np.float64 and float(got[k]) == s for k, s in enumerate(SCORES))
    assert int(got[5]) == 2**53 and int(got[6]) == -(2**53)  # the edges of float64's integers, exact


@pytest.mark.parametrize("big, workers", [(2**53 + 1, 0), (-(2**53) - 1, 2), (2**63 - 1, 0)])
def test_an_integer_beyond_the_floats_exact_range_is_refused_naming_it(tmp_path, big, workers):
    items = [{"score": s, "id": k} for k, s in enumerate([1, 2.5, big, 3])]
    out = tmp_path / "c"
    with pytest.raises(SchemaError) as e:
        _build(items, out, [3, 2, 1, 0], workers=workers, chunk_rows=1)
    msg = str(e.value)
    assert "column 'score'" in msg and "int64" in msg and "float64" in msg and str(big) in msg, msg
    assert "2**53" in msg and "dtypes={'score': " in msg and "nothing was committed" in msg
    assert not out.exists()


def test_uint64_beside_floats_is_held_by_value_and_int64_beside_uint64_stays_refused(tmp_path):
    held = [{"v": np.array(k, np.uint64) if k % 2 else np.array(k + 0.5), "id": k} for k in range(6)]
    cache = _build(held, tmp_path / "u")
    assert cache.manifest["columns"]["v"]["dtype"] == "<f8"
    assert {k: float(v) for k, v in _by_id(cache, "v").items()} == {k: k if k % 2 else k + 0.5 for k in range(6)}
    mixed = [{"v": np.array(3, np.int64), "id": 0}, {"v": np.array(4, np.uint64), "id": 1},
             {"v": np.array(0.5), "id": 2}]
    with pytest.raises(SchemaError, match=r"int64 and uint64 share no integer dtype"):
        _build(mixed, tmp_path / "m")  # float64 would hold these values; an integer column never becomes float


LISTS: list[list[int]] = [[3, 1, 4], [1, 5], [9, 2, 6, 5], [3], [5, 8, 9]]


@pytest.mark.parametrize("at", [0, 2, 5])
@pytest.mark.parametrize("workers, chunk_rows", [(0, None), (0, 1), (2, 2)])
def test_int_lists_with_empty_ones_anywhere_give_an_int64_column(tmp_path, at, workers, chunk_rows):
    lists = [*LISTS[:at], [], *LISTS[at:]]
    lists.insert(min(at + 2, len(lists)), [])  # two empty items, one of them first when at is 0
    items = [{"tokens": np.asarray(x), "id": k} for k, x in enumerate(lists)]
    assert items[at]["tokens"].dtype == np.float64  # what numpy makes of []
    cache = _build(items, tmp_path / "c", workers=workers, chunk_rows=chunk_rows)
    col = cache.manifest["columns"]["tokens"]
    assert len(cache) == len(lists) and cache.manifest["skipped"] == []  # before: refused, "--dtype tokens=float64"
    assert col["dtype"] == "<i8" and col["shape"] == [None]
    assert col["schema"]["dtypes"] == {"<i8": len(LISTS)} and col["schema"]["empty"] == {"<f8": 2}
    got = _by_id(cache, "tokens")
    assert all(got[k].dtype == np.int64 and got[k].tolist() == x for k, x in enumerate(lists))


def test_empty_items_never_refuse_early_and_all_empty_keeps_their_dtype(tmp_path):
    empties = [np.array([], np.uint64), np.array([], np.int64), np.array([], np.float32)]  # no dtype holds all
    items = [{"tokens": x, "id": k} for k, x in enumerate([*empties, *map(np.asarray, LISTS)])]
    cache = _build(items, tmp_path / "c", workers=0, chunk_rows=1)  # the first chunks hold only empty items
    assert cache.manifest["columns"]["tokens"]["dtype"] == "<i8"
    assert [v.tolist() for _, v in sorted(_by_id(cache, "tokens").items())] == [[], [], [], *LISTS]
    alone = _build([{"tokens": np.asarray([]), "id": k} for k in range(3)], tmp_path / "e", tag="empty")
    assert alone.manifest["columns"]["tokens"]["dtype"] == "<f8"  # every item empty: as before
    text = [{"tokens": np.asarray([]), "id": 0}, {"tokens": np.asarray(["a", "b"]), "id": 1}]
    with pytest.raises(SchemaError, match="mix number and text"):  # held only by a dtype of its own family
        _build(text, tmp_path / "t", tag="text")


class FailsOnce(Items):
    """Items whose item ``at`` fails once while ``flag`` exists: ``exit`` ends its worker process (as the OOM
    killer would), else a KeyboardInterrupt stops the build (Ctrl-C); the chunks before it stay journaled."""

    def __init__(self, items: list[Any], flag: Path, at: int, tag: str, exit: bool):
        super().__init__(items, np.arange(len(items)), tag)
        self.flag, self.at, self.exit = flag, at, exit

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i == self.at and self.flag.exists():
            self.flag.unlink()
            if self.exit:
                os._exit(9)
            raise KeyboardInterrupt
        return super().__getitem__(i)


def _mixed(n: int = 64) -> list[dict[str, Any]]:
    rng = np.random.default_rng(5)
    items = []
    for k in range(n):
        score: Any = int(rng.integers(-(2**40), 2**40)) if k % 3 else float(rng.random())
        tokens = [] if k % 7 == 0 else [int(v) for v in rng.integers(0, 1000, int(rng.integers(1, 5)))]
        items.append({"score": score, "tokens": np.asarray(tokens), "id": k})
    return items


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name not in (MANIFEST, "build.log")}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork")
def test_a_build_resumed_after_a_worker_died_commits_the_uninterrupted_cache(tmp_path):
    items = _mixed()
    plain = _build(items, tmp_path / "plain", workers=2, chunk_rows=4, tag="dies-once")
    assert plain.manifest["columns"]["score"]["dtype"] == "<f8"
    assert plain.manifest["columns"]["tokens"]["dtype"] == "<i8"
    out, flag = tmp_path / "c", tmp_path / "flag"
    flag.touch()
    with pytest.raises(PrebakeError, match="re-run the same command to resume"):
        prebake.build(FailsOnce(items, flag, at=41, tag="dies-once", exit=True), out, workers=2, chunk_rows=4,
                      progress=False)
    journal = partial_path(out) / JOURNAL
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines and all("ranges" in r for r in lines)  # each chunk journaled its integers' ranges
    cache = prebake.build(FailsOnce(items, flag, at=41, tag="dies-once", exit=True), out, workers=2, chunk_rows=4,
                          progress=False)
    assert cache.build_report.action == "resumed"
    assert _files(Path(cache.path)) == _files(Path(plain.path))
    assert cache.manifest["columns"] == plain.manifest["columns"]


def test_a_journal_without_ranges_resumes_by_the_dtype_rule(tmp_path):
    """Chunks journaled by an older prebake hold no ranges: their integers' values are unknown, and a float64
    promotion of int64 is refused as it was then, saying how to bake them again."""
    items, out, flag = _mixed(24), tmp_path / "c", tmp_path / "stop"
    flag.touch()
    with pytest.raises(KeyboardInterrupt):
        _stops(items, flag, out)
    journal = partial_path(out) / JOURNAL
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == 4 and all(r["ranges"]["score"]["<i8"] for r in lines)  # chunks 0..3, before item 17
    journal.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "ranges"}) + "\n" for r in lines))
    with pytest.raises(SchemaError, match=r"does not hold every int64 value exactly \(the values of int64 items "
                                          r"baked by an older prebake are unknown: `force=True` bakes them again"):
        _stops(items, flag, out)
    cache = _stops(items, flag, out, force=True)
    assert cache.manifest["columns"]["score"]["dtype"] == "<f8" and len(cache) == len(items)
    assert _files(Path(cache.path)) == _files(Path(_build(items, tmp_path / "plain", chunk_rows=4).path))




def _stops(items: list[Any], flag: Path, out: Path, **kw: Any) -> Any:
    return prebake.build(FailsOnce(items, flag, at=17, tag="old", exit=False), out, workers=0, chunk_rows=4,
                         progress=False, **kw)


@pytest.mark.parametrize("workers, chunk_rows", [(0, None), (0, 1), (2, 2)])
@pytest.mark.parametrize("at", [0, 3, 6])
def test_the_refusal_names_the_item_that_holds_the_value(tmp_path, workers, chunk_rows, at):
    """The workers record each chunk's [min, max] per integer dtype, not where they are: the refusal reads the
    chunks whose range ends at the value to name its item, whether it sits in the first item's rows (at 0: the
    provisional int64 column) or spilled, alone or inside an array, at either end of the range."""
    for big, vector in ((2**53 + 5, False), (-(2**53) - 5, True)):
        values: list[Any] = [np.array([k, k + 1]) if vector else k for k in range(8)]
        values[5] = np.array([0.5, 1.5]) if vector else 0.5  # a float item: the column is promoted to float64
        values[at] = np.array([1, big]) if vector else big
        items = [{"score": v, "id": k} for k, v in enumerate(values)]
        out = tmp_path / f"c{big}"
        with pytest.raises(SchemaError) as e:
            _build(items, out, workers=workers, chunk_rows=chunk_rows)
        assert f"the int64 items include {big} (item {at})" in str(e.value), str(e.value)
        assert not out.exists()


def test_the_refusal_names_the_item_of_a_uint64_value_too(tmp_path):
    items = [{"v": np.array(k + 0.5) if k != 2 else np.array(2**60, np.uint64), "id": k} for k in range(5)]
    with pytest.raises(SchemaError, match=r"the uint64 items include 1152921504606846976 \(item 2\)"):
        _build(items, tmp_path / "u", workers=2, chunk_rows=1)


def test_the_refusal_reads_the_build_s_files_one_thread_at_a_time(tmp_path):
    """Naming the item reads .npy files while the write-ahead thread may read others: a .npy header is parsed
    with Python's AST, which in CPython 3.11 fails when two threads parse at once ("AST constructor recursion depth
    mismatch", seen in CI), so every such read takes one lock (bake/placed.py: load_npy). Held here, the refusal
    waits for it."""
    import threading

    from prebake.bake import placed

    values: list[Any] = [k for k in range(6)]
    values[2], values[4] = 0.5, 2**53 + 7
    items = [{"score": v, "id": k} for k, v in enumerate(values)]
    got: list[BaseException] = []

    def build() -> None:
        try:
            _build(items, tmp_path / "c", workers=0, chunk_rows=2)
        except BaseException as e:  # noqa: BLE001 - judged below
            got.append(e)

    with placed._HEADERS:
        t = threading.Thread(target=build)
        t.start()
        t.join(1.0)
        assert t.is_alive() and not got  # the refusal is waiting to read the chunk that holds the value
    t.join(60)
    assert len(got) == 1 and isinstance(got[0], SchemaError)
    assert f"the int64 items include {2**53 + 7} (item 4)" in str(got[0])
