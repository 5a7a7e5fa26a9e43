"""MONAI pipelines baked by prebake against MONAI's own ``PersistentDataset``, on random deterministic prefixes.

Each trial draws a prefix of deterministic MONAI transforms with random parameters (orientation, spacing,
intensity ranges, thresholds, flips, rotations, zooms, foreground crops, then a pad-or-crop to one shape)
and a random remainder, over a random subset of nibabel's shipped NIfTI volumes. It bakes
``prebake.build(DataList(data), out, steps=Compose(prefix + remainder))`` and counts a failure when:

- an item's array, dtype or affine differs from ``PersistentDataset``'s (computed, and read back from its
  cache directory), or an item MONAI transforms is skipped, or one it cannot transform is kept (an output
  with NaN or Inf, which MONAI keeps, must be skipped as a bad item: prebake's rule);
- the remainder prebake leaves is not the transforms from the first random one on;
- the same pipeline built again, from the same transform objects (which MONAI and prebake ran in this
  process) or from new ones, is not up to date;
- one parameter of one transform changed does not rebuild, or the reason does not name that transform.

monai is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import Row

#: 3-D volumes shipped with nibabel: LAS int16 big-endian, RAS uint8 with anisotropic voxels, float32 ones.
VOLUMES = ("anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii", "resampled_anat_moved.nii")
LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # Orientationd's labels, given: its default is deprecated
Spec = tuple[str, dict[str, Any]]


def nibabel_data() -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data"


def data_list(names: tuple[str, ...] = VOLUMES) -> list[dict[str, Any]]:
    root = nibabel_data()
    return [{"image": str(root / name), "case": i} for i, name in enumerate(names)]


def make(specs: list[Spec]) -> list[Any]:
    """MONAI transforms from ``(class name, keyword arguments)``: new objects each call."""
    import monai.transforms as mt

    return [getattr(mt, name)(**kwargs) for name, kwargs in specs]


def random_prefix(r: random.Random, size: int | None) -> list[Spec]:
    """LoadImaged, EnsureChannelFirstd, 1-5 random deterministic transforms, and a pad-or-crop to ``size``."""
    k = {"keys": "image"}
    middle = [_draw(r, name) for name in r.sample(sorted(_DRAWS), r.randint(1, 5))]
    end = [("ResizeWithPadOrCropd", {**k, "spatial_size": size})] if size else []
    return [("LoadImaged", {**k, "image_only": True}), ("EnsureChannelFirstd", dict(k)), *middle, *end]


def _draw(r: random.Random, name: str) -> Spec:
    return name, {"keys": "image", **_DRAWS[name](r)}


_DRAWS: dict[str, Any] = {
    "Orientationd": lambda r: {"axcodes": r.choice(["RAS", "LPS", "LAS", "PIR", "SAR", "ILP"]), "labels": LABELS},
    "Spacingd": lambda r: {"pixdim": tuple(round(r.uniform(1.5, 5.0), 2) for _ in range(3)),
                           "mode": r.choice(["bilinear", "nearest"]), "padding_mode": r.choice(["border", "zeros"])},
    "ScaleIntensityRanged": lambda r: {"a_min": float(r.randint(-50, 40)), "a_max": float(r.randint(60, 300)),
                                       "b_min": 0.0, "b_max": r.choice([1.0, 255.0]), "clip": r.random() < 0.5},
    "NormalizeIntensityd": lambda r: {"nonzero": r.random() < 0.5},
    "ThresholdIntensityd": lambda r: {"threshold": float(r.randint(0, 100)), "above": r.random() < 0.5,
                                      "cval": float(r.randint(0, 5))},
    "Flipd": lambda r: {"spatial_axis": r.randint(0, 2)},
    "Rotate90d": lambda r: {"k": r.randint(1, 3), "spatial_axes": tuple(r.sample([0, 1, 2], 2))},
    "Zoomd": lambda r: {"zoom": round(r.uniform(0.6, 1.4), 2), "keep_size": r.random() < 0.5},
    "CropForegroundd": lambda r: {"source_key": "image", "margin": r.randint(0, 3)},
    "ScaleIntensityd": lambda r: {"minv": 0.0, "maxv": float(r.choice([1, 10, 100]))},
}

_REMAINDERS: list[Spec] = [
    ("RandFlipd", {"keys": "image", "prob": 0.5, "spatial_axis": 0}),
    ("RandGaussianNoised", {"keys": "image", "prob": 0.3, "std": 0.05}),
    ("RandRotate90d", {"keys": "image", "prob": 0.5, "spatial_axes": (1, 2)}),
    ("RandScaleIntensityd", {"keys": "image", "factors": 0.1, "prob": 0.5}),
]


def persistent_values(data: list[dict[str, Any]], prefix: list[Any], work: Path) -> list[dict[str, Any] | None]:
    """What ``PersistentDataset`` caches for each item (None where MONAI raises): array, affine, and the
    array read back from its cache directory."""
    import torch
    from monai.data import PersistentDataset
    from monai.transforms import Compose

    work.mkdir(parents=True, exist_ok=True)
    first = PersistentDataset(data, Compose(prefix), cache_dir=work)
    again = PersistentDataset(data, Compose(prefix), cache_dir=work)
    out: list[dict[str, Any] | None] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a DataLoader worker computes (and prebake's bake): a float sum's order depends on it
    try:
        for i in range(len(data)):
            _persisted(first, again, i, out)
    finally:
        torch.set_num_threads(threads)
    return out


def _persisted(first: Any, again: Any, i: int, out: list[dict[str, Any] | None]) -> None:
    """Item ``i`` as PersistentDataset computes and caches it, appended to ``out`` (None where MONAI raises)."""
    try:
        item = first[i]
    except Exception:  # noqa: BLE001 - an item MONAI cannot transform: prebake must skip it too
        out.append(None)
        return
    out.append({"image": np.asarray(item["image"]), "affine": item["image"].affine.numpy(),
                "read_back": np.asarray(again[i]["image"])})


def compare(cache: Any, expected: list[dict[str, Any] | None]) -> list[str]:
    """Differences between a cache's rows and PersistentDataset's values (item by item, skipped ones apart)."""
    skipped = {s["index"]: s["reason"] for s in cache.manifest["skipped"]}
    kept = [i for i in range(len(expected)) if i not in skipped]
    problems = [f"item {i}: MONAI transforms it, prebake skipped it ({reason})" for i, reason in skipped.items()
                if expected[i] is not None and not (_nan(expected[i]) and "NaN" in reason)]
    problems += [f"item {i}: MONAI raised, prebake kept it" for i in kept if expected[i] is None]
    problems += [f"item {i}: NaN or Inf kept" for i in kept if expected[i] is not None and _nan(expected[i])]
    for row, i in enumerate(kept):
        want, got = expected[i], cache[row]
        if want is None or _nan(want):
            continue
        image = np.asarray(got["image"])
        for what, value in (("computed", want["image"]), ("read back", want["read_back"])):
            if image.dtype != value.dtype or not np.array_equal(image, value, equal_nan=True):
                problems.append(f"item {i}: image differs from PersistentDataset's ({what}): {image.dtype} "
                                f"{image.shape} vs {value.dtype} {value.shape}")
        if not np.array_equal(np.asarray(got["affine"]), want["affine"]):
            problems.append(f"item {i}: affine differs from the MetaTensor's")
    return problems


def _nan(values: dict[str, Any]) -> bool:
    """NaN or Inf in MONAI's output: a bad item to prebake (skipped with that reason), kept by MONAI."""
    return values["image"].dtype.kind == "f" and not bool(np.isfinite(values["image"]).all())


def monai(work_dir: Path, trials: int, seed: int) -> Any:
    """Random deterministic prefixes baked by prebake against PersistentDataset, and their fingerprints."""
    row = Row("MONAI Compose baked = PersistentDataset's values; a changed parameter rebuilds")
    r = random.Random(seed)
    log = logging.getLogger("prebake")
    level = log.level
    log.setLevel(logging.ERROR)  # every trial logs the remainder; restored after, for whoever logs next
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in range(trials):
                _trial(r, row, t, work_dir)
    finally:
        log.setLevel(level)
    row.notes["volumes"] = list(VOLUMES)
    return row


def _trial(r: random.Random, row: Row, t: int, work_dir: Path) -> None:
    import prebake
    from prebake.integrations.monai import DataList

    names = tuple(r.sample(VOLUMES, r.randint(1, len(VOLUMES))))
    size = r.choice([6, 9, 12]) if len(names) > 1 or r.random() < 0.5 else None  # one shape for several items
    specs, rest = random_prefix(r, size), r.sample(_REMAINDERS, r.randint(0, 2))
    data, out, objects = data_list(names), work_dir / f"t{t}" / "cache", make(specs + rest)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:  # runs the very objects given to prebake, here
        expected = persistent_values(data, objects[:len(specs)], Path(tmp))
    try:
        cache = prebake.build(DataList(data), out, steps=objects, workers=r.choice([0, 2]), progress=False)
    except prebake.errors.SourceError as e:  # no item could be baked: right only if MONAI fails on each
        row.check(all(x is None or _nan(x) for x in expected), f"trial {t}: prebake baked nothing ({e})")
        return
    problems = compare(cache, expected)
    row.check(not problems, f"trial {t} {[s[0] for s in specs]} on {names}: {problems[:2]}")
    left = cache.build_report.remainder
    got = [type(x).__name__ for x in left.transforms] if left is not None else []
    row.check(got == [s[0] for s in rest], f"trial {t}: remainder {got}, expected {[s[0] for s in rest]}")
    for what, steps in (("the same objects, after use", objects), ("new objects", make(specs + rest))):
        again = prebake.build(DataList(data), out, steps=steps, workers=0, progress=False).build_report
        row.check(again.action == "up to date", f"trial {t}: {what} again: {again.action}, {again.reasons}")
    _changed(r, row, t, specs, rest, data, out)


def _changed(r: random.Random, row: Row, t: int, specs: list[Spec], rest: list[Spec], data: list[dict[str, Any]],
             out: Path) -> None:
    import prebake
    from prebake.integrations.monai import DataList

    at = r.randrange(2, len(specs))  # a drawn transform or the final pad-or-crop
    name, kwargs = specs[at]
    changed = dict(kwargs)
    while changed == kwargs:
        changed = _draw(r, name)[1] if name in _DRAWS else {**kwargs, "spatial_size": kwargs["spatial_size"] + 1}
    specs = specs[:at] + [(name, changed)] + specs[at + 1:]
    cache = prebake.build(DataList(data), out, steps=make(specs + rest), workers=0, progress=False)
    report = cache.build_report
    ok = report.action == "rebuilt" and any(name in reason for reason in report.reasons)
    row.check(ok, f"trial {t}: {name} {kwargs} -> {changed}: {report.action}, reasons {report.reasons}")


if __name__ == "__main__":  # python -m benchmarks.trials.monai
    print(monai(Path(tempfile.mkdtemp()), int(os.environ.get("TRIALS", "10")), 0).to_json())
