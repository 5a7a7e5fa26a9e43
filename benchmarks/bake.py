"""Bake throughput: items/s building CIFAR-10-format data (60,000 images), prebake vs the seed.

    python benchmarks/bake.py                      # full run: 60,000 images, 32 and 224 px, 1 and 2 workers
    python benchmarks/bake.py --train 5000 --test 1000 --sizes 32   # a quick look
    python benchmarks/bake.py --against 720a4b1 --save  # the same builds from an older commit's tree (bake_against.py)

Each configuration starts from an empty output and times the whole build: reading
the pickled batches, transforms, writing rows, journaling, checksums, fsync and the
atomic commit (the median of 3 builds when one takes under 10 s). The seed's own preprocess
loop (benchmarks/seeds.py) runs on the same data in the same process. It writes float32 (4x
prebake's bytes; 36 GB for all 60,000 images at 224 px), so above 32 px both pipelines are
compared on the 10,000-image test split. The seed's loop never fsyncs; prebake's timings
include making the cache durable.

Prints a table and writes JSON to benchmarks/results/bake-<machine>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import PIL
import torch

import prebake
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.measure.bench import write_results
from prebake.steps import Resize, compile_steps
from prebake.synthetic import cifar10_once

sys.path.insert(0, str(Path(__file__).parent))
import bake_against  # noqa: E402
from seeds import seed_preprocess_cifar  # noqa: E402


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "prebake": prebake.__version__, "numpy": np.__version__,
            "torch": torch.__version__, "pillow": PIL.__version__}


def time_prebake(source: Path, out: Path, size: int, workers: int, split: str | None = None) -> dict:
    """Median of 3 builds when one takes under 10 s (short runs are noisy), else one build."""
    runs: list[float] = []
    while not runs or (len(runs) < 3 and runs[0] < 10):
        shutil.rmtree(out, ignore_errors=True)
        sources = resolve_sources(source, kind="cifar")
        sources = {split: sources[split]} if split else sources
        t0 = time.perf_counter()
        steps = compile_steps([] if size == 32 else [Resize(size)])
        reports = build_all(sources, out, BuildOptions(steps, workers=workers))
        runs.append(time.perf_counter() - t0)
        items = sum(r.num_items for r in reports)
        nbytes = sum(f.stat().st_size for f in out.rglob("*.npy"))
    shutil.rmtree(out)
    seconds = sorted(runs)[len(runs) // 2]
    return {"pipeline": "prebake", "split": split or "all", "size": size, "workers": workers, "items": items,
            "seconds": seconds, "runs_s": runs, "items_per_s": items / seconds, "bytes": nbytes}


def time_seed(source: Path, out: Path, size: int, split: str | None = None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sources = resolve_sources(source, kind="cifar")
    images = np.concatenate([s.images for name, s in sources.items() if split in (None, name)])
    t0 = time.perf_counter()
    nbytes = seed_preprocess_cifar(images, size, out / "images.dat")
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return {"pipeline": SEED, "split": split or "all", "size": size, "workers": 1, "items": len(images),
            "seconds": seconds, "items_per_s": len(images) / seconds, "bytes": nbytes}


SEED = "federated ViT preprocess_data.py"


def time_durable_write(directory: Path, nbytes: int) -> dict:
    """The disk's floor: write ``nbytes`` and fsync them, as a build must (median of 3)."""
    directory.mkdir(parents=True, exist_ok=True)
    block, runs = np.random.default_rng(0).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes(), []
    for _ in range(3):
        path = directory / "durable-write.bin"
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            for start in range(0, nbytes, len(block)):
                f.write(block[: min(len(block), nbytes - start)])
            f.flush()
            os.fsync(f.fileno())
        runs.append(time.perf_counter() - t0)
        path.unlink()
    return {"bytes": nbytes, "seconds": sorted(runs)[1], "runs_s": runs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=50_000)
    p.add_argument("--test", type=int, default=10_000)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--workdir", type=Path, default=Path(__file__).parent / "data")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parents[1] / "runs" / "bake" / "bake-cpu-2core.json",
                   help="JSON path (default: runs/bake/bake-cpu-2core.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/bake-cpu-2core.json "
                   "(with --against: bake-vs-main-cpu-2core.json)")
    p.add_argument("--against", metavar="COMMIT", help="instead: time the same builds from this commit's src/ "
                   f"and the current one, as fresh processes (the main before the bake/ split: "
                   f"{bake_against.PREVIOUS_MAIN})")
    p.add_argument("--rounds", type=int, default=7, help="with --against: interleaved rounds (default 7)")
    p.add_argument("--photos", type=int, default=4000, help="with --against: PNGs in the image-folder rows")
    args = p.parse_args()
    if args.against:
        return bake_against.main(args.against, args.rounds, args.workdir, args.save, _machine(), args.train,
                                 args.test, args.photos)

    source = cifar10_once(args.workdir / f"cifar10-synthetic-{args.train}-{args.test}", args.train, args.test)

    rows = []
    for size in args.sizes:
        for w in args.workers:
            rows.append(time_prebake(source, args.workdir / "out", size, w))
            _print_row(rows[-1])
        # The seed's float32 output is 4x bigger (36 GB at 224 px for all 60,000), so above
        # 32 px both pipelines are compared on the test split: the same 10,000 images.
        split = None if size <= 32 else "test"
        if split:
            for w in args.workers:
                rows.append(time_prebake(source, args.workdir / "out", size, w, split))
                _print_row(rows[-1])
        rows.append(time_seed(source, args.workdir / "seed-out", size, split))
        _print_row(rows[-1])

    floor = None
    if 32 in args.sizes:  # the 32 px build is short enough to be bound by the disk: measure the floor
        small = next(r for r in rows if r["size"] == 32 and r["pipeline"] == "prebake")
        floor = time_durable_write(args.workdir / "floor", small["bytes"])
        print(f"disk floor: writing and fsyncing {small['bytes'] / 2**20:.0f} MiB takes {floor['seconds']:.2f} s")
    ratios = _ratios(rows, args.sizes, args.workers)
    for k, v in ratios.items():
        print(f"{k:<58} {v:6.2f}x")
    result = {"benchmark": "bake", "data": f"synthetic CIFAR-10 python-version batches, {args.train:,} train + "
              f"{args.test:,} test", "machine": _machine(), "device": "cpu", "rows": rows, "ratios": ratios,
              "disk_floor": floor,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for path in write_results(result, args.out, Path(__file__).parent / "results" / "bake-cpu-2core.json"
                              if args.save else None):
        print(f"wrote {path}")
    return 0


def _ratios(rows: list[dict], sizes: list[int], workers: list[int]) -> dict[str, float]:
    out = {}
    for size in sizes:
        by = {(r["pipeline"], r["split"], r["workers"]): r for r in rows if r["size"] == size}
        if 1 in workers and 2 in workers:
            out[f"{size}px, all {by[('prebake', 'all', 1)]['items']:,}: prebake 2 workers / 1 worker (items/s)"] = (
                by[("prebake", "all", 2)]["items_per_s"] / by[("prebake", "all", 1)]["items_per_s"])
        seed = next(r for r in rows if r["size"] == size and r["pipeline"] == SEED)
        for w in workers:
            mine = by[("prebake", seed["split"], w)]
            out[f"{size}px, {seed['split']}: prebake {w} worker(s) / seed loop (items/s)"] = (
                mine["items_per_s"] / seed["items_per_s"])
        mine = by[("prebake", seed["split"], workers[0])]
        out[f"{size}px: seed bytes / prebake bytes (same images)"] = seed["bytes"] / mine["bytes"]
    return out


def _print_row(r: dict) -> None:
    print(f"{r['pipeline']:<30} {r['split']:<4} {r['size']:>4}px  workers={r['workers']}  {r['items']:>7,} items "
          f"{r['seconds']:8.2f} s  {r['items_per_s']:>9,.0f} items/s  {r['bytes'] / 2**30:7.2f} GiB")


if __name__ == "__main__":
    sys.exit(main())
