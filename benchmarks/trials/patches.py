"""Patches of volumes of different shapes: random shapes, sizes, samplers, subsets, ranks and resume points.

Each trial bakes a few volumes of random extents (some smaller than the patch, with or without a
channel axis, int16, uint8 or float32) with a label map and ``FgBgIndices``, cuts them with
``prebake.Patches`` and reads every epoch through ``prebake.Loader`` on several ranks, resumed at a
random batch, from the memory maps, RAM or a device copy. A trial fails when a patch differs from
a numpy crop of its item (padded with the pad value, never wrapped), when an ``(item, draw)`` is
read twice or never across the ranks of an epoch, when a resumed epoch reads other patches, when a
balanced patch with ``pos_fraction=1`` holds no foreground in an item that has some, or when
anything but a PrebakeError escapes (bad parameters are thrown at it too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.errors import PrebakeError
from prebake.steps import FgBgIndices

from . import Row

CLASSES = (0, 1, 2)


class Volumes:
    """A map-style dataset of prebuilt volume items (with a fingerprint, so the build trusts it)."""

    def __init__(self, items: list[dict[str, Any]], tag: str):
        self.items, self.tag = items, tag

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        return self.tag

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self.items[i])


def volumes(rng: np.random.Generator, n: int, k: int, lead: tuple[int, ...], dtype: str, small: int = 2,
            large: int = 12) -> list[dict[str, Any]]:
    """``n`` items of random extents: ``image`` ``(*lead, *spatial)``, ``label_map`` ``(1, *spatial)`` with
    classes 0-2 (blobs, some items without class 2), ``weight`` ``(*spatial)`` float32, ``label``."""
    items = []
    for i in range(n):
        dims = tuple(int(x) for x in rng.integers(small, large + 1, k))
        image = (rng.random((*lead, *dims)) * 2000 - 1000).astype(dtype)
        labels = np.zeros(dims, np.uint8)
        labels[tuple(slice(d // 3, d // 3 + max(1, d // 4)) for d in dims)] = 1
        if i % 3:
            labels.reshape(-1)[rng.integers(0, labels.size, max(1, labels.size // 50))] = 2
        items.append({"image": image, "label_map": labels[None], "weight": rng.random(dims).astype(np.float32),
                      "label": i % 2})
    return items


def bake(path: Path, items: list[dict[str, Any]], tag: str) -> prebake.Cache:
    return prebake.build(Volumes(items, tag), path, steps=[FgBgIndices("label_map", CLASSES)], workers=0,
                         progress=False)


def crop(volume: np.ndarray, start: np.ndarray, size: tuple[int, ...], fill: Any) -> np.ndarray:
    """The numpy reference: the box of ``volume``'s last ``len(size)`` axes at ``start``, ``fill`` outside."""
    k = len(size)
    out = np.full(volume.shape[:-k] + tuple(size), fill, volume.dtype)
    src, dst = [slice(None)] * (volume.ndim - k), [slice(None)] * (volume.ndim - k)
    for s, n, d in zip(start.tolist(), size, volume.shape[-k:]):
        lo, hi = max(s, 0), min(s + n, d)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def patches(work_dir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("patches: random shapes, sizes, samplers, subsets, ranks, resume points and bad parameters")
    rng = np.random.default_rng(seed)
    for t in range(trials):
        where = f"trial {t} (seed {seed})"
        try:
            _trial(row, rng, work_dir / f"patches-{seed}-{t}", where)
        except Exception as e:  # noqa: BLE001 - anything escaping a trial is a failure to report, not to crash on
            row.fail(f"{where}: {type(e).__name__} escaped: {e}")
    return row


def _trial(row: Row, rng: np.random.Generator, path: Path, where: str) -> None:
    k = int(rng.integers(2, 4))
    lead = [(), (1,), (2,)][int(rng.integers(3))]
    items = volumes(rng, int(rng.integers(3, 8)), k, lead, str(rng.choice(["int16", "uint8", "float32"])))
    cache = bake(path, items, f"{path.name}")
    view, kw = _view(cache, rng)
    where = f"{where}: {view!r} {kw}"
    _bad(row, cache, rng, where)
    world = int(rng.integers(1, 4))
    if len(view) < world:
        return
    batch = int(rng.integers(1, 7))
    preload, order = [None, "ram", "device"][int(rng.integers(3))], int(rng.integers(100))
    for epoch in range(2):
        seen: list[tuple[int, int]] = []
        for rank in range(world):
            loader = prebake.Loader(view, batch, seed=order, rank=rank, world_size=world, preload=preload)
            loader.set_epoch(epoch)
            got = list(loader)
            _resume(row, loader, epoch, got, rng, f"{where} epoch {epoch} rank {rank}")
            for b in got:
                _check_batch(row, b, items, view, kw, f"{where} epoch {epoch} rank {rank}")
                seen += list(zip(b["item"].tolist(), b["draw"].tolist()))
        want = sorted(zip(view.item.tolist(), view.draw.tolist()))
        row.check(sorted(seen) == want, f"{where} epoch {epoch}: {world} ranks read (item, draw) "
                  f"{len(seen)} times, {len(set(seen))} distinct, of {len(want)}")


def _view(cache: prebake.Cache, rng: np.random.Generator) -> tuple[prebake.Patches, dict[str, Any]]:
    k = len(cache.specs["weight"].shape)
    kw: dict[str, Any] = {"size": tuple(int(x) for x in rng.integers(1, 9, k)),
                          "sampler": str(rng.choice(["uniform", "balanced", "grid"])),
                          "pad_value": {"image": int(rng.integers(-5 * (cache.specs["image"].dtype != "|u1"), 5)),
                                        "label_map": int(rng.integers(0, 5))},
                          "seed": int(rng.integers(0, 1000))}
    if kw["sampler"] == "grid":
        kw["overlap"] = float(rng.choice([0.0, 0.25, 0.5, 0.9]))
    else:
        kw["per_item"] = int(rng.integers(1, 5))
    if kw["sampler"] == "balanced":
        kw["label"] = "label_map"
        if rng.random() < 0.5:
            kw["pos_fraction"] = float(rng.choice([0.0, 0.3, 1.0]))
        else:
            kw["weights"] = {c: float(rng.integers(0, 3)) for c in CLASSES} | {1: 1.0}
    if rng.random() < 0.4:
        kw["indices"] = np.flatnonzero(rng.random(len(cache)) < 0.7)
        if not len(kw["indices"]):
            kw["indices"] = np.array([0])
    return prebake.Patches(cache, "image", **kw), kw


def _check_batch(row: Row, b: dict[str, Any], items: list[dict[str, Any]], view: prebake.Patches,
                 kw: dict[str, Any], where: str) -> None:
    size, fills = kw["size"], kw["pad_value"]
    for j, i in enumerate(b["item"].tolist()):
        start = np.asarray(b["start"][j].cpu())
        dims = np.array(items[i]["weight"].shape)
        outside = (start < 0) | (start + np.array(size) > dims)
        row.check(bool(b["padded"][j]) == bool(outside.any()), f"{where}: item {i} box {start.tolist()} in "
                  f"{dims.tolist()} has padded={bool(b['padded'][j])}")
        wraps = (dims >= np.array(size)) & outside  # a box leaves an axis that holds it whole
        row.check(not wraps.any(),
                  f"{where}: item {i} box {start.tolist()} leaves a volume of {dims.tolist()} that holds the patch")
        for name, fill in (("image", fills["image"]), ("label_map", fills["label_map"]), ("weight", 0)):
            got = np.asarray(b[name][j].cpu())
            want = crop(items[i][name], start, size, fill)
            row.check(got.shape == want.shape and np.array_equal(got, want),
                      f"{where}: {name} of item {i} at {start.tolist()} differs from the numpy crop")
        if kw.get("pos_fraction") == 1.0 and (items[i]["label_map"] > 0).any():
            row.check(bool((np.asarray(b["label_map"][j].cpu()) > 0).any()),
                      f"{where}: a pos_fraction=1 patch of item {i} at {start.tolist()} holds no foreground")


def _resume(row: Row, loader: prebake.Loader, epoch: int, got: list[dict[str, Any]], rng: np.random.Generator,
            where: str) -> None:
    """A loader resumed from a state saved after a random batch reads the rest of the epoch's patches."""
    if not got:
        return
    stop = int(rng.integers(0, len(got)))
    loader.set_epoch(epoch)
    it = iter(loader)
    for _ in range(stop):
        next(it)
    state = loader.state_dict()
    it.close()
    again = prebake.Loader(loader.view, loader.sampling.batch_size, seed=loader.sampling.seed,
                           rank=loader.sampling.rank, world_size=loader.sampling.world_size)
    again.load_state_dict(state)
    rest = list(again)
    same = len(rest) == len(got) - stop and all(
        np.array_equal(np.asarray(a["start"]), np.asarray(b["start"].cpu())) and
        np.array_equal(np.asarray(a["image"]), np.asarray(b["image"].cpu())) for a, b in zip(rest, got[stop:]))
    row.check(same, f"{where}: resumed after batch {stop} of {len(got)}, it read other patches")


_BAD: dict[str, list[Any]] = {
    "size": [(), (0, 2), (2.5, 2), "8", 8, (2, 2, 2, 2, 2, 2), (True, 2), (-1, 3)],
    "per_item": [0, -1, 2.5, "4", True],
    "sampler": ["random", None, 3, "Grid"],
    "overlap": [1.0, -0.1, "0.5", None, float("nan"), True],
    "pad_value": [float("nan"), "0", {"nope": 1}, {"label_map": -1}, {"label_map": 0.5}, [0]],
    "pad": ["no", 1, None],
    "columns": ["image", [5], ["nope"]],
    "indices": [[-1], [10**6], np.ones(2, bool), ["a"]],
    "seed": [-1, 1.5, "1"],
    "label": ["nope", 5],
    "pos_fraction": [1.5, -0.1, "0.5", float("nan")],
    "weights": [{}, {0: -1}, {7: 1.0}, {"a": 1}, [1, 2], {0: 0.0}, {1: float("inf")}],
    "column": ["label", "label_map_runs_0", 5, "nope"],
}


def _bad(row: Row, cache: prebake.Cache, rng: np.random.Generator, where: str) -> None:
    """One random bad parameter: a PrebakeError (ViewError), never another exception or silence."""
    name = str(rng.choice(sorted(_BAD)))
    value = _BAD[name][int(rng.integers(len(_BAD[name])))]
    k = len(cache.specs["weight"].shape)
    args: dict[str, Any] = {"cache": cache, "column": "image", "size": (2,) * k}
    if name in ("pos_fraction", "weights", "label"):
        args |= {"sampler": "balanced", "label": "label_map"}
    try:
        prebake.Patches(**{**args, name: value})
    except PrebakeError:
        row.ok()
    except Exception as e:  # noqa: BLE001 - a numpy internal reaching the user is what is counted
        row.fail(f"{where}: Patches({name}={value!r}) raised {type(e).__name__}, not a PrebakeError: {e}")
    else:
        row.fail(f"{where}: Patches({name}={value!r}) was accepted")
