"""One MONAI pipeline two ways: PersistentDataset + DataLoader, and prebake (prefix baked, random rest batched).

    python benchmarks/monai_pipeline.py                 # 48 volumes to 64^3, 5 interleaved rounds
    python benchmarks/monai_pipeline.py --volumes 16 --size 32 --rounds 3
    python benchmarks/monai_pipeline.py --save          # also update benchmarks/results/monai_pipeline-<device>.json

The pipeline (a ``monai.transforms.Compose`` of dictionary transforms, given as it is to both):
LoadImaged, EnsureChannelFirstd, Orientationd(RAS), Spacingd(1.5 mm), ScaleIntensityRanged(-1000..1000 HU
to 0..1, clipped), CropForegroundd, ResizeWithPadOrCropd(``--size``^3), then the random rest: RandFlipd on
each axis, RandRotate90d, RandScaleIntensityd, RandShiftIntensityd, RandGaussianNoised. The volumes are
synthetic int16 CT-like NIfTI files with spacings and orientations drawn per volume.

- ``monai``: ``PersistentDataset(files, compose, cache_dir)`` (the prefix ``torch.save``d per item on first
  use) + ``monai.data.DataLoader(batch_size, shuffle, num_workers=W, persistent_workers=True)``, the random
  rest per item in the workers;
- ``prebake``: ``prebake.build(DataList(files), out, steps=compose, workers=W)`` (the prefix in W worker
  processes, stored as float32 ``.npy`` columns), then ``prebake.Loader(cache, batch_size, shuffle,
  transform=to_device_ops(remainder))``: the same random transforms as batched ops on ``--device`` (on a
  CPU on the Loader's W gather threads, ``transform_in_threads``, as MONAI's run in W worker processes).

One torch compute thread in this process by default (``--threads``; DataLoader workers have one each): on a
shared 2-core machine two OpenMP threads per op mostly measure the other processes' load (an elementwise op on
a 4 x 64^3 batch took 1 ms on an idle machine and 23 ms at a load of 4).

The first epoch of each (prebake's bake, MONAI's cache writes included) is timed once, from empty caches,
after one item has run through the pipeline in this process (MONAI's first call imports and sets up what
the forked workers of both then share) and every file has been read once (the page cache holds them for both);
then ``--rounds`` rounds of one steady epoch each, the two taking turns (the order alternates), every batch
moved to ``--device``. Reported: samples/s per pipeline (median and range of the rounds), the ratio
prebake/monai round by round (paired), the samples per CPU second (this process's threads and MONAI's
worker processes: robust to other load on a shared machine), and the first epochs' seconds and ratio.
Before timing, the baked prefix is checked against PersistentDataset's cached values, item by item (equal bit for bit).
Prints a table and writes runs/monai/monai_pipeline-<device>.json; benchmarks/results/ only with --save.
"""

from __future__ import annotations

import argparse
import logging
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
from prebake.measure.bench import device_tag, machine, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPACING = 1.5
WINDOW = (-1000.0, 1000.0)


def write_volumes(root: Path, n: int, size: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` int16 CT-like NIfTI volumes whose 1.5 mm grid is about ``size`` voxels a side (some LAS)."""
    import nibabel as nib

    from prebake.synthetic_volumes import ct_phantom

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        zooms = rng.uniform(1.0, 2.0, 3)
        dims = tuple(int(v) for v in np.round(size * SPACING / zooms * rng.uniform(0.92, 1.08, 3)))
        affine = np.diag([*zooms, 1.0])
        if i % 2:
            affine[0, 0] = -zooms[0]  # LAS: the reorientation has work to do
        img = nib.Nifti1Image(ct_phantom(dims, bool(i % 2), rng), affine)
        img.set_sform(affine, 1)
        path = root / f"v{i:04d}.nii.gz"
        nib.save(img, path)
        files.append({"image": str(path)})
    return files


def pipeline(size: int) -> Any:
    import monai.transforms as mt

    k = "image"
    return mt.Compose([
        mt.LoadImaged(k, image_only=True), mt.EnsureChannelFirstd(k),
        mt.Orientationd(k, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        mt.Spacingd(k, pixdim=(SPACING,) * 3, mode="bilinear"),
        mt.ScaleIntensityRanged(k, *WINDOW, 0.0, 1.0, clip=True), mt.CropForegroundd(k, source_key=k),
        mt.ResizeWithPadOrCropd(k, (size,) * 3),
        *(mt.RandFlipd(k, prob=0.5, spatial_axis=a) for a in range(3)),
        mt.RandRotate90d(k, prob=0.5, spatial_axes=(1, 2)), mt.RandScaleIntensityd(k, factors=0.1, prob=0.5),
        mt.RandShiftIntensityd(k, offsets=0.1, prob=0.5), mt.RandGaussianNoised(k, prob=0.5, std=0.05),
    ])


class Monai:
    """PersistentDataset + DataLoader, as MONAI's tutorials write it."""

    def __init__(self, files: list[dict[str, Any]], work: Path, args: argparse.Namespace):
        from monai.data import DataLoader, PersistentDataset

        self.dataset = PersistentDataset(files, pipeline(args.size), cache_dir=work / "persistent")
        self.loader = DataLoader(self.dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                 persistent_workers=args.workers > 0)
        self.device = torch.device(args.device)

    def epoch(self) -> int:
        n = 0
        for batch in self.loader:
            n += int(batch["image"].to(self.device, non_blocking=True).shape[0])
        return n

    def pids(self) -> list[int]:
        """The DataLoader's worker processes (kept between epochs): their CPU time is this pipeline's too."""
        it = getattr(self.loader, "_iterator", None)
        return [w.pid for w in getattr(it, "_workers", [])]


class Prebake:
    """prebake.build of the same Compose, and a Loader running its random rest as batched device ops."""

    def __init__(self, files: list[dict[str, Any]], work: Path, args: argparse.Namespace):
        from prebake.integrations.monai import DataList, to_device_ops

        self.cache = prebake.build(DataList(files), work / "cache", steps=pipeline(args.size), workers=args.workers,
                                   progress=False)
        ops, missing = to_device_ops(self.cache.build_report.remainder)
        if missing:
            raise SystemExit(f"no device equivalent for {missing}")
        on_cpu = torch.device(args.device).type == "cpu"  # there: the transform on W gather threads, as W workers
        self.loader = prebake.Loader(self.cache, args.batch, shuffle=True, seed=0, device=args.device,
                                     columns=["image"], transform=ops.to(args.device), transform_in_threads=on_cpu,
                                     threads=max(args.workers, 1) if on_cpu else "auto")

    def epoch(self) -> int:
        return sum(int(batch["image"].shape[0]) for batch in self.loader)

    def pids(self) -> list[int]:
        return []


def timed(run: Any, device: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = run()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, n


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process (all its threads) and of ``pids``: what a pipeline cost, whatever else ran."""
    tick = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # a worker that exited: its time is lost to this count
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def check_values(mon: Monai, pre: Prebake, items: int) -> int:
    """The baked prefix against PersistentDataset's cached prefix, item by item: equal bit for bit."""
    for i in range(items):
        want = np.asarray(mon.dataset._cachecheck(mon.dataset.data[i])["image"])
        got = np.asarray(pre.cache[i]["image"])
        if want.dtype != got.dtype or not np.array_equal(want, got):
            raise SystemExit(f"item {i}: prebake's baked prefix differs from PersistentDataset's")
    return items


def first_epochs(files: list[dict[str, Any]], work: Path, args: argparse.Namespace) -> tuple[Monai, Prebake, dict]:
    """Each pipeline's first epoch from empty caches: MONAI's writes its .pt files, prebake's includes the bake."""
    pipeline(args.size)(dict(files[0]))  # warm-up, not timed: see the module docstring
    for f in files:
        Path(f["image"]).read_bytes()
    t0 = time.perf_counter()
    pre = Prebake(files, work, args)
    pre_s, _ = timed(pre.epoch, args.device)
    pre_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    mon = Monai(files, work, args)
    mon_s, _ = timed(mon.epoch, args.device)
    mon_first = time.perf_counter() - t0
    n = len(files)
    first = {"monai_s": mon_first, "prebake_s": pre_first, "prebake_bake_s": pre_first - pre_s,
             "monai_samples_per_s": n / mon_first, "prebake_samples_per_s": n / pre_first,
             "ratio": mon_first / pre_first}
    return mon, pre, first


def steady(mon: Monai, pre: Prebake, rounds: int, device: str) -> dict[str, Any]:
    """Interleaved steady epochs; the ratio prebake/monai taken round by round."""
    rates: dict[str, list[float]] = {"monai": [], "prebake": []}
    per_cpu: dict[str, list[float]] = {"monai": [], "prebake": []}
    for r in range(rounds):
        order = (("monai", mon), ("prebake", pre)) if r % 2 == 0 else (("prebake", pre), ("monai", mon))
        for name, p in order:
            cpu = cpu_seconds(p.pids())
            seconds, n = timed(p.epoch, device)
            rates[name].append(n / seconds)
            per_cpu[name].append(n / max(cpu_seconds(p.pids()) - cpu, 1e-9))
    out: dict[str, Any] = {name: {"samples_per_s": statistics.median(v), "range": [min(v), max(v)], "rounds": v,
                                  "samples_per_cpu_s": statistics.median(per_cpu[name])}
                           for name, v in rates.items()}
    ratios = [a / b for a, b in zip(rates["prebake"], rates["monai"])]
    cpu_ratios = [a / b for a, b in zip(per_cpu["prebake"], per_cpu["monai"])]
    out["ratio"] = {"median": statistics.median(ratios), "range": [min(ratios), max(ratios)], "rounds": ratios,
                    "per_cpu_s": statistics.median(cpu_ratios)}
    return out


def table(result: dict[str, Any]) -> str:
    s, f = result["steady"], result["first_epoch"]
    return "\n".join([
        f"{'':<9} {'steady samples/s':>18} {'(range)':>17} {'first epoch':>12}",
        f"{'monai':<9} {s['monai']['samples_per_s']:>18,.1f} {_range(s['monai']['range']):>17} {f['monai_s']:>11.2f}s",
        f"{'prebake':<9} {s['prebake']['samples_per_s']:>18,.1f} {_range(s['prebake']['range']):>17} "
        f"{f['prebake_s']:>11.2f}s  (bake {f['prebake_bake_s']:.2f}s)",
        f"prebake / monai: steady {s['ratio']['median']:.2f}x (rounds {_range(s['ratio']['range'], 2)}), "
        f"{s['ratio']['per_cpu_s']:.2f}x per CPU second ({s['monai']['samples_per_cpu_s']:,.1f} and "
        f"{s['prebake']['samples_per_cpu_s']:,.1f} samples/CPU s); first epoch {f['ratio']:.2f}x (MONAI's time / "
        "prebake's)",
    ])


def _range(pair: list[float], digits: int = 1) -> str:
    return f"{pair[0]:,.{digits}f}-{pair[1]:,.{digits}f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--volumes", type=int, default=48)
    p.add_argument("--size", type=int, default=64, help="the side of the baked volumes, in voxels")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers, and prebake's bake workers")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of one steady epoch each")
    p.add_argument("--threads", type=int, default=1, help="torch compute threads here (default 1: see the docstring)")
    p.add_argument("--data", type=Path, help="where the NIfTI volumes are written (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="JSON path (default: runs/monai/monai_pipeline-<device>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/monai_pipeline-<device>.json")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("monai").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = write_volumes(args.data or work / "volumes", args.volumes, args.size)
        mon, pre, first = first_epochs(files, work, args)
        checked = check_values(mon, pre, len(files))
        result = {"first_epoch": first, "steady": steady(mon, pre, args.rounds, args.device),
                  "items_checked_equal": checked, "settings": {k: str(v) for k, v in vars(args).items()},
                  "cache_bytes": {"monai": _bytes(work / "persistent"), "prebake": _bytes(work / "cache")}}
        del mon, pre
        shutil.rmtree(work / "persistent", ignore_errors=True)
    print(table(result))
    record = {"machine": machine(args.device), "monai": _version("monai"), "results": result}
    name = f"monai_pipeline-{device_tag(args.device)}.json"
    out = args.out or ROOT / "runs" / "monai" / name
    for path in write_results(record, out, HERE / "results" / name if args.save else None, root=ROOT):
        print(f"wrote {path}")
    return 0


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _version(module: str) -> str:
    return str(getattr(sys.modules.get(module), "__version__", "?"))


if __name__ == "__main__":
    sys.exit(main())
