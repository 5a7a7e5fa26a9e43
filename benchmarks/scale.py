"""Scaling out: the 224 px CIFAR bake with the fork pool vs the Ray executor, on the same machine.

    python benchmarks/scale.py                        # 20,000 + 4,000 images, 2 CPUs (a few minutes)
    python benchmarks/scale.py --train 4000 --test 1000 # a quick look

One process, one run of each, same data, in this order (forking after Ray has started is
not safe, so the fork pool goes first):

1. the fork pool, ``workers=2``;
2. a local Ray started as prebake starts it (``ray.init(num_cpus=2)``, workers at nice 0,
   timed on its own), then the Ray executor on that fresh session (its workers import
   prebake during the build: "cold");
3. the Ray executor again on the same session ("warm", as on a long-lived cluster);
4. a new session with Ray's own defaults, whose workers run at nice 15 (cold): on a shared
   machine other processes then go first.

Every Ray cache must have the same column checksums as the fork pool's (checked; the
script fails otherwise). The Ray overhead per chunk is measured two ways: a 32 px bake
of the same images in 64-row chunks (fork vs warm Ray: the extra seconds over the
number of chunks), and the round trip of a task that does nothing, through the same
executor. The GPU half of the benchmark (a Stage on 1 GPU through a Ray actor vs the
local stage) needs a GPU and is written as not measured.

Prints a table and writes JSON to benchmarks/results/scale-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import prebake
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.measure.bench import write_results
from prebake.steps import Resize, compile_steps
from prebake.synthetic import cifar10_once


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "prebake": prebake.__version__, "numpy": np.__version__, "torch": torch.__version__,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def checksums(out: Path) -> dict[str, str]:
    """``{split/file: xxh3_64}`` of every column file of every cache under ``out``."""
    found = {}
    for manifest in sorted(out.rglob("manifest.json")):
        split = manifest.parent.relative_to(out).as_posix()
        for c in json.loads(manifest.read_text())["columns"].values():
            found.update({f"{split}/{f}": e["xxh3_64"] for f, e in c["files"].items()})
    return found


def bake(source: Path, out: Path, label: str, size: int, **options) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    sources = resolve_sources(source, kind="cifar")
    opts = BuildOptions(compile_steps([] if size == 32 else [Resize(size)]), **options)
    t0 = time.perf_counter()
    reports = build_all(sources, out, opts)
    seconds = time.perf_counter() - t0
    items = sum(r.num_items for r in reports)
    row_bytes = 3 * size * size + 8  # image and label
    plan_rows = options.get("chunk_rows") or max(32, min(1024, (16 << 20) // row_bytes))
    chunks = sum(-(-r.num_items // plan_rows) for r in reports)
    row = {"pipeline": label, "size": size, "items": items, "chunks": chunks, "seconds": seconds,
           "items_per_s": items / seconds, "bytes": sum(f.stat().st_size for f in out.rglob("*.npy")),
           "checksums": checksums(out)}
    shutil.rmtree(out)
    print(f"{label:<40} {size:>4}px {items:>7,} items {chunks:>5} chunks {seconds:8.2f} s "
          f"{row['items_per_s']:>8,.0f} items/s")
    return row


def noop_round_trip(tasks: int) -> dict:
    """Seconds per task of a task that does nothing, through the Ray executor (2 in flight)."""
    from prebake.bake.ray_executor import ray_executor

    with ray_executor(2, None, _nothing, ()) as pool:
        list(pool.imap_unordered(_nothing, range(20)))  # warm
        t0 = time.perf_counter()
        done = sum(1 for _ in pool.imap_unordered(_nothing, range(tasks)))
        seconds = time.perf_counter() - t0
    return {"tasks": done, "seconds": seconds, "ms_per_task": 1000 * seconds / done}


def _nothing(*_: object) -> None:
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=20_000)  # 3.4 GiB of 224 px rows, written and deleted per run
    p.add_argument("--test", type=int, default=4_000)
    p.add_argument("--cpus", type=int, default=2, help="fork workers, and the local Ray's CPUs")
    p.add_argument("--workdir", type=Path, default=Path(__file__).parent / "data")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parents[1] / "runs" / "scale" / "scale-cpu-2core.json",
                   help="JSON path (default: runs/scale/scale-cpu-2core.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/scale-cpu-2core.json")
    args = p.parse_args()

    source = cifar10_once(args.workdir / f"cifar10-synthetic-{args.train}-{args.test}", args.train, args.test)
    out = args.workdir / "scale-out"
    machine = _machine()

    rows = [bake(source, out, f"fork pool, {args.cpus} workers", 224, workers=args.cpus),
            bake(source, out, f"fork pool, {args.cpus} workers", 32, workers=args.cpus, chunk_rows=64)]
    import ray

    from prebake.bake.ray_executor import connect

    t0 = time.perf_counter()
    connect(None, args.cpus)  # the local Ray that prebake starts: ray.init(num_cpus=...), workers at nice 0
    ray_init_s = time.perf_counter() - t0
    print(f"ray.init(num_cpus={args.cpus}), as prebake starts it: {ray_init_s:.2f} s")
    rows += [bake(source, out, f"ray, {args.cpus} CPUs, cold session", 224, executor="ray"),
             bake(source, out, f"ray, {args.cpus} CPUs, warm session", 224, executor="ray"),
             bake(source, out, f"ray, {args.cpus} CPUs, warm session", 32, executor="ray", chunk_rows=64)]
    noop = noop_round_trip(400)
    print(f"a task that does nothing, through the executor: {noop['ms_per_task']:.2f} ms per task")
    ray.shutdown()
    ray.init(num_cpus=args.cpus, include_dashboard=False)  # Ray's own defaults: workers at nice 15
    rows.append(bake(source, out, f"ray, {args.cpus} CPUs, cold, workers at nice 15", 224, executor="ray"))
    ray.shutdown()

    by = {(r["pipeline"], r["size"]): r for r in rows}
    fork224, fork32 = by[(f"fork pool, {args.cpus} workers", 224)], by[(f"fork pool, {args.cpus} workers", 32)]
    for r in rows:
        ref = fork224 if r["size"] == 224 else fork32
        if r["checksums"] != ref["checksums"]:
            raise SystemExit(f"{r['pipeline']} at {r['size']} px wrote other bytes than the fork pool")
        r["same_bytes_as_fork_pool"] = True
    for r in rows:
        r["column_files_checked"] = len(r.pop("checksums"))
    cold, warm = by[(f"ray, {args.cpus} CPUs, cold session", 224)], by[(f"ray, {args.cpus} CPUs, warm session", 224)]
    warm32 = by[(f"ray, {args.cpus} CPUs, warm session", 32)]
    niced = by[(f"ray, {args.cpus} CPUs, cold, workers at nice 15", 224)]
    ratios = {
        "224px: ray (cold session) / fork pool, items/s": cold["items_per_s"] / fork224["items_per_s"],
        "224px: ray (warm session) / fork pool, items/s": warm["items_per_s"] / fork224["items_per_s"],
        "224px: ray (cold, Ray's default nice 15) / fork pool, items/s": niced["items_per_s"] / fork224["items_per_s"],
    }
    overhead = {
        "ms_per_chunk_32px": 1000 * (warm32["seconds"] - fork32["seconds"]) / warm32["chunks"],
        "ms_per_chunk_224px_cold": 1000 * (cold["seconds"] - fork224["seconds"]) / cold["chunks"],
        "ms_per_chunk_224px_warm": 1000 * (warm["seconds"] - fork224["seconds"]) / warm["chunks"],
        "noop_task": noop,
        "ray_init_s": ray_init_s,
    }
    for k, v in ratios.items():
        print(f"{k:<62} {v:6.2f}x  (target >= 0.70x)")
    print(f"ray overhead per chunk: {overhead['ms_per_chunk_32px']:.1f} ms (32 px, 64-row chunks), "
          f"{overhead['ms_per_chunk_224px_warm']:.1f} ms (224 px, warm), "
          f"{overhead['ms_per_chunk_224px_cold']:.1f} ms (224 px, cold)")
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {"benchmark": "scale", "data": f"synthetic CIFAR-10 python-version batches, {args.train:,} train + "
              f"{args.test:,} test", "machine": machine, "device": "cpu", "rows": rows, "ratios": ratios,
              "ray_overhead": overhead, "ray_version": ray.__version__,
              "gpu_stage_through_ray_actor_vs_local": "not measured (no GPU on this machine)",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for path in write_results(result, args.out, Path(__file__).parent / "results" / "scale-cpu-2core.json"
                              if args.save else None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
