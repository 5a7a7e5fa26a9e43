"""Loading and benchmarking random caches: the Loader's default pass (in the loop's thread on a CPU) and the
any-cache bench's pipelines, over random columns (dtypes of both byte orders, strings, bool, fixed and ragged
N-D), views (the items, windows with context, elements), subsets and batch sizes.

A trial fails when a Loader epoch (threads='auto') does not give exactly the batches of ``threads=2`` and the
view's own items in the drawn order, when it starts a gather thread on a CPU, or when ``prebake bench``'s
pipelines over the same items disagree or raise.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.measure.bench import BenchOptions
from prebake.measure.bench.anycache import check_same, make_view, pipelines

from . import Row

_DTYPES = ["<i2", ">i2", "<u2", "<f4", ">f4", "<f8", "|u1", "<i8", "|b1"]


def release(work_dir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("loading and bench: a default CPU pass and the any-cache bench give the view's items, every view")
    rng = random.Random(seed)
    for t in range(trials):
        where = f"trial {t}"
        try:
            cache = _cache(work_dir / f"release-{t}", np.random.default_rng([seed, t]), rng)
            opts = _options(cache, rng)
            where += f" ({opts.view or 'items'}, batch {opts.batch_size})"
            view = make_view(cache, opts)
            _loader_pass(row, view, rng, where)
            if t % 3 == 0:  # the DataLoader pipelines cost more: a third of the trials
                n = min(len(view), 40)
                check_same(pipelines(view, np.arange(n), opts, _cpu()), view, np.arange(n), opts, _cpu())
                row.ok()
        except Exception as e:  # noqa: BLE001 - any exception is a failure of the trial, spelled out
            row.fail(f"{where}: {type(e).__name__}: {e}")
    return row


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def _column(gen: np.random.Generator, rng: random.Random, n: int, ragged: bool) -> Any:
    dtype = np.dtype(rng.choice(_DTYPES))
    shape = tuple(rng.randint(1, 3) for _ in range(rng.randint(0, 2)))
    def one(rows: int | None) -> np.ndarray:
        full = (rows, *shape) if rows is not None else (n, *shape)
        return gen.integers(-50, 50, full).astype(dtype)
    if ragged:
        return [one(int(k)) for k in gen.integers(0, 6, n)]
    return one(None)


def _cache(path: Path, gen: np.random.Generator, rng: random.Random) -> prebake.Cache:
    n = rng.randint(1, 30)
    columns: dict[str, Any] = {"label": np.arange(n, dtype=np.int64) % 3}
    for k in range(rng.randint(1, 3)):
        columns[f"c{k}"] = _column(gen, rng, n, ragged=rng.random() < 0.5)
    columns["seq"] = [gen.standard_normal((int(k), 2)).astype(np.float32) for k in gen.integers(1, 7, n)]
    if rng.random() < 0.4:
        columns["name"] = np.array([f"item-{i}" for i in range(n)])
    return prebake.write_arrays(path, columns)


def _options(cache: prebake.Cache, rng: random.Random) -> BenchOptions:
    view = rng.choice([None, "windows", "elements"])
    return BenchOptions(batch_size=rng.randint(1, 9), workers=0, view=view, column="seq",
                        length=rng.randint(1, 3), context=rng.randint(0, 2))


def _loader_pass(row: Row, view: Any, rng: random.Random, where: str) -> None:
    if len(view) == 0:
        return
    indices = np.array(rng.sample(range(len(view)), rng.randint(1, len(view))))
    kw = {"batch_size": rng.randint(1, 9), "seed": rng.randint(0, 99), "indices": indices,
          "drop_last": rng.random() < 0.3}
    before = {t for t in threading.enumerate() if t.name.startswith("prebake-loader")}
    auto, threaded = prebake.Loader(view, **kw), prebake.Loader(view, threads=2, **kw)
    for epoch in range(2):
        want = list(threaded)
        got = []
        for batch in auto:
            started = {t for t in threading.enumerate() if t.name.startswith("prebake-loader")} - before
            row.check(not started, f"{where}: epoch {epoch} started gather threads {sorted(t.name for t in started)}")
            got.append(batch)
        row.check(len(got) == len(want), f"{where}: epoch {epoch} gave {len(got)} batches, threads=2 {len(want)}")
        for k, (a, b, idx) in enumerate(zip(got, want, threaded.sampling.batches(epoch, threaded.indices))):
            same = _same(a, b) and _same(a, view[idx])
            row.check(same, f"{where}: epoch {epoch} batch {k} differs from threads=2's or the view's items")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if set(a) != set(b):
        return False
    for key, x in a.items():
        y = b[key]
        xs, ys = (x, y) if isinstance(x, list) else ([x], [y])
        if len(xs) != len(ys):
            return False
        for p, q in zip(xs, ys):
            p, q = np.asarray(p), np.asarray(q)
            if p.shape != q.shape or not np.array_equal(p, q.astype(p.dtype) if q.dtype != p.dtype else q):
                return False
    return True
