"""Load throughput: `prebake bench` at the issue's two settings, in one run, with ratios.

    python benchmarks/loader.py                 # 32 px batch 256 on 50,000 train images, 224 px batch 128
    benchmarks/.venv-peers/bin/python benchmarks/loader.py   # the same, with the peer libraries
    python benchmarks/loader.py --device cuda   # on a GPU: a 32 px cache resized to 224 on the device

Data: the synthetic CIFAR-10 of benchmarks/bake.py (python-version batches, 50,000 + 10,000),
baked to a 32 px cache and, for the CPU 224 px setting, to a 224 px cache ("built offline at
224", as the seeds did). Every pipeline produces normalised float32 N x 3 x S x S batches with
labels on the device (see prebake/bench/pipelines.py). Prints the tables and writes
benchmarks/results/loader-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import prebake
from prebake.measure.bench import BenchOptions, device_tag, run_bench
from prebake.measure.bench.report import table
from prebake.synthetic import cifar10_once

HERE = Path(__file__).parent


def _cache(data: Path, size: int) -> Path:
    source = cifar10_once(data, 50_000, 10_000)  # written on the first run only
    out = data.parent / "cache" / f"cifar10-{size}"
    prebake.build(source, out, image_size=None if size == 32 else size)  # a no-op when up to date
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--workdir", type=Path, default=HERE / "data")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    data = args.workdir / "cifar10-synthetic-50000-10000"
    small = _cache(data, 32)
    if args.device.startswith("cuda"):  # the GPU target: 32 px cached, resized to 224 on the device
        settings = [("32px-b256", small / "train", 32, 256), ("224px-b128-device-resize", small / "train", 224, 128)]
    else:  # the CPU target: 224 px built offline; the 10,000 test images keep the seed's file at 6 GB
        settings = [("32px-b256", small / "train", 32, 256), ("224px-b128", _cache(data, 224) / "test", 224, 128)]
    results = {}
    for name, cache, size, batch in settings:
        opts = BenchOptions(batch_size=batch, image_size=size, device=args.device, seconds=args.seconds,
                            limit=10_000 if size > 32 else None, workdir=args.workdir / "bench-tmp")
        res = run_bench(cache, opts, progress=lambda line: print(line, file=sys.stderr))
        print("\n".join(table(res)) + "\n")
        results[name] = res.as_dict()
    out = args.out or HERE / "results" / f"loader-{device_tag(args.device)}.json"
    text = json.dumps(results, indent=1).replace(str(HERE.parent.resolve()) + "/", "")  # repo-relative paths
    out.write_text(text + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
