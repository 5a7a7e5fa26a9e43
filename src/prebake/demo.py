"""``prebake demo``: bake CIFAR-10 at 32 and 224 px, verify both, then compare loading pipelines.

Without ``source`` it first writes a small SYNTHETIC dataset in the real
CIFAR-10 python-version format (pickled batches), so it runs offline, and small
inputs of the other kinds (an image folder, WAV recordings, a CSV table, arrays, a
dataset and a transform file) that the README's quickstart bakes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .bake.build import BuildOptions, ProgressFn, build_all, resolve_sources
from .cache.inventory import dir_bytes
from .cache.verify import verify
from .steps import Resize, compile_steps

DEMO_TRAIN, DEMO_TEST = 1000, 200


def run_demo(workdir: Path, source: Path | None = None, workers: int | None = None,
             progress: ProgressFn | None = None, bench_seconds: float = 1.0) -> dict[str, Any]:
    """Run the demo under ``workdir``; returns ``{"ok", "lines", "builds", ...}`` for the CLI to print."""
    lines: list[str] = []
    if source is None:
        from .synthetic import write_cifar10_python, write_quickstart_data

        source = workdir / "data" / "cifar-10-batches-py"
        if not (source / "batches.meta").exists():  # written last; keep an existing copy so re-runs are no-ops
            write_cifar10_python(workdir / "data", n_train=DEMO_TRAIN, n_test=DEMO_TEST, seed=0)
            write_quickstart_data(workdir / "data")
        lines.append(f"wrote a SYNTHETIC CIFAR-10 sample ({DEMO_TRAIN:,} train + {DEMO_TEST:,} test images, "
                     f"real python-version batch format) to {source}")
        lines.append(f"and small inputs for the README's quickstart in {workdir / 'data'}: photos/, hearts/, "
                     "labels.csv, arrays.npz, mydata.py, mytransforms.py, volumes.csv (NIfTI, with nibabel)")
    else:
        lines.append(f"using the CIFAR-10 download at {source}")
    sources = resolve_sources(source, kind="cifar")
    builds, ok = [], True
    for size in (32, 224):
        out = workdir / "cache" / f"cifar10-{size}"
        opts = BuildOptions(pipeline=compile_steps([] if size == 32 else [Resize(size)]), workers=workers)
        reports = build_all(sources, out, opts, progress)
        for r in reports:
            t0 = time.perf_counter()
            v = verify(r.out)
            ok &= v.ok
            image = np.load(r.out / "image.npy", mmap_mode="r", allow_pickle=False)
            entry: dict[str, Any] = {"size": size, "split": r.split, "out": str(r.out), "action": r.action,
                     "items": r.num_items,
                     "seconds": r.seconds, "bytes": dir_bytes(r.out), "verified": v.ok,
                     "verify_seconds": time.perf_counter() - t0, "image_shape": list(image.shape)}
            builds.append(entry)
            rate = f"{r.num_items / r.seconds:,.0f} items/s" if r.seconds > 0 else "-"
            lines.append(f"{size:>3} px {r.split:<5} {r.action:<10} {r.num_items:>6,} items  {r.seconds:6.2f} s "
                         f"({rate})  {entry['bytes'] / 2**20:8.1f} MB  image.npy {tuple(image.shape)}  "
                         f"verify {'ok' if v.ok else 'FAILED: ' + '; '.join(v.problems)}")
    small = sum(b["bytes"] for b in builds if b["size"] == 32)
    big = sum(b["bytes"] for b in builds if b["size"] == 224)
    lines.append(f"the 224 px cache is {big / max(small, 1):.0f}x the 32 px one on disk: bake at native size "
                 "and resize on the GPU at load time")
    image_file = workdir / "cache" / "cifar10-32" / "train" / "image.npy"
    lines.append(f"read it back with numpy alone: np.load('{image_file}', mmap_mode='r')")
    if all(b["action"] == "up to date" for b in builds):
        lines.append("every cache was already up to date (the fingerprints matched): nothing was baked again")
    else:
        lines.append("run it again and nothing is baked again (the fingerprints will match); the loader "
                     "comparison below runs each time")
    bench = None
    if bench_seconds > 0:
        from .measure.bench import BenchOptions, run_bench
        from .measure.bench.report import table

        lines.append("")
        # whole epochs in 5 interleaved rounds of >= 20 batches each: the figure is the median, with its spread
        res = run_bench(workdir / "cache" / "cifar10-32" / "train",
                        BenchOptions(batch_size=256, seconds=bench_seconds, rounds=5, min_batches=20,
                                     workdir=workdir / "bench"))
        lines += table(res)
        lines.append(f"measured on the small demo set ({res.items:,} items, {-(-res.items // 256)} batches an epoch, "
                     "each pipeline's epoch start-up included); benchmarks/loader.py compares epochs at 1k, 10k "
                     "and 50k items and runs the full-size comparison")
        bench = res.as_dict()
    return {"ok": ok, "lines": lines, "builds": builds, "source": str(source), "bench": bench}
