"""An outsider's Crops: the dtypes, image sizes, ranges, seeds, epochs and subsets a new user passes, checked.

Each trial bakes 1-4 images of 1 to 60 pixels a side (1x1 and 1-pixel-high images come often) in a random
dtype (uint8, int16, uint16, float16, big-endian int16, float32; bool must be refused), grey or with 1-4
channels, crops them with ``scale`` and ``ratio`` ranges drawn from the edges (equal ends, 1e-9, 1e9), a
seed and epoch from 0 to past 2**64 and ``indices=`` that may repeat items, and reads one epoch through
the Loader from the memory maps, RAM or a device copy on 1-3 ranks. A trial fails when a crop leaves
the tolerance of the per-sample reference (``benchmarks/trials/crops.py``), changes dtype, lies outside its
image, when an item is read a wrong number of times, when numpy warns of a garbage cast, or when
anything but a PrebakeError escapes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.errors import PrebakeError

from . import Row
from .crops import reference, smooth, within
from .patches import Volumes

DTYPES = ("uint8", "int16", "uint16", "float16", ">i2", "float32", "bool")
EDGES = (0, 7, 2**63 - 1, 2**64 - 1, 2**64 + 3, 2**80)
RANGES = {"scale": [(0.08, 1.0), (1.0, 1.0), (1e-9, 1e-9), (0.5, 0.5), (1e-9, 1.0)],
          "ratio": [(3 / 4, 4 / 3), (1.0, 1.0), (1e-9, 1e-9), (1e9, 1e9), (1e-300, 1e300)]}
SCALE = {"uint16": 250.0}  # the photos' 0..255 times this; the tolerance is stated for 0..255


def crops_attacks(work_dir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("crops attacks: dtypes, 1-pixel images, edge ranges, seeds and epochs, repeated indices")
    rng = np.random.default_rng(seed)
    for t in range(trials):
        where = f"trial {t} (seed {seed})"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # a garbage cast warns; it must not happen
                _trial(row, rng, work_dir / f"crops-attacks-{seed}-{t}", where)
        except PrebakeError as e:
            row.check("cannot be shared by" in str(e) or "holds bool" in str(e), f"{where}: {type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - anything escaping a trial is a failure to report, not to crash on
            row.fail(f"{where}: {type(e).__name__} escaped: {e}")
    return row


def _items(rng: np.random.Generator, dtype: str) -> list[dict[str, Any]]:
    lead = [(), (1,), (3,), (4,)][int(rng.integers(4))]
    items = []
    for _ in range(int(rng.integers(1, 5))):
        h, w = (int(x) if rng.random() < 0.8 else 1 for x in rng.integers(1, 61, 2))
        image = smooth(rng, h, w, lead, "float64") * SCALE.get(dtype, 1.0)
        items.append({"image": (image > 128) if dtype == "bool" else image.astype(dtype)})
    return items


def _trial(row: Row, rng: np.random.Generator, path: Path, where: str) -> None:
    dtype = str(rng.choice(DTYPES))
    items = _items(rng, dtype)
    cache = prebake.build(Volumes(items, path.name), path, workers=0, progress=False)
    kw: dict[str, Any] = {name: values[int(rng.integers(len(values)))] for name, values in RANGES.items()}
    kw |= {"seed": EDGES[int(rng.integers(len(EDGES)))], "train": bool(rng.random() < 0.7)}
    if rng.random() < 0.5:
        kw["indices"] = rng.integers(0, len(items), int(rng.integers(1, 6)))  # repeats: oversampling
    size = int(rng.integers(1, 20))
    view = prebake.Crops(cache, "image", size, **kw)
    row.check(dtype != "bool", f"{where}: a bool column was accepted")
    where = f"{where}: {dtype} {view!r} seed={kw['seed']}"
    epoch = EDGES[int(rng.integers(len(EDGES)))]
    world, batch = int(rng.integers(1, 4)), int(rng.integers(1, 6))
    preload = [None, "ram", "device"][int(rng.integers(3))]
    seen: list[int] = []
    for rank in range(world):
        loader = prebake.Loader(view, batch, rank=rank, world_size=world, preload=preload)
        loader.set_epoch(epoch)
        for b in loader:
            for j, i in enumerate(b["item"].tolist()):
                _check(row, items[i]["image"], np.asarray(b["image"][j].cpu()), np.asarray(b["box"][j].cpu()), size,
                       f"{where} epoch {epoch}: item {i}")
            seen += b["item"].tolist()
    row.check(sorted(seen) == sorted(view.item.tolist()),
              f"{where} epoch {epoch}: {world} ranks read items {sorted(seen)}, the view holds {sorted(view.item)}")


def _check(row: Row, image: np.ndarray, got: np.ndarray, box: np.ndarray, size: int, where: str) -> None:
    t, left, h, w = (int(v) for v in box)
    inside = t >= 0 and left >= 0 and h >= 1 and w >= 1 and t + h <= image.shape[-2] and left + w <= image.shape[-1]
    row.check(inside, f"{where}: box {box.tolist()} outside its image of {list(image.shape[-2:])}")
    if not inside:
        return
    scale = SCALE.get(str(image.dtype.newbyteorder("=")), 1.0)
    wrong = within(got / scale, reference(image, box, size) / scale, box, size)
    row.check(not wrong and got.dtype == image.dtype.newbyteorder("="), f"{where}: {wrong or got.dtype}")
