"""Round time of one federated setting fed three ways (prebake, the seed's offline and online pipelines).

``python -m examples.federated.bench`` runs the same FedAvg rounds (the same loop as training:
run.py) once per ``--data_path`` on a synthetic CIFAR-10 in the real python-version format,
10 clients x ``--local_ep`` epochs x ``--samples_per_client`` samples, near-IID (alpha 1000)
so every client holds about the same count. The first ``--warmup`` rounds are not timed
(workers starting, page cache, allocator). It prints a table and writes ``runs/federated-bench/federated-<device>.json``
(``--out``; one entry per setting), and updates ``benchmarks/results/`` too with ``--save``; every figure in it
was measured in this run.

The issue's GPU setting: ``--vit tiny --image_size 224 --local_ep 5 --samples_per_client 500``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from prebake.measure.bench import device_tag, machine, write_results
from prebake.synthetic import write_cifar10_python

from .config import Config
from .run import run

PATHS = ("prebake", "offline", "online")

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"  # updated only with --save


def measure(args: argparse.Namespace, work: Path, data_path: str) -> dict[str, Any]:
    cfg = Config(alg=args.alg, vit=args.vit, cache=work / "cache", data=work / "cifar-10-batches-py",
                 image_size=args.image_size, epochs=args.warmup + args.rounds, num_users=args.clients, frac=1.0,
                 local_ep=args.local_ep, local_bs=args.local_bs, dirichlet_alpha=1000.0, min_partition_size=1,
                 seed=0, device=args.device, eval_every=10 ** 6, out=work / f"run-{data_path}",
                 data_path=data_path, workers=args.workers)
    timed = run(cfg)[args.warmup:]
    seconds = [r.seconds for r in timed]
    return {"round_seconds": seconds, "median_round_seconds": statistics.median(seconds),
            "data_wait_fraction": statistics.median(r.data_wait_fraction for r in timed),
            "transform_fraction": statistics.median(r.transform_fraction for r in timed),
            "samples_per_round": timed[0].samples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.federated.bench", description=__doc__.split("\n")[0])
    p.add_argument("--alg", choices=["fedavg", "fedlora"], default="fedavg")
    p.add_argument("--vit", default="tiny")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--samples_per_client", type=int, default=500)
    p.add_argument("--local_ep", type=int, default=5)
    p.add_argument("--local_bs", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2, help="timed rounds")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the seed pipelines")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--out", type=Path, default=Path("runs/federated-bench"),
                   help="the run's folder (default runs/federated-bench)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/federated-<device>.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="prebake-fedbench-") as tmp:
        work = Path(tmp)
        write_cifar10_python(work, n_train=args.clients * args.samples_per_client, n_test=100, seed=0)
        results = {path: measure(args, work, path) for path in args.paths.split(",")}
    report(args, results)
    return 0


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    base = results.get("prebake")
    print(f"{args.alg}, ViT-{args.vit} at {args.image_size} px, {args.clients} clients x {args.local_ep} local epochs "
          f"x {args.samples_per_client} samples, batch {args.local_bs}, device {device_tag(args.device)}")
    print(f"{'data path':<10} {'round s':>9} {'data wait':>10} {'transform':>10} {'vs prebake':>11}")
    ratios = {}
    for path, r in results.items():
        ratio = r["median_round_seconds"] / base["median_round_seconds"] if base else float("nan")
        ratios[f"{path}/prebake"] = ratio
        print(f"{path:<10} {r['median_round_seconds']:>9.2f} {100 * r['data_wait_fraction']:>9.1f}% "
              f"{100 * r['transform_fraction']:>9.1f}% {ratio:>10.2f}x")
    name = f"federated-{device_tag(args.device)}.json"
    setting = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    key = (f"{args.alg} vit-{args.vit} {args.image_size}px {args.clients}x{args.local_ep}ep"
           f"x{args.samples_per_client} bs{args.local_bs}")
    entry = {"setting": setting, "machine": machine(args.device), "results": results, "round_time_ratios": ratios}
    for dest in [args.out / name, *([RESULTS / name] if args.save else [])]:
        runs = json.loads(dest.read_text())["runs"] if dest.exists() else {}
        runs[key] = entry  # one entry per setting
        write_results({"device": device_tag(args.device), "runs": runs}, dest)
        print(f"wrote {dest}")


if __name__ == "__main__":
    raise SystemExit(main())
