"""Random-resized crops of photos of many sizes to 224, batch 64: prebake.Crops against what users write today.

    python benchmarks/crops.py                   # 2,000 photos, 3 interleaved rounds (about 3 minutes here)
    python benchmarks/crops.py --images 300 --rounds 1           # a quick look
    python benchmarks/crops.py --save            # also benchmarks/results/crops-<machine>.json

The data (written once under runs/crops/data, deterministic): JPEG (3 in 4) and PNG photos of 96 to 800 px a
side in 4 class folders, smooth shapes with some grain (photo-like, so JPEG sizes and the resize error are a
photo's, not noise's). Every pipeline crops the same boxes: prebake.Crops draws them per epoch, and the others
are handed them (``view.boxes(epoch)``), so all three do the same work on the same pixels.

- ``prebake``: ``prebake.build`` of the folder (2 workers) once, then ``Loader(Crops(cache, "image", 224), 64,
  threads=2)`` on the CPU (2 gather threads: the CPU default of gathering in the loop's thread ran 2-4x slower
  here, its torch ops fighting the machine's other load). First epoch = the build plus one epoch; steady = later
  epochs.
- ``Pillow DataLoader``: a map-style Dataset doing per sample what torchvision's RandomResizedCrop does on a PIL
  image (``Image.open().convert("RGB")``, ``crop(box)``, ``resize((224, 224), BILINEAR)``, to a CHW uint8
  tensor), in a ``torch.utils.data.DataLoader`` with 2 workers, batch 64 (torchvision is not installed here;
  this is its code path for PIL images).
- ``HF datasets``: ``datasets.Dataset`` of the paths cast to ``datasets.Image()``, ``with_transform`` doing the
  same Pillow crop per sample, in the same DataLoader.

Ratios are samples/s over prebake's (below 1: prebake is faster); the target is prebake >= 3x each, steady, on
this 2-core CPU. Checked first: every pipeline gives (64, 3, 224, 224) uint8 batches of the same items; the two
Pillow pipelines give identical crops; prebake's differ from Pillow's by the reported mean (Pillow's bilinear
is antialiased like torch's ``interpolate(antialias=True)``; prebake's is whole-factor averaging then bilinear,
see src/prebake/load/crop_resize.py). CPU seconds include the worker processes; the machine is shared, so its
load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prebake
from prebake.cache.format import ITEM_KEYS
from prebake.measure.bench import cpu_seconds, device_tag, machine, write_results

HERE = Path(__file__).resolve().parent
TARGET = 3.0
SIZE, BATCH, WORKERS = 224, 64, 2


def image_folder(d: Path, count: int, seed: int) -> Path:
    """``count`` photo-like images of 96..800 px a side (JPEG 3 in 4, else PNG), written once."""
    from PIL import Image

    done = d / f".done-{count}-{seed}"
    if done.exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        h, w = (int(v) for v in rng.integers(96, 801, 2))
        base = Image.fromarray(rng.integers(0, 256, (h // 24 + 2, w // 24 + 2, 3), dtype=np.uint8))
        smooth = np.asarray(base.resize((w, h), Image.BICUBIC), np.int16)
        pixels = np.clip(smooth + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = d / f"class{k % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels)
        image.save(folder / f"{k:05d}.jpg", quality=90) if k % 4 else image.save(folder / f"{k:05d}.png")
    done.touch()
    return d


def pillow_crop(path: str | Path, box: Any) -> torch.Tensor:
    """torchvision's RandomResizedCrop on a PIL image, for a given box: crop, then resize with BILINEAR."""
    from PIL import Image

    top, left, h, w = (int(v) for v in box)
    with Image.open(path) as im:
        img = im.convert("RGB").crop((left, top, left + w, top + h)).resize((SIZE, SIZE), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy())


class PillowCrops(torch.utils.data.Dataset):
    """The per-sample pipeline users write: one file decoded and cropped per ``__getitem__``."""

    def __init__(self, paths: list[Path], boxes: np.ndarray):
        self.paths, self.boxes = paths, boxes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": pillow_crop(self.paths[i], self.boxes[i]), "item": i}


def hf_dataset(paths: list[Path], boxes: np.ndarray) -> Any:
    import datasets

    ds = datasets.Dataset.from_dict({"image": [str(p) for p in paths], "item": list(range(len(paths)))})
    ds = ds.cast_column("image", datasets.Image(decode=False))  # paths; decoded in the transform, per sample

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"image": [pillow_crop(im["path"], boxes[i]) for im, i in zip(batch["image"], batch["item"])],
                "item": batch["item"]}

    return ds.with_transform(transform)


def loader_of(dataset: Any) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=WORKERS,
                                       generator=torch.Generator().manual_seed(0))



def epoch(batches: Any) -> tuple[float, float, int]:
    """(wall s, CPU s, samples) of one pass."""
    t0, c0, n = time.perf_counter(), cpu_seconds(), 0
    for b in batches:
        n += len(b["item"])
    return time.perf_counter() - t0, cpu_seconds() - c0, n


def paths_by_item(out: Path, folder: Path) -> list[Path]:
    """The file of each cache item (the cache's own record of its source keys)."""
    return [folder / key.split(": ", 1)[-1] for key in json.loads((out / ITEM_KEYS).read_text())]


def check(view: prebake.Crops, paths: list[Path], count: int = 32) -> dict[str, Any]:
    """Same pixels baked, same items and shapes everywhere, the Pillow pipelines identical, and how far
    prebake's crops are from Pillow's and from torch's interpolate(antialias=True) on the same boxes."""
    from PIL import Image

    idx = np.arange(min(count, len(view)))
    ours = view.at_epoch(1)[idx]
    boxes = view.boxes(1)["box"]
    hf = hf_dataset(paths, boxes)
    to_pillow, to_torch = [], []
    for j, i in enumerate(idx.tolist()):
        with Image.open(paths[i]) as im:
            baked = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
        if not np.array_equal(baked, np.asarray(view.cache[i]["image"])):
            raise SystemExit(f"{paths[i]}: the cache's pixels differ from Pillow's decode")
        pil = pillow_crop(paths[i], boxes[i])
        if not torch.equal(pil, hf[i]["image"]):
            raise SystemExit(f"{paths[i]}: the HF datasets crop differs from the Pillow one")
        top, left, h, w = boxes[i].tolist()
        crop = torch.from_numpy(baked[:, top:top + h, left:left + w].astype(np.float32))[None]
        ref = torch.nn.functional.interpolate(crop, size=(SIZE, SIZE), mode="bilinear", antialias=True)[0]
        got = ours["image"][j].astype(np.float64)
        to_pillow.append(float(np.abs(got - pil.numpy()).mean()))
        to_torch.append(float(np.abs(got - ref.round().clamp(0, 255).numpy()).mean()))
    for name, batches in (("prebake", prebake.Loader(view, BATCH)), ("Pillow DataLoader",
                          loader_of(PillowCrops(paths, boxes))), ("HF datasets", loader_of(hf))):
        b = next(iter(batches))
        if tuple(b["image"].shape) != (BATCH, 3, SIZE, SIZE) or b["image"].dtype != torch.uint8:
            raise SystemExit(f"{name}: a batch is {tuple(b['image'].shape)} {b['image'].dtype}")
    return {"crops_compared": len(idx), "mean_abs_vs_pillow": statistics.mean(to_pillow),
            "max_mean_abs_vs_pillow": max(to_pillow), "mean_abs_vs_torch_antialias": statistics.mean(to_torch),
            "max_mean_abs_vs_torch_antialias": max(to_torch)}


def run(folder: Path, out: Path, rounds: int, seed: int) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), cpu_seconds()
    cache = prebake.build(folder, out, workers=WORKERS, progress=False)
    bake = (time.perf_counter() - t0, cpu_seconds() - c0)
    view = prebake.Crops(cache, "image", SIZE, seed=seed)
    paths = paths_by_item(out, folder)
    loader = prebake.Loader(view, BATCH, seed=seed, threads=WORKERS)  # 2 gather threads, as the others' 2 workers
    loader.set_epoch(0)
    first = {"prebake": epoch(loader)}
    checked = check(view, paths)
    passes = {
        "prebake": lambda e: (loader.set_epoch(e), epoch(loader))[1],
        "Pillow DataLoader": lambda e: epoch(loader_of(PillowCrops(paths, view.boxes(e)["box"]))),
        "HF datasets": lambda e: epoch(loader_of(hf_dataset(paths, view.boxes(e)["box"]))),
    }
    times: dict[str, list[tuple[float, float, int]]] = {k: [] for k in passes}
    for r in range(rounds):  # interleaved: each round runs every pipeline once, on the same epoch's boxes
        for name, fn in passes.items():
            times[name].append(fn(r + 1))
            first.setdefault(name, times[name][0])
    return summary(times, first, bake, checked, len(view))


def summary(times: dict[str, list[tuple[float, float, int]]], first: dict[str, tuple[float, float, int]],
            bake: tuple[float, float], checked: dict[str, Any], n: int) -> dict[str, Any]:
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    rate = {k: n / v for k, v in wall.items()}
    first_s = {k: v[0] for k, v in first.items()}
    first_s["prebake"] += bake[0]  # the build is prebake's first epoch's cost
    return {"images": n, "size": SIZE, "batch": BATCH, "workers": WORKERS, "bake_s": bake[0], "bake_cpu_s": bake[1],
            "epochs": {k: [list(t) for t in v] for k, v in times.items()}, "steady_s": wall, "steady_cpu_s": cpu,
            "samples_per_s": rate, "first_epoch_s": first_s,
            "speedup_vs": {k: rate["prebake"] / v for k, v in rate.items() if k != "prebake"},
            "target": TARGET, "met": all(rate["prebake"] / v >= TARGET for k, v in rate.items() if k != "prebake"),
            "check": checked}


def print_row(row: dict[str, Any]) -> None:
    print(f"\n{row['images']:,} photos of 96-800 px, RandomResizedCrop to {row['size']}, batch {row['batch']} "
          f"(prebake bake: {row['bake_s']:.1f} s, {row['bake_cpu_s']:.1f} CPU s)")
    print(f"  {'pipeline':<18} {'first epoch s':>13} {'steady s':>9} {'samples/s':>10} {'CPU s/epoch':>12}  prebake is")
    for k, v in row["steady_s"].items():
        ratio = row["speedup_vs"].get(k)
        print(f"  {k:<18} {row['first_epoch_s'][k]:13.2f} {v:9.2f} {row['samples_per_s'][k]:10.0f} "
              f"{row['steady_cpu_s'][k]:12.2f}  {f'{ratio:.2f}x faster' if ratio else ''}")
    c = row["check"]
    print(f"  crops vs Pillow's: mean |diff| {c['mean_abs_vs_pillow']:.2f} grey levels (worst crop "
          f"{c['max_mean_abs_vs_pillow']:.2f}); vs interpolate(antialias=True) {c['mean_abs_vs_torch_antialias']:.2f} "
          f"(worst {c['max_mean_abs_vs_torch_antialias']:.2f}), {c['crops_compared']} crops")
    print(f"  target: prebake >= {row['target']}x each, steady: {'met' if row['met'] else 'NOT met'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="JSON path (default: runs/crops/crops-<machine>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/crops-<machine>.json")
    args = p.parse_args()
    if args.images < BATCH:
        p.error(f"--images {args.images}: every pipeline is checked on a whole batch of {BATCH}; pass {BATCH} or more")
    warnings.simplefilter("ignore")
    runs = HERE.parent / "runs" / "crops"
    folder = image_folder(runs / "data" / f"photos-{args.images}", args.images, args.seed)
    with tempfile.TemporaryDirectory(dir=runs) as d:
        row = run(folder, Path(d) / "cache", args.rounds, args.seed)
    print_row(row)
    name = f"crops-{device_tag('cpu')}.json"
    record = {"machine": machine("cpu"), "rounds": args.rounds, "row": row}
    for path in write_results(record, args.out or runs / name, HERE / "results" / name if args.save else None,
                              root=HERE.parent):
        print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
