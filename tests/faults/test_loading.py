"""Loading: a boolean mask read as the indices 0 and 1, a resume state from before a rebuild (or a
corrupt one) accepted, and bad parameters surfacing as numpy or torch internals.

Each is an attack on the public API with tiny real caches; the trial at the end throws many random
bad values, masks and states at the same surface (``benchmarks/trials/loading.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import prebake
from benchmarks.trials.loading import loading
from prebake.errors import IndicesError, OptionError, PrebakeError, ResumeError, ViewError

N = 20


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return prebake.write_arrays(tmp_path_factory.mktemp("loading") / "c", {
        "x": np.arange(N, dtype=np.int64), "label": np.arange(N, dtype=np.int64) % 3,
        "seq": [np.arange(i % 4, dtype=np.int32) + 100 * i for i in range(N)]})


def _loaded(loader: prebake.Loader) -> list[int]:
    return sorted(int(i) for b in loader for i in (b["x"] if "x" in b else b["item"]))


# -- a boolean mask is a mask ------------------------------------------------------------------------------

def test_a_boolean_mask_selects_its_true_items_everywhere(cache):
    mask = cache.targets == 1
    want = np.flatnonzero(mask).tolist()  # 1, 4, 7, ...: not items 0 and 1
    assert cache[mask]["x"].tolist() == want
    assert cache[torch.from_numpy(mask)]["x"].tolist() == want and cache[mask.tolist()]["x"].tolist() == want
    assert _loaded(prebake.Loader(cache, 4, indices=mask)) == want
    assert _loaded(prebake.Loader(cache, 4, indices=torch.from_numpy(mask))) == want
    rows = np.diff(np.asarray(cache.column("seq").offsets))
    with_rows = [i for i in want if rows[i] > 0]
    assert sorted(set(prebake.Elements(cache, "seq", indices=mask).item.tolist())) == with_rows
    assert sorted(set(prebake.Windows(cache, "seq", 1, indices=mask).item.tolist())) == with_rows
    view = prebake.Elements(cache, "seq")
    vmask = view.item % 2 == 0
    assert view[vmask]["item"].tolist() == view.item[vmask].tolist()
    assert _loaded(prebake.Loader(view, 3, indices=vmask)) == sorted(view.item[vmask].tolist())


def _entry_points(cache) -> dict[str, tuple[Callable[[Any], Any], type[Exception]]]:
    view = prebake.Elements(cache, "seq")
    return {
        "cache[...]": (lambda v: cache[v], IndexError),
        "Loader(indices=)": (lambda v: prebake.Loader(cache, 4, indices=v), OptionError),
        "Windows(indices=)": (lambda v: prebake.Windows(cache, "seq", 1, indices=v), ViewError),
        "Elements(indices=)": (lambda v: prebake.Elements(cache, "seq", indices=v), ViewError),
        "view[...]": (lambda v: view[v] if not isinstance(v, np.ndarray) or v.dtype != bool or len(v) != N
                      else view[np.resize(v, len(view) + 1)], IndexError),
    }


BAD_INDICES = {
    "a mask one short": np.ones(N - 1, bool), "a mask one long": np.ones(N + 1, bool),
    "float indices": np.array([0.0, 1.0]), "fractional indices": [0.5, 1.5], "a 2-D array": np.zeros((2, 2), int),
    "past the end": [0, 10**6], "far before the start": [-(10**6)], "strings": ["a", "b"], "None inside": [1, None],
    "ragged": [1, [2, 3]], "a set": {1, 2}, "a 2-D mask": np.ones((N, 1), bool), "complex": np.array([1j]),
}


@pytest.mark.parametrize("entry", ["cache[...]", "Loader(indices=)", "Windows(indices=)", "Elements(indices=)",
                                   "view[...]"])
@pytest.mark.parametrize("what", list(BAD_INDICES))
def test_bad_indices_and_masks_are_refused_by_every_entry_point(cache, entry, what):
    call, compatible = _entry_points(cache)[entry]
    with pytest.raises(IndicesError) as got:
        call(BAD_INDICES[what])
    assert isinstance(got.value, compatible)  # code that caught the old exception type still catches it
    message = str(got.value)
    assert ("index" in message or "indices" in message) and ("mask" in message or "whole" in message
                                                             or "range" in message), message


def test_indices_options_refuse_negative_items(cache):
    for call in (lambda: prebake.Loader(cache, 4, indices=[-1]), lambda: prebake.Windows(cache, "seq", 1,
                                                                                         indices=[3, -1])):
        with pytest.raises(IndicesError, match=f"indices holds item -1, but .* has items 0..{N - 1}"):
            call()


def test_slices_are_a_range_of_rows(cache):
    assert cache[0:3]["x"].tolist() == [0, 1, 2] and cache[::-7]["x"].tolist() == [19, 12, 5]
    assert cache[5:2]["x"].tolist() == []
    view = prebake.Elements(cache, "seq")
    assert view[2:5]["item"].tolist() == view.item[2:5].tolist()
    with pytest.raises(IndicesError, match="slice"):
        cache[0:3:0]


@pytest.mark.parametrize("index", [2.7, "x", None, True, np.float64(1.0), "len", "-len-1", b"1", 1j])
def test_a_bad_single_index_is_refused(cache, index):
    for data in (cache, prebake.Elements(cache, "seq")):
        bad = {"len": len(data), "-len-1": -len(data) - 1}.get(index, index) if isinstance(index, str) else index
        with pytest.raises(IndicesError, match="index"):
            data[bad]


def test_whole_number_indices_of_every_kind_still_work(cache):
    for index in (3, np.int32(3), np.array(3), torch.tensor(3), -17):
        assert int(cache[index]["x"]) == 3
    for indices in ([3, 1], np.array([3, 1], np.uint8), torch.tensor([3, 1]), range(3, 0, -2), (3, 1)):
        assert cache[indices]["x"].tolist() == [3, 1]
    assert cache[[]]["x"].tolist() == [] and _loaded(prebake.Loader(cache, 4, indices=[])) == []


# -- resume states -----------------------------------------------------------------------------------------

def _state_after(cache, batches: int) -> dict[str, Any]:
    loader = prebake.Loader(cache, 4, seed=1)
    it = iter(loader)
    for _ in range(batches):
        next(it)
    return loader.state_dict()


def test_a_state_from_before_a_rebuild_is_refused(tmp_path):
    path = tmp_path / "c"
    prebake.write_arrays(path, {"x": np.arange(100)})
    state = _state_after(prebake.open(path), 3)
    prebake.write_arrays(path, {"x": np.arange(100, 200)})  # rebuilt: the same item count, other items
    with pytest.raises(ResumeError, match="rebuilt from other inputs .*fingerprint"):
        prebake.Loader(prebake.open(path), 4, seed=1).load_state_dict(state)


def test_a_rebuild_with_the_same_bytes_resumes(tmp_path):
    path = tmp_path / "c"
    prebake.write_arrays(path, {"x": np.arange(100)})
    whole = [b["x"].tolist() for b in prebake.Loader(prebake.open(path), 4, seed=1)]
    state = _state_after(prebake.open(path), 3)
    prebake.write_arrays(path, {"x": np.arange(100)})
    again = prebake.open(path)
    loader = prebake.Loader(again, 4, seed=1)
    loader.load_state_dict(state)
    assert [b["x"].tolist() for b in loader] == whole[3:]


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda s: {k: v for k, v in s.items() if k != key}


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda s: {**s, key: value}


CORRUPT = {
    "batch=-3": _set("batch", -3), "batch=2.7": _set("batch", 2.7), "batch=10**6": _set("batch", 10**6),
    "batch='1'": _set("batch", "1"), "batch=None": _set("batch", None), "batch=True": _set("batch", True),
    "epoch=-1": _set("epoch", -1), "epoch=1.5": _set("epoch", 1.5), "epoch='0'": _set("epoch", "0"),
    "epoch=nan": _set("epoch", math.nan), "seed='1'": _set("seed", "1"), "shuffle='yes'": _set("shuffle", "yes"),
    "no batch": _drop("batch"), "no epoch": _drop("epoch"), "no cache": _drop("cache"),
    "no indices": _drop("indices"), "cache=None": _set("cache", None), "cache={}": _set("cache", {}),
    "cache fingerprint=5": lambda s: {**s, "cache": {**s["cache"], "fingerprint": 5}},
    "dataset='items'": _set("dataset", "items"), "a list": lambda s: list(s.items()), "None": lambda s: None,
    "a string": lambda s: "state", "an empty dict": lambda s: {},
}


@pytest.mark.parametrize("what", list(CORRUPT))
def test_a_corrupt_state_is_refused_and_changes_nothing(cache, what):
    good = _state_after(cache, 2)
    loader = prebake.Loader(cache, 4, seed=1)
    with pytest.raises(ResumeError, match="cannot resume"):
        loader.load_state_dict(CORRUPT[what](good))
    assert loader.state_dict()["epoch"] == 0 and loader.state_dict()["batch"] == 0
    loader.load_state_dict(good)
    assert len(list(loader)) == len(loader) - 2


def test_the_state_records_the_build(cache):
    state = _state_after(cache, 1)
    assert state["cache"]["fingerprint"] == cache.manifest["fingerprint"]["digest"]
    assert state["cache"]["manifest"] == cache.version


# -- every bad parameter is a typed error naming it, its value and what is allowed ------------------------

def _params(cache) -> dict[str, tuple[str, Any, Callable[[], Any]]]:
    """label -> (the parameter, its bad value, a call that passes it)."""
    path = str(cache.path) if cache is not None else "<path>"

    def loader(name: str, value: Any, **kw: Any) -> tuple[str, Any, Callable[[], Any]]:
        return name, value, lambda: prebake.Loader(cache, **{"batch_size": 4, **kw, name: value})

    def windows(name: str, value: Any) -> tuple[str, Any, Callable[[], Any]]:
        args = {"cache": cache, "column": "seq", "length": 2, name: value}
        return name, value, lambda: prebake.Windows(**args)

    def elements(name: str, value: Any) -> tuple[str, Any, Callable[[], Any]]:
        return name, value, lambda: prebake.Elements(**{"cache": cache, "column": "seq", name: value})

    def watch(name: str, value: Any) -> tuple[str, Any, Callable[[], Any]]:
        return name, value, lambda: prebake.watch(**{"iterable": [], name: value})

    def epoch(value: Any) -> tuple[str, Any, Callable[[], Any]]:
        return "epoch", value, lambda: prebake.Loader(cache, 4).set_epoch(value)

    table = [loader("batch_size", v) for v in ("8", 0, 2.5, math.nan, None, True)]
    table += [loader("seed", v) for v in (-1, 1.5, "0")]
    table += [loader(n, v) for n, v in (("shuffle", "no"), ("drop_last", "yes"), ("pad", 1),
                                        ("transform_in_threads", "y"))]
    table += [loader("rank", v, world_size=2) for v in (-1, 2, "0")] + [loader("world_size", 0, rank=0)]
    table += [loader(n, v) for n in ("prefetch", "threads") for v in ("2", 0, 1.5, None)]
    table += [loader("preload", v) for v in ("gpu", True)] + [loader("device", v) for v in ("gpu", 3.5)]
    table += [loader("transform", 5), loader("columns", "x"), loader("columns", [1])]
    table += [("data", np.arange(3), lambda: prebake.Loader(np.arange(3), 4)),
              ("data", None, lambda: prebake.Loader(None, 4))]
    table += [epoch(v) for v in (-1, 1.5, "1", None)]
    table += [windows("length", v) for v in (math.nan, 0, 2.5, "2", None)]
    table += [windows("stride", v) for v in (0, 1.5)] + [windows("context", v) for v in (-1, 0.5)]
    table += [windows("require_context", "yes"), windows("column", 5), windows("column", None),
              windows("columns", "seq"), windows("cache", path), windows("cache", None)]
    table += [elements("column", [1]), elements("columns", "x"), elements("cache", path)]
    table += [watch("every", v) for v in ("5", 0, 1.5)] + [watch("report", 5), watch("count", 5)]
    table += [("iterable", 5, lambda: prebake.watch(5))]
    shown = {id(path): "<path>"}
    return {f"{i:02d} {name}={shown.get(id(value), repr(value))}"[:40]: (name, value, call)
            for i, (name, value, call) in enumerate(table)}


@pytest.mark.parametrize("what", list(_params(None)))
def test_a_bad_parameter_is_a_typed_error_naming_it(cache, what):
    name, value, call = _params(cache)[what]
    with pytest.raises(PrebakeError) as got:
        call()
    message = str(got.value)
    assert f"{name}=" in message, f"{what}: the message does not name {name}=: {message}"
    assert repr(value)[:15] in message, f"{what}: the message does not quote the value: {message}"


def test_loading_trials(tmp_path):
    row = loading(tmp_path, trials=60, seed=3)
    assert row.failures == 0, row.examples
