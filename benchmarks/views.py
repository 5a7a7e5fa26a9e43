"""Views: windows and elements of ragged columns, prebake.Loader against the seeds' own designs, in one run.

    python benchmarks/views.py            # about 2 minutes on a 2-core CPU; ~2 GB of RAM, 0.7 GB in the temp dir
    python benchmarks/views.py --quick    # tiny data, a few seconds: checks that everything runs
    python benchmarks/views.py --device cuda   # on a GPU: adds preload="device" windows

Windows (the talking-head workload's clips): 100-400 frames per clip, 3x64x64 uint8 frames and 64-dim float32
motion latents per frame; windows of L=16 frames with the 16 frames before each as context (every window
whose context exists, stride 1). Every pipeline yields, per window, frames and frames_context
(16x3x64x64 uint8), latents and latents_context (16x64 float32) and the clip's label.
- prebake: ``Loader(Windows(cache, "frames", 16, context=16, require_context=True))``, from the memory maps
  and with ``preload="ram"``;
- the talking-head workload's optimised design: every clip preloaded in a list of dicts of tensors,
  ``__getitem__`` slices one window, default collate, ``DataLoader(num_workers=4)``;
- a per-item Dataset over the prebake memory maps (the same files), default collate, 4 workers.

Elements (the heart-sound workload's recordings): 40,000 cardiac cycles of 2,500 int16 samples, in recordings of 8-32
cycles, with a label per recording. ``Loader(Elements(cache, "cycles"))`` against a per-item Dataset over
the same memory maps with a DataLoader (4 workers).

The pipelines of a setting are first checked to give the same tensors for the same windows (their first
batches, in one shared order), then timed in interleaved rounds (median of the rounds), each for
``--seconds``, in the steady state, with the loop body doing nothing. Prints a table and writes
benchmarks/results/views-<device>.json.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import prebake
from prebake.measure.bench import device_tag, machine, memcpy_gbps, write_results

HERE = Path(__file__).parent
L = K = 16  # window length, context rows
WINDOW_KEYS = ("frames", "frames_context", "latents", "latents_context", "label")
ELEMENT_KEYS = ("cycles", "label")


# -- data -----------------------------------------------------------------------------------------

def clips(n: int, rng: np.random.Generator) -> dict[str, Any]:
    lengths = rng.integers(100, 401, n)
    return {"frames": [rng.integers(0, 256, (k, 3, 64, 64), dtype=np.uint8) for k in lengths],
            "latents": [rng.standard_normal((k, 64), dtype=np.float32) for k in lengths],
            "label": np.arange(n, dtype=np.int64) % 7}


def recordings(cycles: int, rng: np.random.Generator) -> dict[str, Any]:
    per = []
    while sum(per) < cycles:
        per.append(int(rng.integers(8, 33)))
    per[-1] -= sum(per) - cycles
    return {"cycles": [rng.integers(-2**15, 2**15, (k, 2500), dtype=np.int16) for k in per],
            "label": np.arange(len(per), dtype=np.int64) % 2}


# -- the baselines ----------------------------------------------------------------------------------

class SeedWindows(Dataset):
    """The talking-head workload's optimised FLOAT dataset: clips preloaded as dicts of tensors;
    ``__getitem__`` slices."""

    def __init__(self, data: dict[str, Any], item: np.ndarray, start: np.ndarray):
        clips = zip(data["frames"], data["latents"], data["label"])
        self.preprocessed_data = [{"video_frames": torch.from_numpy(f), "motion_latents": torch.from_numpy(z),
                                   "label": torch.tensor(y)} for f, z, y in clips]
        self.item, self.start = item, start

    def __len__(self) -> int:
        return len(self.item)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        data_item = self.preprocessed_data[self.item[idx]]
        s = int(self.start[idx])
        frames, latents = data_item["video_frames"], data_item["motion_latents"]
        return {"frames": frames[s:s + L], "frames_context": frames[s - K:s],
                "latents": latents[s:s + L], "latents_context": latents[s - K:s],
                "label": data_item["label"]}


class MemmapWindows(Dataset):
    """A per-item Dataset over the prebake cache's memory maps: one window read per ``__getitem__``."""

    def __init__(self, cache: prebake.Cache, view: prebake.Windows):
        self.cache, self.item, self.start, self.offsets = cache, view.item, view.start, view.offsets

    def __len__(self) -> int:
        return len(self.item)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        r = int(self.offsets[self.item[idx]] + self.start[idx])
        frames, latents = self.cache.column("frames").values, self.cache.column("latents").values
        return {"frames": torch.from_numpy(np.array(frames[r:r + L])),
                "frames_context": torch.from_numpy(np.array(frames[r - K:r])),
                "latents": torch.from_numpy(np.array(latents[r:r + L])),
                "latents_context": torch.from_numpy(np.array(latents[r - K:r])),
                "label": torch.tensor(int(self.cache.column("label")[self.item[idx]]))}


class MemmapCycles(Dataset):
    """A per-item Dataset over the prebake cache's memory maps: one cardiac cycle per ``__getitem__``."""

    def __init__(self, cache: prebake.Cache, view: prebake.Elements):
        self.cache, self.item, self.row = cache, view.item, view.row

    def __len__(self) -> int:
        return len(self.item)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        return {"cycles": torch.from_numpy(np.array(self.cache.column("cycles").values[self.row[idx]])),
                "label": torch.tensor(int(self.cache.column("label")[self.item[idx]]))}


# -- timing -----------------------------------------------------------------------------------------

@dataclass
class Pipeline:
    name: str
    make: Callable[[np.ndarray], Iterator[dict[str, Any]]]  # an endless iterator over batches, first in this order
    samples_per_s: list[float] = field(default_factory=list)


def dataloader(dataset: Dataset, batch: int, device: torch.device,
               workers: int = 4) -> Callable[[np.ndarray], Iterator]:
    def make(order: np.ndarray) -> Iterator[dict[str, Any]]:
        loader = DataLoader(dataset, batch_size=batch, sampler=order.tolist(), num_workers=workers,
                            persistent_workers=True, prefetch_factor=2, pin_memory=device.type == "cuda")
        while True:
            for b in loader:
                yield {k: v.to(device, non_blocking=True) for k, v in b.items()}
    return make


def loader(view: Any, batch: int, device: torch.device, **kwargs: Any) -> Callable[[np.ndarray], Iterator]:
    def make(order: np.ndarray) -> Iterator[dict[str, Any]]:
        ld = prebake.Loader(view, batch, indices=order, shuffle=False, device=device, **kwargs)  # first pass: `order`
        while True:
            yield from ld
    return make


def check_same(pipes: list[Pipeline], order: np.ndarray, keys: tuple[str, ...], batches: int) -> int:
    """The first ``batches`` batches of every pipeline, in one order, hold the same tensors as the first one's.

    Returns the bytes of ``keys`` per sample (what every pipeline delivers)."""
    want: list[dict[str, Any]] | None = None
    for p in pipes:
        it = p.make(order)
        got = [next(it) for _ in range(batches)]
        it.close()
        if want is None:
            want = got
            continue
        for k, (a, b) in enumerate(zip(want, got)):
            for key in keys:
                if not torch.equal(a[key].cpu(), b[key].cpu()):
                    raise RuntimeError(f"{p.name}: batch {k} column {key!r} differs from {pipes[0].name}'s")
        del got
        gc.collect()
    assert want is not None
    return sum(want[0][key].nbytes for key in keys) // len(want[0]["label"])


def time_rounds(pipes: list[Pipeline], order: np.ndarray, seconds: float, rounds: int, warmup: int,
                sync: Callable) -> None:
    """Every pipeline for ``seconds`` per round, interleaved, so drift of a shared machine hits them alike."""
    iters = [p.make(order) for p in pipes]
    try:
        for it in iters:
            for _ in range(warmup):
                next(it)
        for _ in range(rounds):
            for p, it in zip(pipes, iters):
                sync()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    n += len(next(it)["label"])
                sync()
                p.samples_per_s.append(n / (time.perf_counter() - t0))
    finally:
        for it in iters:
            it.close()
        gc.collect()


# -- settings -------------------------------------------------------------------------------------

def windows_setting(cache: prebake.Cache, data: dict[str, Any], batch: int,
                    device: torch.device) -> tuple[int, list[Pipeline]]:
    view = prebake.Windows(cache, "frames", L, context=K, require_context=True, columns=["frames", "latents", "label"])
    pipes = [Pipeline("prebake.Loader(Windows), memmap, 2 threads", loader(view, batch, device)),
             Pipeline("prebake.Loader(Windows), preload='ram'", loader(view, batch, device, preload="ram"))]
    if device.type == "cuda":
        pipes.append(Pipeline("prebake.Loader(Windows), preload='device'",
                              loader(view, batch, device, preload="device")))
    pipes += [Pipeline("talking-head design: clips preloaded as tensors, slice per item, 4 workers",
                       dataloader(SeedWindows(data, view.item, view.start), batch, device)),
              Pipeline("per-item Dataset over the prebake memmaps, 4 workers",
                       dataloader(MemmapWindows(cache, view), batch, device))]
    return len(view), pipes


def elements_setting(cache: prebake.Cache, batch: int, device: torch.device) -> tuple[int, list[Pipeline]]:
    view = prebake.Elements(cache, "cycles", columns=["cycles", "label"])
    pipes = [Pipeline("prebake.Loader(Elements), memmap, 2 threads", loader(view, batch, device)),
             Pipeline("prebake.Loader(Elements), preload='ram'", loader(view, batch, device, preload="ram"))]
    if device.type == "cuda":
        pipes.append(Pipeline("prebake.Loader(Elements), preload='device'",
                              loader(view, batch, device, preload="device")))
    pipes.append(Pipeline("per-item Dataset over the prebake memmaps, 4 workers",
                          dataloader(MemmapCycles(cache, view), batch, device)))
    return len(view), pipes


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="prebake-views-", dir=args.workdir))
    results: dict[str, Any] = {"quick": args.quick, "seconds": args.seconds, "rounds": args.rounds,
                               "machine": machine(device), "memcpy_gbps": memcpy_gbps(),
                               "load_average_before": os.getloadavg(), "settings": []}
    try:
        data = clips(args.clips, rng)
        t0 = time.perf_counter()
        clip_cache = prebake.write_arrays(work / "clips", data)
        print(f"wrote {args.clips} clips ({sum(len(f) for f in data['frames']):,} frames) in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        cyc = recordings(args.cycles, rng)
        cycle_cache = prebake.write_arrays(work / "cycles", cyc)
        settings = [(f"windows, batch {b}", lambda b=b: windows_setting(clip_cache, data, b, device), WINDOW_KEYS, b)
                    for b in args.window_batches]
        settings += [(f"elements, batch {b}", lambda b=b: elements_setting(cycle_cache, b, device), ELEMENT_KEYS, b)
                     for b in args.element_batches]
        for name, make, keys, batch in settings:
            view_len, pipes = make()
            order = np.random.default_rng(1).permutation(view_len)
            sample_bytes = check_same(pipes, order, keys, batches=3)
            print(f"{name}: {view_len:,} items, same tensors from all {len(pipes)} pipelines; timing", file=sys.stderr)
            time_rounds(pipes, order, args.seconds, args.rounds, args.warmup, sync)
            results["settings"].append(_rows(name, batch, view_len, sample_bytes, pipes))
            del pipes
            gc.collect()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()  # 1, 5, 15 min: how busy the (shared) machine was
    return results


def _rows(name: str, batch: int, items: int, sample_bytes: int, pipes: list[Pipeline]) -> dict[str, Any]:
    rows = [{"pipeline": p.name, "samples_per_s": statistics.median(p.samples_per_s),
             "samples_per_s_per_round": p.samples_per_s} for p in pipes]
    first = rows[0]["samples_per_s"]
    for r in rows:
        r["prebake_ratio"] = first / r["samples_per_s"]  # the memmap Loader's samples/s over this row's
        per_round = [a / b for a, b in zip(rows[0]["samples_per_s_per_round"], r["samples_per_s_per_round"])]
        r["prebake_ratio_min"], r["prebake_ratio_max"] = min(per_round), max(per_round)  # round by round
        r["output_gb_per_s"] = r["samples_per_s"] * sample_bytes / 1e9
    return {"setting": name, "batch": batch, "items": items, "bytes_per_sample": sample_bytes, "rows": rows}


def table(results: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in results["load_average_before"] + results["load_average_after"])
    lines = [f"memcpy bandwidth of this machine: {results['memcpy_gbps']:.1f} GB/s; load average (1, 5, 15 min) "
             f"before and after: {load}", "",
             "| setting | pipeline | samples/s | output GB/s | prebake memmap Loader / row (min-max of rounds) |",
             "|---|---|---:|---:|---:|"]
    for s in results["settings"]:
        for r in s["rows"]:
            lines.append(f"| {s['setting']} | {r['pipeline']} | {r['samples_per_s']:,.0f} | "
                         f"{r['output_gb_per_s']:.2f} | {r['prebake_ratio']:.2f}x "
                         f"({r['prebake_ratio_min']:.1f}-{r['prebake_ratio_max']:.1f}) |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny data and short timings: checks that everything runs")
    p.add_argument("--seconds", type=float, default=3.0, help="per pipeline and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=5, help="batches per pipeline before timing")
    p.add_argument("--clips", type=int, default=150)
    p.add_argument("--cycles", type=int, default=40_000)
    p.add_argument("--window-batches", type=int, nargs="+", default=[8, 64], help="8: the talking-head --batch_size")
    p.add_argument("--element-batches", type=int, nargs="+", default=[64],
                   help="64: the heart-sound workload's batch size")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the caches are written (default: the system temp dir)")
    p.add_argument("--out", type=Path, help="JSON path (default: runs/views/views-<device>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/views-<device>.json")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.warmup, args.clips, args.cycles = 0.2, 1, 1, 6, 2_000
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # 4 workers on a 2-core machine
    results = run(args)
    print(table(results))
    name = f"views-{device_tag(args.device)}.json"
    for path in write_results(results, args.out or HERE.parent / "runs" / "views" / name,
                              HERE / "results" / name if args.save else None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
