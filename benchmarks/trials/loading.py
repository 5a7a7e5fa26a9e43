"""Loading with bad input: random bad parameters, boolean masks, bad indices and corrupt or stale resume states,
thrown at ``Loader``, ``Windows``, ``Elements``, ``cache[...]``, ``view[...]``, ``set_epoch`` and ``watch``.

A trial fails when prebake raises anything but a PrebakeError, accepts a bad value silently, or loads other
items than the ones asked for (a mask's True positions, the rest of a resumed epoch).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.errors import IndicesError, PrebakeError, ResumeError

from . import Row

N = 40
_INT_BAD = ["8", 2.5, 2.0, math.nan, math.inf, None, True, False, [1], {}, b"1", 1j, np.float32(3.0), "0x10"]
_BOOL_BAD = ["yes", "False", 1, 0, None, 2.5, [True], np.int64(1), ""]
_INT_PARAMS = {"batch_size": 1, "seed": 0, "prefetch": 1, "threads": 1}
_BOOL_PARAMS = ("shuffle", "drop_last", "pad", "transform_in_threads")
_OTHER_BAD = {"preload": ["gpu", "RAM", True, 1, ["ram"], ""], "device": ["gpu", 3.5, "cuda:x", [], "cpu:x"],
              "columns": ["x", [1], 5, [None], ("x", 5)], "transform": [5, "f", [print]]}


def loading(work_dir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("loading: bad parameters, masks, indices and resume states give a typed error or the right items")
    cache = _cache(work_dir / "loading-cache", np.arange(N))
    rng = random.Random(seed)
    kinds: list[Callable[..., None]] = [_bad_parameter, _mask, _bad_indices, _corrupt_state, _rebuilt_state]
    for t in range(trials):
        kind = kinds[t % len(kinds)]
        where = f"trial {t} ({kind.__name__.strip('_')})"
        try:
            kind(row, cache, rng, where, work_dir)
        except Exception as e:  # noqa: BLE001 - anything escaping a trial is a failure to report, not to crash on
            row.fail(f"{where}: {type(e).__name__} escaped: {e}")
    return row


def _cache(path: Path, x: np.ndarray) -> prebake.Cache:
    seq = [np.arange(i % 5, dtype=np.int32) + 100 * i for i in range(N)]
    return prebake.write_arrays(path, {"x": x.astype(np.int64), "label": np.arange(N) % 4, "seq": seq})


def _refused(row: Row, call: Callable[[], Any], expected: type[PrebakeError], where: str) -> None:
    """The call must raise ``expected``: silence or another exception is a failure."""
    try:
        call()
    except expected:
        row.ok()
    except Exception as e:  # noqa: BLE001 - a numpy or torch internal reaching the user is what is counted
        row.fail(f"{where}: {type(e).__name__} instead of {expected.__name__}: {e}")
    else:
        row.fail(f"{where}: accepted without an error")


def _bad_parameter(row: Row, cache: prebake.Cache, rng: random.Random, where: str, _: Path) -> None:
    target = rng.choice(["loader-int", "loader-bool", "loader-other", "rank", "set_epoch", "windows", "elements",
                         "watch"])
    if target == "loader-int":
        name, least = rng.choice(list(_INT_PARAMS.items()))
        value = rng.choice([*_INT_BAD, least - rng.randrange(1, 10**6)])
        call: Callable[[], Any] = lambda: prebake.Loader(cache, **{"batch_size": 4, name: value})  # noqa: E731
    elif target == "loader-bool":
        name, value = rng.choice(_BOOL_PARAMS), rng.choice(_BOOL_BAD)
        call = lambda: prebake.Loader(cache, 4, **{name: value})  # noqa: E731
    elif target == "loader-other":
        name = rng.choice(list(_OTHER_BAD))
        value = rng.choice(_OTHER_BAD[name])
        call = lambda: prebake.Loader(cache, 4, **{name: value})  # noqa: E731
    elif target == "rank":
        name, value = "rank", rng.choice([*(v for v in _INT_BAD if v is not None), -1, 3, 10**9])
        call = lambda: prebake.Loader(cache, 4, rank=value, world_size=3)  # noqa: E731
    elif target == "set_epoch":
        name, value = "epoch", rng.choice([*_INT_BAD, -1, -(10**12)])
        call = lambda: prebake.Loader(cache, 4).set_epoch(value)  # noqa: E731
    elif target in ("windows", "elements"):
        name, value, call = _view_parameter(cache, rng, target)
    else:
        name = rng.choice(["every", "report", "count", "iterable"])
        pool = [v for v in _INT_BAD if v is not None] + [0, -3] if name == "every" else [5, 2.5, 7, None] if \
            name == "iterable" else [5, "f", 2.5, [print]]
        value = rng.choice(pool)
        call = lambda: prebake.watch(**{"iterable": [], name: value})  # noqa: E731
    _refused(row, call, PrebakeError, f"{where}: {target} {name}={value!r}")


def _view_parameter(cache: prebake.Cache, rng: random.Random, kind: str) -> tuple[str, Any, Callable[[], Any]]:
    args: dict[str, Any] = {"cache": cache, "column": "seq"}
    if kind == "windows":
        args["length"] = 2
        name = rng.choice(["length", "stride", "context", "require_context", "column", "columns", "cache"])
    else:
        name = rng.choice(["column", "columns", "cache"])
    pools = {"length": [*_INT_BAD, 0, -2], "stride": [*_INT_BAD, 0, -1], "context": [*_INT_BAD, -1],
             "require_context": _BOOL_BAD, "column": [5, None, ["seq"], "nope", "x"],
             "columns": ["seq", [1], 5, ["nope"]], "cache": [str(cache.path), None, 5, np.arange(3)]}
    value = rng.choice(pools[name])
    view = prebake.Windows if kind == "windows" else prebake.Elements
    return name, value, lambda: view(**{**args, name: value})


def _mask(row: Row, cache: prebake.Cache, rng: random.Random, where: str, _: Path) -> None:
    mask = np.array([rng.random() < rng.random() for _ in range(N)], dtype=bool)
    want = np.flatnonzero(mask).tolist()
    got = sorted(int(i) for b in prebake.Loader(cache, rng.randrange(1, 9), indices=mask, threads=1, prefetch=1)
                 for i in b["x"])
    row.check(got == want, f"{where}: Loader(indices=mask) loaded {got}, the mask selects {want}")
    row.check(cache[mask]["x"].tolist() == want, f"{where}: cache[mask] gave {cache[mask]['x'].tolist()}")
    elements = prebake.Elements(cache, "seq", indices=mask)
    rows = np.diff(np.asarray(cache.column("seq").offsets))
    row.check(sorted(set(elements.item.tolist())) == [i for i in want if rows[i]],
              f"{where}: Elements(indices=mask) cut items {sorted(set(elements.item.tolist()))}")
    idx = np.array([rng.randrange(-N, N) for _ in range(rng.randrange(0, 12))], dtype=np.int64)
    row.check(cache[idx]["x"].tolist() == (idx % N).tolist(), f"{where}: cache[{idx.tolist()}] gave other items")


def _bad_indices(row: Row, cache: prebake.Cache, rng: random.Random, where: str, _: Path) -> None:
    length = rng.choice([k for k in range(0, 2 * N) if k != N])
    value = rng.choice([np.ones(length, bool), np.array([rng.random() * N for _ in range(3)]),
                        np.zeros((2, rng.randrange(1, 4)), np.int64), [0, 10**6 + rng.randrange(0, 10**6)],
                        [-(10**6) - rng.randrange(0, 100)], ["1"], [1, None], [1, [2]], {1, 2}, np.array([1j]),
                        np.ones((N, 1), bool), "0", 2.5])
    entry = rng.choice(["cache", "loader", "windows", "elements", "view"])
    calls = {"cache": lambda: cache[value], "loader": lambda: prebake.Loader(cache, 4, indices=value),
             "windows": lambda: prebake.Windows(cache, "seq", 1, indices=value),
             "elements": lambda: prebake.Elements(cache, "seq", indices=value),
             "view": lambda: prebake.Elements(cache, "seq")[value]}
    if entry == "view" and isinstance(value, np.ndarray) and value.dtype == bool and value.ndim == 1 \
            and len(value) == len(prebake.Elements(cache, "seq")):
        return  # a mask of the view's own length is a valid mask there
    if entry in ("cache", "view") and isinstance(value, float):
        value = [value]
    _refused(row, calls[entry], IndicesError, f"{where}: {entry} given {value!r}"[:200])


def _corrupt_state(row: Row, cache: prebake.Cache, rng: random.Random, where: str, _: Path) -> None:
    loader = prebake.Loader(cache, 4, seed=2, threads=1, prefetch=1)
    whole = [b["x"].tolist() for b in prebake.Loader(cache, 4, seed=2, threads=1, prefetch=1)]
    it = iter(loader)
    k = rng.randrange(0, len(loader))
    for _ in range(k):
        next(it)
    good = loader.state_dict()
    bad, what = _corrupted(good, len(loader), rng)
    fresh = prebake.Loader(cache, 4, seed=2, threads=1, prefetch=1)
    _refused(row, lambda: fresh.load_state_dict(bad), ResumeError, f"{where}: {what}")
    fresh.load_state_dict(good)
    rest = [b["x"].tolist() for b in fresh]
    row.check(rest == whole[k:], f"{where}: after a refused state, resuming at batch {k} gave other batches")


def _corrupted(good: dict[str, Any], steps: int, rng: random.Random) -> tuple[Any, str]:
    key = rng.choice([*good, "whole"])
    if key == "whole":
        value = rng.choice([None, "state", list(good.items()), 5, {}])
        return value, f"the state replaced by {value!r}"[:120]
    if rng.random() < 0.2:
        return {k: v for k, v in good.items() if k != key}, f"no {key}"
    pools: dict[str, list[Any]] = {
        "batch": [-rng.randrange(1, 10**6), steps + rng.randrange(1, 10**6), 2.7, "1", None, True, [1], 1.0],
        "epoch": [-1, -(10**9), 1.5, "0", None, False, [0], math.nan],
        "shuffle": ["yes", 0, None, not good["shuffle"]], "drop_last": ["no", 1, None, not good["drop_last"]],
        "dataset": ["items", None, 5, {**good["dataset"], "len": good["dataset"]["len"] + 1}],
        "indices": ["0" * 16, 5, [1, 2]], "cache": [None, {}, 5, {**good["cache"], "fingerprint": "0" * 64},
                                                    {**good["cache"], "columns": 7}]}
    value = rng.choice(pools[key] if key in pools else [good[key] + rng.randrange(1, 5), -1, "1", 2.5, None, True])
    return {**good, key: value}, f"{key}={value!r}"[:120]


def _rebuilt_state(row: Row, cache: prebake.Cache, rng: random.Random, where: str, work_dir: Path) -> None:
    path = work_dir / "loading-rebuilt"
    first = _cache(path, np.arange(N))
    loader = prebake.Loader(first, 4, seed=1, threads=1, prefetch=1)
    whole = [b["x"].tolist() for b in prebake.Loader(first, 4, seed=1, threads=1, prefetch=1)]
    it = iter(loader)
    k = rng.randrange(0, len(loader))
    for _ in range(k):
        next(it)
    state = loader.state_dict()
    same = rng.random() < 0.3
    rebuilt = _cache(path, np.arange(N) if same else rng.sample(range(10 * N), N) * np.ones(N, np.int64))
    again = prebake.Loader(prebake.open(rebuilt.path), 4, seed=1, threads=1, prefetch=1)
    if not same:
        _refused(row, lambda: again.load_state_dict(state), ResumeError, f"{where}: a state from before a rebuild")
        return
    again.load_state_dict(state)  # the same bytes again: the same items, so the resume is exact
    row.check([b["x"].tolist() for b in again] == whole[k:], f"{where}: resume over an identical rebuild")
