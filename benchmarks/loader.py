"""Load throughput: what a Loader epoch costs against a DataLoader's, and `prebake bench` at two settings, in one run.

    python benchmarks/loader.py                 # epochs at 1k, 10k, 50k items, then the two bench settings
    python benchmarks/loader.py --epochs-only   # only the epoch comparison (about a minute on 2 cores)
    python benchmarks/loader.py --save          # also update benchmarks/results/loader-<device>.json
    benchmarks/.venv-peers/bin/python benchmarks/loader.py   # the same, with the peer libraries
    python benchmarks/loader.py --device cuda   # on a GPU: a 32 px cache resized to 224 on the device

Epochs: caches of 1,000, 10,000 and 50,000 CIFAR-sized items (uint8 3x32x32 and a label), each epoch
normalised to float32 on the device in the loop body, as the demo does. prebake.Loader with its defaults
against a DataLoader over ``prebake.open`` handed whole batches (a BatchSampler: one gather per
column) with 0, 2 and 4 workers (persistent). Every contender's first epoch is checked to hold every
item once, each image normalised as expected; then whole epochs are timed in interleaved rounds
(prebake/measure/bench/timing.py) and the ratios are the Loader's samples/s over each DataLoader's,
with the range over the rounds.

Bench: the synthetic CIFAR-10 of benchmarks/bake.py (python-version batches, 50,000 + 10,000), baked
to a 32 px cache and, for the CPU 224 px setting, to a 224 px cache ("built offline at 224", as the
seeds did); see prebake/measure/bench/images.py.

Prints the tables and writes runs/loader/loader-<device>.json; benchmarks/results/ only with --save.
"""

from __future__ import annotations

import argparse
import gc
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prebake
from prebake.measure.bench import (
    BenchOptions,
    device_tag,
    machine,
    run_bench,
    write_results,
)
from prebake.measure.bench.pipelines import DeviceNormalize
from prebake.measure.bench.report import table
from prebake.measure.bench.timing import Timed, time_rounds
from prebake.steps import Resize
from prebake.synthetic import cifar10_once

HERE = Path(__file__).parent
ROOT = HERE.parent
SIZES = (1_000, 10_000, 50_000)
BATCH = 256


def _cache(data: Path, size: int) -> Path:
    source = cifar10_once(data, 50_000, 10_000)  # written on the first run only
    out = data.parent / "cache" / f"cifar10-{size}"
    prebake.build(source, out, [] if size == 32 else [Resize(size)])  # a no-op when up to date
    return out


def _epoch_cache(data: Path, n: int) -> prebake.Cache:
    path = data / f"epochs-{n}"
    if (path / "manifest.json").exists():
        return prebake.open(path)
    rng = np.random.default_rng(n)
    return prebake.write_arrays(path, {"image": rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                                       "label": np.arange(n, dtype=np.int64)})  # the label names the item


def _contenders(cache: prebake.Cache, device: torch.device) -> list[Timed]:
    norm = DeviceNormalize(32, device)
    loader = prebake.Loader(cache, BATCH, device=device)

    def prebake_epoch() -> Any:
        for b in loader:
            yield norm(b["image"]), b["label"]

    out = [Timed("prebake.Loader (defaults)", prebake_epoch, lambda b: len(b[1]))]
    for workers in (0, 2, 4):
        sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(len(cache))), BATCH, False)
        dl = torch.utils.data.DataLoader(cache, batch_size=None, sampler=sampler, num_workers=workers,
                                         persistent_workers=workers > 0, pin_memory=device.type == "cuda")

        def epoch(dl: Any = dl) -> Any:
            for b in dl:
                yield norm(b["image"].to(device, non_blocking=True)), b["label"].to(device, non_blocking=True)

        out.append(Timed(f"DataLoader x{workers} over prebake.open, whole batches", epoch, lambda b: len(b[1])))
    return out


def _check_epoch(pipe: Timed, want: torch.Tensor) -> None:
    """One epoch holds every item once, each normalised as expected (a per-item sum, in float64)."""
    sums = torch.full((len(want),), float("nan"), dtype=torch.float64)
    seen = torch.zeros(len(want), dtype=torch.int64)
    for x, y in pipe.epoch():
        y = y.cpu()
        sums[y] = x.double().sum(dim=(1, 2, 3)).cpu()
        seen[y] += 1
    if not bool((seen == 1).all()) or not torch.allclose(sums, want, rtol=1e-6, atol=1e-3):
        raise RuntimeError(f"{pipe.name}: an epoch did not give every item once with its own values")


def epochs(data: Path, device: torch.device, seconds: float, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for n in SIZES:
        cache = _epoch_cache(data, n)
        images = torch.from_numpy(np.array(cache.column("image"))).to(device)
        want = DeviceNormalize(32, device)(images).double().sum(dim=(1, 2, 3)).cpu()
        pipes = _contenders(cache, device)
        for pipe in pipes:
            _check_epoch(pipe, want)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        time_rounds(pipes, seconds, rounds, min_batches=1, warmup=1, sync=sync,
                    progress=lambda line, n=n: print(f"{n:,} items: {line}", file=sys.stderr))
        mine = pipes[0]
        for p in pipes:
            pairs = [a / b for a, b in zip(mine.per_round, p.per_round)]
            rows.append({"items": n, "pipeline": p.name, "samples_per_s": p.samples_per_s,
                         "epoch_ms": 1e3 * n / p.samples_per_s, "samples_per_s_per_round": p.per_round,
                         "loader_ratio": mine.samples_per_s / p.samples_per_s,
                         "loader_ratio_min": min(pairs), "loader_ratio_max": max(pairs)})
        del pipes
        gc.collect()  # persistent DataLoader workers exit before the next size
    return rows


def epochs_table(rows: list[dict[str, Any]]) -> str:
    lines = [(f"{'items':>7}  {'pipeline':<44} {'epoch ms':>9} {'samples/s':>11}  Loader's samples/s over this "
              "(min-max of rounds)")]
    for r in rows:
        lines.append(f"{r['items']:>7,}  {r['pipeline']:<44} {r['epoch_ms']:>9.2f} {r['samples_per_s']:>11,.0f}  "
                     f"{r['loader_ratio']:.2f}x ({r['loader_ratio_min']:.2f}-{r['loader_ratio_max']:.2f})")
    return "\n".join(lines)


def bench(data: Path, device: str, seconds: float, workdir: Path) -> dict[str, Any]:
    small = _cache(data, 32)
    if device.startswith("cuda"):  # the GPU target: 32 px cached, resized to 224 on the device
        settings = [("32px-b256", small / "train", 32, 256), ("224px-b128-device-resize", small / "train", 224, 128)]
    else:  # the CPU target: 224 px built offline; 2,000 test images keep each round's epochs short
        settings = [("32px-b256", small / "train", 32, 256), ("224px-b128", _cache(data, 224) / "test", 224, 128)]
    results = {}
    for name, cache, size, batch in settings:
        opts = BenchOptions(batch_size=batch, image_size=size, device=device, seconds=seconds,
                            limit=2_000 if size > 32 else None, workdir=workdir / "bench-tmp")
        res = run_bench(cache, opts, progress=lambda line: print(line, file=sys.stderr))
        print("\n".join(table(res)) + "\n")
        results[name] = res.as_dict()
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per pipeline and setting")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the epoch comparison")
    p.add_argument("--epochs-only", action="store_true", help="only the epoch comparison at 1k, 10k, 50k items")
    p.add_argument("--workdir", type=Path, default=HERE / "data", help="data and caches (kept between runs)")
    p.add_argument("--out", type=Path, help="JSON path (default: runs/loader/loader-<device>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/loader-<device>.json")
    args = p.parse_args()
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # 4 workers on a 2-core machine
    device = torch.device(args.device)
    record: dict[str, Any] = {"machine": machine(device), "epochs": epochs(args.workdir, device, args.seconds / 2,
                                                                             args.rounds)}
    print(epochs_table(record["epochs"]) + "\n")
    if not args.epochs_only:
        record["bench"] = bench(args.workdir / "cifar10-synthetic-50000-10000", args.device, args.seconds,
                                args.workdir)
    name = f"loader-{device_tag(device)}.json"
    out = args.out or ROOT / "runs" / "loader" / name
    for path in write_results(record, out, HERE / "results" / name if args.save else None, root=ROOT):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
