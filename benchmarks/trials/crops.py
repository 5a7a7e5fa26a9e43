"""Crops of images of many sizes: random sizes, channels, dtypes, output sizes, ranges, ranks and resume points.

Each trial bakes a few images of random sizes (1 x 1 to 70 x 70, grey ``(H, W)`` or ``(C, H, W)``, uint8
or float32), crops them with ``prebake.Crops`` (train or eval) and reads an epoch through
``prebake.Loader`` on several ranks, resumed at a random batch, from the memory maps, RAM or a device
copy. A trial fails when a crop differs from the per-sample reference (numpy crop, then torch's
``interpolate(bilinear, antialias=True)``) by more than the stated tolerance, when a box leaves its
image or differs from the box torchvision's ``get_params`` loop makes of the same random numbers, when
an item is read twice or never across the ranks of an epoch, when a resumed epoch reads other crops,
or when anything but a ViewError escapes a bad parameter.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import prebake
from prebake.errors import PrebakeError, ViewError
from prebake.load.crop_boxes import ATTEMPTS
from prebake.load.draws import uniforms

from . import Row
from .patches import Volumes

#: Upscaled boxes (h and w at most size) are interpolate's own sample points: off by rounding only.
UPSCALE_TOL = 1.0
#: Larger boxes: area-averaged by whole factors, then bilinear (no antialias for the rest, a factor under 2),
#: against interpolate's triangle as wide as the whole factor. On the smooth images below (waves of 12 px and
#: more, 140 grey levels deep) the mean difference stays under this, in grey levels of 255: the largest of 300
#: crops at factors 1 to 12 per axis was 3.94 (a 6% loss of a 12 px wave's depth under the triangle at 1.9x
#: that bilinear sampling does not have), the largest of 307 in 240 trials 2.97.
DOWNSCALE_MEAN_TOL = 4.5


def smooth(rng: np.random.Generator, h: int, w: int, lead: tuple[int, ...], dtype: str) -> np.ndarray:
    """A photo-like image: a gradient plus slow waves of random period (12 px or more), in 0..255."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for _ in range(int(np.prod(lead)) if lead else 1):
        py, px, phase = rng.uniform(12, 40), rng.uniform(12, 40), rng.uniform(0, 6)
        v = 60 + 50 * x / max(w, 1) + 70 * (1 + np.sin(2 * np.pi * (x / px + y / py) + phase)) * 0.5 * \
            (1 + np.cos(2 * np.pi * y / (py * 1.7))) * 0.5 + 40 * y / max(h, 1)
        planes.append(v)
    img = np.stack(planes).reshape(*lead, h, w) if lead else planes[0]
    return np.clip(np.rint(img), 0, 255).astype(dtype)


def images(rng: np.random.Generator, n: int, lead: tuple[int, ...], dtype: str, small: int = 1,
           large: int = 70) -> list[dict[str, Any]]:
    return [{"image": smooth(rng, *(int(v) for v in rng.integers(small, large + 1, 2)), lead, dtype), "label": i}
            for i in range(n)]


def bake(path: Path, items: list[dict[str, Any]], tag: str) -> prebake.Cache:
    return prebake.build(Volumes(items, tag), path, workers=0, progress=False)


def whole_factors(box: Any, size: int) -> bool:
    """Whether the box's sides are whole multiples of ``size``: then the resize is an exact block mean."""
    h, w = int(box[2]), int(box[3])
    return h % size == 0 and w % size == 0


def reference(image: np.ndarray, box: Any, size: int) -> np.ndarray:
    """The per-sample reference: the box cut with numpy, resized by ``interpolate(bilinear, antialias=True)``,
    float64 (the view rounds integer outputs; compare with a tolerance of at least 0.5). A box whose sides are
    whole multiples of ``size`` is the mean of each block instead: what an area resize is exactly, where
    interpolate's triangle differs from it by up to 5.9 grey levels (10 x 12 to 2 x 2, 200 smooth images)."""
    t, left, h, w = (int(v) for v in box)
    if whole_factors(box, size):
        block = np.asarray(image[..., t:t + h, left:left + w], np.float64)
        return block.reshape(*image.shape[:-2], size, h // size, size, w // size).mean(axis=(-3, -1))
    crop = torch.from_numpy(np.ascontiguousarray(image[..., t:t + h, left:left + w], np.float32))
    x = crop.reshape(1, -1, h, w)
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.reshape(*image.shape[:-2], size, size).double().numpy()


def within(got: np.ndarray, want: np.ndarray, box: Any, size: int) -> str:
    """'' when ``got`` is within the tolerance of ``want`` for this box, else what is wrong."""
    diff = np.abs(np.asarray(got, np.float64) - want)
    if whole_factors(box, size) or (int(box[2]) <= size and int(box[3]) <= size):
        return "" if diff.max() <= UPSCALE_TOL else f"upscaled box {list(box)} off by {diff.max():.2f}"
    return "" if diff.mean() <= DOWNSCALE_MEAN_TOL else f"box {list(box)} off by {diff.mean():.2f} on average"


def get_params(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], seed: int,
               epoch: int, item: int) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, its loop as written there, fed the view's random numbers."""
    def u(stream: int) -> float:
        return float(uniforms(seed, epoch, np.array([item]), np.array([0]), stream)[0])
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for a in range(ATTEMPTS):
        target_area = area * (scale[0] + u(a) * (scale[1] - scale[0]))
        aspect_ratio = math.exp(log_ratio[0] + u(ATTEMPTS + a) * (log_ratio[1] - log_ratio[0]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = min(int(u(2 * ATTEMPTS) * (height - h + 1)), height - h)
            j = min(int(u(2 * ATTEMPTS + 1) * (width - w + 1)), width - w)
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    h, w = max(h, 1), max(w, 1)  # the view's one departure: a box of at least one pixel where torchvision's is empty
    return (height - h) // 2, (width - w) // 2, h, w


def crops(work_dir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("crops of images of many sizes (boxes, resize vs interpolate antialias, epochs, ranks, resume)")
    rng = np.random.default_rng(seed)
    for t in range(trials):
        where = f"trial {t} (seed {seed})"
        try:
            _trial(row, rng, work_dir / f"t{t}", where)
        except PrebakeError as e:
            row.fail(f"{where}: a valid setup raised {type(e).__name__}: {e}")
        except Exception as e:  # anything else escaping is the failure this trial counts
            row.fail(f"{where}: {type(e).__name__}: {e}")
    return row


def _trial(row: Row, rng: np.random.Generator, path: Path, where: str) -> None:
    lead = [(), (1,), (3,)][int(rng.integers(3))]
    dtype = ["uint8", "float32"][int(rng.integers(2))]
    items = images(rng, int(rng.integers(3, 9)), lead, dtype, small=1, large=int(rng.choice([8, 70])))
    cache = bake(path, items, f"{where}-{lead}-{dtype}")
    view, kw = _view(cache, rng)
    world, batch = int(rng.integers(1, min(3, len(view)) + 1)), int(rng.integers(1, 5))
    preload = [None, "ram", "device"][int(rng.integers(3))]
    epoch = int(rng.integers(0, 4))
    seen = []
    for rank in range(world):
        loader = prebake.Loader(view, batch, seed=kw["seed"], rank=rank, world_size=world, preload=preload)
        loader.set_epoch(epoch)
        got = list(loader)
        for b in got:
            _check_batch(row, b, items, view, epoch, f"{where} {kw} rank {rank}/{world} preload={preload}")
            seen += b["item"].tolist()
        if rank == 0 and got:
            _resume(row, loader, epoch, got, rng, f"{where} {kw}")
    row.check(sorted(seen) == sorted(view.item.tolist()),
              f"{where} {kw}: ranks read items {sorted(seen)}, the view has {sorted(view.item.tolist())}")
    _bad(row, cache, rng, where)


def _view(cache: prebake.Cache, rng: np.random.Generator) -> tuple[prebake.Crops, dict[str, Any]]:
    lo = float(rng.uniform(0.01, 1.0))
    r = float(rng.uniform(0.2, 1.0))
    kw: dict[str, Any] = {"size": int(rng.integers(4, 40)), "scale": (lo, float(rng.uniform(lo, 1.0))),
                          "ratio": (r, r * float(rng.uniform(1.0, 3.0))), "train": bool(rng.integers(0, 4)),
                          "seed": int(rng.integers(0, 100))}
    if rng.random() < 0.3:
        kw["indices"] = np.sort(rng.choice(len(cache), int(rng.integers(1, len(cache) + 1)), replace=False))
    return prebake.Crops(cache, "image", **kw), kw


def _check_batch(row: Row, b: dict[str, Any], items: list[dict[str, Any]], view: prebake.Crops, epoch: int,
                 where: str) -> None:
    size = view.size
    for j, i in enumerate(b["item"].tolist()):
        image, box = items[i]["image"], b["box"][j].tolist()
        h, w = image.shape[-2:]
        if view.train:
            want_box = list(get_params(h, w, view.scale, view.ratio, view.seed, epoch, i))
        else:
            side = min(max(int(round(min(h, w) * size / round(size / 0.875))), 1), min(h, w))
            want_box = [(h - side) // 2, (w - side) // 2, side, side]
        row.check(box == want_box, f"{where}: item {i} ({h}x{w}) box {box}, the reference draws {want_box}")
        if box != want_box or not (0 <= box[0] and box[0] + box[2] <= h and 0 <= box[1] and box[1] + box[3] <= w):
            continue
        got = np.asarray(b["image"][j])
        if got.shape != (*image.shape[:-2], size, size) or str(got.dtype) != str(image.dtype):
            row.fail(f"{where}: item {i} crop {got.shape} {got.dtype}, want {(*image.shape[:-2], size, size)}")
            continue
        wrong = within(got, reference(image, box, size), box, size)
        row.check(not wrong, f"{where}: item {i} ({h}x{w}) {wrong}")
        row.check(int(b["label"][j]) == items[i]["label"], f"{where}: item {i} label {int(b['label'][j])}")


def _resume(row: Row, loader: prebake.Loader, epoch: int, got: list[dict[str, Any]], rng: np.random.Generator,
            where: str) -> None:
    k = int(rng.integers(0, len(got)))
    loader.set_epoch(epoch)
    it = iter(loader)
    for _ in range(k):
        next(it)
    state = loader.state_dict()
    again = prebake.Loader(loader.view, loader.sampling.batch_size, seed=loader.sampling.seed,
                           rank=loader.sampling.rank, world_size=loader.sampling.world_size)
    again.load_state_dict(state)
    rest = list(again)
    same = len(rest) == len(got) - k and all(torch.equal(x["image"], y["image"]) and torch.equal(x["box"], y["box"])
                                             for x, y in zip(rest, got[k:]))
    row.check(same, f"{where}: resumed at batch {k} of epoch {epoch}, read other crops")


BAD: list[tuple[dict[str, Any], str]] = [
    ({"size": 0}, "size=0"), ({"size": 10**6}, "size=1000000"), ({"size": 2.5}, "size=2.5"),
    ({"size": (4, 4)}, "size=(4, 4)"), ({"size": True}, "size=True"),
    ({"scale": (0.5, 0.1)}, "reversed"), ({"scale": (0.0, 1.0)}, "scale="), ({"scale": (0.5, 1.5)}, "scale="),
    ({"scale": ("a", 1)}, "scale="), ({"scale": 0.5}, "scale="), ({"scale": (float("nan"), 1.0)}, "scale="),
    ({"ratio": (2.0, 1.0)}, "reversed"), ({"ratio": (-1.0, 1.0)}, "ratio="), ({"ratio": (1, float("inf"))}, "ratio="),
    ({"train": "yes"}, "train="), ({"seed": -1}, "seed="), ({"column": "label"}, "column 'label'"),
    ({"column": "nope"}, "column='nope'"), ({"columns": ["nope"]}, "no column 'nope'"),
]


def _bad(row: Row, cache: prebake.Cache, rng: np.random.Generator, where: str) -> None:
    kw, match = BAD[int(rng.integers(len(BAD)))]
    try:
        prebake.Crops(**{"cache": cache, "column": "image", **kw})
    except ViewError as e:
        row.check(match in str(e), f"{where}: Crops({kw}) raised {e!r}, which does not name {match!r}")
        return
    except Exception as e:  # anything but a ViewError is the failure counted
        row.fail(f"{where}: Crops({kw}) raised {type(e).__name__}: {e}")
        return
    row.fail(f"{where}: Crops({kw}) was accepted")
