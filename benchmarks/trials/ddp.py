"""DDP ranks and subsets, through real Loaders over a real cache whose ``x`` column holds each row's index.

Per configuration: every index of the (subset of the) cache exactly once per epoch across
ranks (``drop_last=False``), or no index twice (``drop_last=True``); the same number of
steps on every rank, or a SamplingError when the loader is made; a state_dict taken
mid-epoch resumes with exactly the remaining batches; a state from another
configuration is refused.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.errors import SamplingError

from . import Row


def ddp_subsets(workdir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("DDP ranks and subsets: each index once per epoch, equal steps, exact resume, foreign state refused")
    path = workdir / "ddp-cache"
    if not path.exists():
        prebake.write_arrays(path, {"x": np.arange(300, dtype=np.int64)})
    cache = prebake.open(path)
    rng = random.Random(seed)
    for t in range(trials):
        n = rng.choice([0, 1, 2, 3, rng.randrange(4, 300)])
        subset = None if rng.random() < 0.3 else np.array(rng.sample(range(300), n), dtype=np.int64)
        items = np.arange(300) if subset is None else subset
        cfg = {"batch_size": rng.randrange(1, 17), "shuffle": rng.random() < 0.8, "seed": rng.randrange(5),
               "drop_last": rng.random() < 0.3, "world_size": rng.randrange(1, 9)}
        where = f"trial {t}: {len(items)} items, {cfg}"
        try:
            _one(row, cache, subset, items, cfg, rng.randrange(3), where)
        except (AssertionError, ValueError, IndexError) as e:
            row.fail(f"{where}: {type(e).__name__}: {e}")
    return row


def _loader(cache: prebake.Cache, subset: Any, cfg: dict[str, Any], rank: int) -> prebake.Loader:
    return prebake.Loader(cache, cfg["batch_size"], shuffle=cfg["shuffle"], seed=cfg["seed"],
                          drop_last=cfg["drop_last"], indices=subset, rank=rank, world_size=cfg["world_size"],
                          threads=1, prefetch=1)


def _one(row: Row, cache: prebake.Cache, subset: Any, items: np.ndarray, cfg: dict[str, Any], epoch: int,
         where: str) -> None:
    world = cfg["world_size"]
    if 0 < len(items) < world and not cfg["drop_last"]:
        try:
            _loader(cache, subset, cfg, 0)
        except SamplingError:
            row.ok()
        else:
            row.fail(f"{where}: a rank without items was not refused")
        return
    loaders = [_loader(cache, subset, cfg, r) for r in range(world)]
    for ld in loaders:
        ld.set_epoch(epoch)
    seen = [[b["x"].numpy() for b in ld] for ld in loaders]
    steps = {len(s) for s in seen}
    flat = np.concatenate([b for s in seen for b in s]) if any(seen) else np.empty(0, np.int64)
    if cfg["drop_last"]:
        once = len(set(flat.tolist())) == len(flat)
    else:
        once = sorted(flat.tolist()) == sorted(items.tolist())
    row.check(len(steps) <= 1 and once and all(len(s) == len(ld) for s, ld in zip(seen, loaders)),
              f"{where}: steps per rank {[len(s) for s in seen]}, each index once: {once}")
    _resume(row, cache, subset, cfg, epoch, seen, where)


def _resume(row: Row, cache: prebake.Cache, subset: Any, cfg: dict[str, Any], epoch: int,
            seen: list[list[np.ndarray]], where: str) -> None:
    rank = cfg["world_size"] - 1
    if not seen[rank]:
        return
    k = len(seen[rank]) // 2
    first = _loader(cache, subset, cfg, rank)
    first.set_epoch(epoch)
    it = iter(first)
    for _ in range(k):
        next(it)
    state = first.state_dict()
    again = _loader(cache, subset, cfg, rank)
    again.load_state_dict(state)
    rest = [b["x"].numpy() for b in again]
    row.check(len(rest) == len(seen[rank]) - k and all(np.array_equal(a, b) for a, b in zip(rest, seen[rank][k:])),
              f"{where}: resume after {k} batches gave other batches")
    other = dict(cfg, seed=cfg["seed"] + 1)
    try:
        _loader(cache, subset, other, rank).load_state_dict(state)
    except ValueError:
        row.ok()
    else:
        row.fail(f"{where}: a state saved with another seed was accepted")
