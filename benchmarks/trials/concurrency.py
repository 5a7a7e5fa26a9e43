"""Processes that overlap: builders of one output at once, and readers while a rebuild swaps it.

Builders: one commit per round, the others find it up to date. Readers: every read
comes from one committed version (its data and its manifest agree), or is refused
with a typed error; a Cache sent to another process (what a spawn DataLoader worker gets: its
pickled state, rebuilt by ``__setstate__``) serves the version it was opened on or raises
CacheChangedError.
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path

import numpy as np

import prebake
from prebake.cache.reader import Cache
from prebake.errors import CacheChangedError, PrebakeError

from . import Row
from .crash import assert_same_cache, build_dataset, join_forked, start_forked, write_dataset


def _received(state: dict) -> Cache:
    """The Cache a worker rebuilds from ``state``, as unpickling does (``__setstate__`` on a fresh object), without
    unpickling bytes: nothing outside the tests' own fixtures ever does."""
    cache = Cache.__new__(Cache)
    cache.__setstate__(copy.deepcopy(state))
    return cache


def concurrent_builders(workdir: Path, rounds: int, builders: int = 3) -> Row:
    """``builders`` forked builds of the same output per round."""
    row = Row(f"{builders} concurrent builders of one output: exactly one commit per round")
    spec = write_dataset(workdir)
    ref = workdir / "ref-builders"
    if not ref.exists():
        build_dataset(spec, ref)
    for r in range(rounds):
        out = workdir / f"together-{r}"
        shutil.rmtree(out, ignore_errors=True)
        reports = [workdir / f"together-{r}-{k}.json" for k in range(builders)]
        cfg = {"spec": spec, "out": str(out), "workers": 0, "lock_timeout": 120,
               "env": {"PREBAKE_TEST_DELAY": "0.0002"}}
        children = [start_forked({**cfg, "report_to": str(p)}) for p in reports]
        codes = [join_forked(c, timeout=180) for c in children]
        actions = sorted(json.loads(p.read_text()).get("action", "error") if p.exists() else "no report"
                         for p in reports)
        try:
            assert_same_cache(out, ref)
            same = prebake.verify(out).ok and not (workdir / f"together-{r}.partial").exists()
        except (AssertionError, PrebakeError, OSError) as e:
            same = False
            actions.append(f"result differs: {e}")
        want = ["built"] + ["up to date"] * (builders - 1)
        row.check(codes == [0] * builders and actions == want and same,
                  f"round {r}: exit codes {codes}, actions {actions}")
    return row


def _versions(path: Path, rounds: int, go: Path) -> None:
    """The writer: commit version v = 1, 2, ... (each with its own row count and marker) over and over."""
    while not go.exists():
        time.sleep(0.001)
    for v in range(1, rounds + 1):
        n = 50 + 17 * (v % 5)
        prebake.write_arrays(path, {"x": np.full((n, 64), v, np.int32), "label": np.full(n, v % 3)},
                             classes=[f"v{v}", "b", "c"])
    os._exit(0)


def reader_during_swap(workdir: Path, rounds: int) -> Row:
    """One process commits ``rounds`` versions while this one opens, reads and receives caches."""
    row = Row("a reader during rebuilds: every read is one committed version, or a typed refusal")
    path = workdir / "swapped"
    shutil.rmtree(path, ignore_errors=True)
    prebake.write_arrays(path, {"x": np.zeros((50, 64), np.int32), "label": np.zeros(50, np.int64)},
                         classes=["v0", "b", "c"])
    go = workdir / "swapped.go"
    go.unlink(missing_ok=True)
    writer = mp.get_context("fork").Process(target=_versions, args=(path, rounds, go))
    writer.start()
    held = prebake.open(path)  # opened before the first swap, read after many
    sent = held.__getstate__()  # what pickling it for a spawn worker sends
    go.touch()
    refused = 0
    while writer.exitcode is None or row.trials < 20:
        try:
            cache = prebake.open(path)
        except PrebakeError:
            refused += 1  # a swap and the old copy's deletion between two of our reads: refused, not mixed
            continue
        _check_version(row, cache, "fresh")
        try:
            _check_version(row, _received(sent), "sent")
        except CacheChangedError:
            row.ok()  # the version it was opened on is gone: refused, as it must be
        _check_version(row, held, "held")
        if writer.exitcode is not None and row.trials >= 20:
            break
    writer.join()
    row.notes.update(refused_opens=refused, versions=rounds)
    return row


def _check_version(row: Row, cache: prebake.Cache, how: str) -> None:
    marker = int(cache.classes[0][1:])
    x, label = np.asarray(cache.column("x")), cache.targets
    n = len(cache)
    consistent = x.shape == (n, 64) and bool((x == marker).all()) and bool((label == marker % 3).all())
    row.check(consistent, f"{how} cache: manifest says v{marker} with {n} items, data holds "
                          f"{np.unique(x).tolist()} in {x.shape}")
