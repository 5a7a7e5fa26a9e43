"""An outsider's Patches: the dtypes, extents, seeds, epochs and subsets a new user passes, checked.

Each trial bakes 1-4 volumes of random extents (1 to 7 voxels a side, so axes of extent 1 and patches
larger than every volume come often) in a random dtype (uint8, int16, uint16, float16, bool, big-endian
int16, float32), cuts them with a random sampler at a seed and epoch drawn from the edges (0, 2**63 - 1,
2**64 - 1, past 2**64), with ``indices=`` that may repeat items, and reads one epoch through the Loader
from the memory maps, RAM or a device copy, on 1-3 ranks. A trial fails when a patch differs from a
numpy crop of its item, when an ``(item, draw)`` is read twice or never, when a grid stitched back from
its own tiles differs from the volume, or when anything but a PrebakeError escapes. The hostile values
that must be refused are ``benchmarks/trials/patches.py``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import prebake
from prebake.errors import PrebakeError
from prebake.steps import FgBgIndices

from . import Row
from .patches import Volumes, crop

DTYPES = ("uint8", "int16", "uint16", "float16", "bool", ">i2", "float32")
SEEDS = (0, 7, 2**63 - 1, 2**64 - 1, 2**64 + 3, 2**80)


def patches_attacks(work_dir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("patches attacks: dtypes, extent-1 axes, edge seeds and epochs, repeated indices, stitching")
    rng = np.random.default_rng(seed)
    for t in range(trials):
        where = f"trial {t} (seed {seed})"
        try:
            _trial(row, rng, work_dir / f"patches-attacks-{seed}-{t}", where)
        except PrebakeError as e:
            row.check(_allowed(e), f"{where}: {type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - anything escaping a trial is a failure to report, not to crash on
            row.fail(f"{where}: {type(e).__name__} escaped: {e}")
    return row


def _allowed(e: PrebakeError) -> bool:
    """The refusals a valid trial may meet: more ranks than patches (the Loader says so)."""
    return "cannot be shared by" in str(e)


def _items(rng: np.random.Generator, dtype: str) -> list[dict[str, Any]]:
    k, lead = int(rng.integers(2, 4)), [(), (1,), (2,)][int(rng.integers(3))]
    items = []
    for _ in range(int(rng.integers(1, 5))):
        dims = tuple(int(x) for x in rng.integers(1, 8, k))
        image = (rng.random((*lead, *dims)) * (2 if dtype == "bool" else 60000)).astype(dtype)
        labels = (rng.random(dims) < 0.3).astype(np.uint8)
        items.append({"image": image, "label_map": labels[None]})
    return items


def _trial(row: Row, rng: np.random.Generator, path: Path, where: str) -> None:
    dtype = str(rng.choice(DTYPES))
    items = _items(rng, dtype)
    cache = prebake.build(Volumes(items, path.name), path, steps=[FgBgIndices("label_map")], workers=0,
                          progress=False)
    k = items[0]["label_map"].ndim - 1
    size = tuple(int(x) for x in rng.integers(1, 9, k))
    sampler = str(rng.choice(["uniform", "balanced", "grid"]))
    kw: dict[str, Any] = {"seed": SEEDS[int(rng.integers(len(SEEDS)))], "pad_value": {"label_map": 9}}
    if sampler != "grid":
        kw |= {"per_item": int(rng.integers(1, 4))}
        if rng.random() < 0.5:
            kw["indices"] = rng.integers(0, len(items), int(rng.integers(1, 6)))  # repeats: oversampling
    if sampler == "balanced":
        kw |= {"label": "label_map", "pos_fraction": float(rng.choice([0.0, 0.5, 1.0]))}
    view = prebake.Patches(cache, "image", size, sampler=sampler, **kw)
    where = f"{where}: {dtype} {view!r} seed={kw['seed']}"
    epoch = SEEDS[int(rng.integers(len(SEEDS)))]
    _read(row, rng, view, items, size, epoch, where)
    if sampler == "grid":
        _stitch(row, view, items, where)


def _read(row: Row, rng: np.random.Generator, view: prebake.Patches, items: list[dict[str, Any]],
          size: tuple[int, ...], epoch: int, where: str) -> None:
    world, batch = int(rng.integers(1, 4)), int(rng.integers(1, 6))
    preload = [None, "ram", "device"][int(rng.integers(3))]
    seen: list[tuple[int, int]] = []
    for rank in range(world):
        loader = prebake.Loader(view, batch, rank=rank, world_size=world, preload=preload)
        loader.set_epoch(epoch)
        for b in loader:
            for j, i in enumerate(b["item"].tolist()):
                start = np.asarray(b["start"][j].cpu())
                for name, fill in (("image", 0), ("label_map", 9)):
                    got, want = np.asarray(b[name][j].cpu()), crop(items[i][name], start, size, fill)
                    row.check(got.shape == want.shape and np.array_equal(got, want),
                              f"{where} epoch {epoch}: {name} of item {i} at {start.tolist()} is not the numpy crop")
            seen += list(zip(b["item"].tolist(), b["draw"].tolist()))
    want = sorted(zip(view.item.tolist(), view.draw.tolist()))
    row.check(sorted(seen) == want and len(set(want)) == len(want),
              f"{where} epoch {epoch}: {world} ranks read {len(seen)} (item, draw), {len(set(seen))} distinct, "
              f"of {len(want)}")


def _stitch(row: Row, view: prebake.Patches, items: list[dict[str, Any]], where: str) -> None:
    """The grid's own tiles, as float predictions, stitched back: each volume exactly."""
    stitcher = view.stitcher()
    b = view[np.arange(len(view))]
    pred = torch.from_numpy(b["image"].astype(np.float32)).reshape(len(view), -1, *view.size)
    done = stitcher.add(pred, b["item"], b["start"])
    row.check(sorted(done) == sorted(set(view.item.tolist())), f"{where}: stitched items {done}")
    for i in done:
        want = items[i]["image"].astype(np.float32)
        got = stitcher.pop(i).numpy().reshape(want.shape)
        row.check(np.array_equal(got, want), f"{where}: item {i} stitched from its tiles differs from the volume")
