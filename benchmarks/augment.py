"""Augment throughput: prebake.augment against Kornia, torch-audiomentations and the seeds' per-sample loops.

    python benchmarks/augment.py                        # CPU, the issue's sizes
    python benchmarks/augment.py --quick                # tiny sizes: a smoke run, not a measurement
    python benchmarks/augment.py --device cuda          # GPU; signals also at 1024 x 4000
    python benchmarks/augment.py --retain-freed-memory  # every pipeline without page faults on fresh tensors
    python benchmarks/augment.py --suite signals        # one suite, once, in this process

Three comparisons, each on the same data with the same output, in one process:

1. images, 512 x 3 x 32 x 32: RandomHorizontalFlip + RandomCrop(32, padding=4) + Normalize,
   against Kornia's AugmentationSequential of the same ops and a per-sample loop of torch ops;
2. the federated ViT workload's input (uint8 32 px -> Resize 224 -> flip -> Normalize),
   against per-sample PIL, the seeds' online path;
3. the heart-sound workload's six signal ops on 64 x 1 x 4000, against torch-audiomentations (Shift + Gain +
   AddColoredNoise) and the seed's per-sample numpy/scipy pipeline in a DataLoader loop.

Peers that do not import are skipped with the reason. torch-audiomentations imports
torchaudio, which has no build for the pinned CPU torch; the three transforms used here
never call it, so a stub module stands in for the import (printed when used).

Prints a table and writes JSON to benchmarks/results/augment-<device tag>.json.
Figures are samples (images or signals) per second: the median of timed calls, whose pipelines
are timed in interleaved rounds, then the median over ``--repeat`` runs of the whole set; each
ratio also shows its min and max over the repeats. Every suite of every repeat runs in a fresh
Python process: glibc's mmap and trim thresholds adapt to what a process has allocated before,
so a suite run after another inherits fewer (or more) page faults than a user's own process has.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import prebake.augment as A
from prebake.measure.bench import device_tag, machine, write_results

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10 statistics
VIT_MEAN, VIT_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the federated ViT workload's Normalize
SAMPLE_RATE = 5000  # the heart-sound workload: 5 kHz, 4000-sample cycles
# glibc settings that keep freed memory in the process: no mmap'd blocks, never trim the heap
RETAIN = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2 ** 36)}
TARGETS = {"kornia": 4.0, "torch-audiomentations": 5.0, "heart-sound scipy": 20.0}  # CPU targets from issue 4


@dataclass
class Pipeline:
    name: str
    fn: Callable[[], Any]
    note: str = ""
    max_calls: int = 50


def measure(suite: str, batch: tuple[int, ...], pipelines: list[Pipeline], device: torch.device,
            min_seconds: float) -> list[dict[str, Any]]:
    """Time a suite's pipelines in rounds, one call of each per round, and report the median per call.

    Each pipeline is warmed up with two calls first. Rounds go on until every
    pipeline has at least 3 calls and ``min_seconds`` of them (or ``max_calls``).
    Interleaving exposes all pipelines to the same drift of this machine (other
    load, allocator and cache state) instead of giving each its own stretch of time.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for p in pipelines:
        p.fn()
        p.fn()
    sync()
    runs: dict[str, list[float]] = {p.name: [] for p in pipelines}

    def wanted(p: Pipeline) -> bool:
        done = runs[p.name]
        return len(done) < 3 or (sum(done) < min_seconds and len(done) < p.max_calls)

    while active := [p for p in pipelines if wanted(p)]:
        for p in active:
            t0 = time.perf_counter()
            p.fn()
            sync()
            runs[p.name].append(time.perf_counter() - t0)
    return [row(suite, p.name, batch, runs[p.name], p.note) for p in pipelines]


def row(suite: str, pipeline: str, batch: tuple[int, ...], runs: list[float], note: str = "") -> dict[str, Any]:
    seconds = statistics.median(runs)
    return {"suite": suite, "pipeline": pipeline, "batch": list(batch), "calls": len(runs), "seconds": seconds,
            "samples_per_s": batch[0] / seconds, "note": note}


# ---------------------------------------------------------------- peers (optional imports)

def import_kornia(say: Callable[[str], None] = print) -> Any:
    try:
        import kornia.augmentation as K
    except Exception as exc:  # any import failure means "skip this peer"
        say(f"skip kornia: {type(exc).__name__}: {exc} (pip install kornia, or run benchmarks/setup-peers.sh)")
        return None
    return K


def import_torch_audiomentations(say: Callable[[str], None] = print) -> Any:
    if importlib.util.find_spec("torch_audiomentations") is None:
        say("skip torch-audiomentations: not installed (run benchmarks/setup-peers.sh)")
        return None
    if importlib.util.find_spec("torchaudio") is None:
        say("torch-audiomentations: torchaudio is missing; a stub module stands in for the import "
            "(Shift, Gain and AddColoredNoise never call torchaudio)")
        stub = types.ModuleType("torchaudio")
        stub.__path__ = []  # a package, so "import torchaudio.transforms" resolves
        stub.__version__ = "0.0.0+stub"
        for sub in ("transforms", "functional"):
            setattr(stub, sub, types.ModuleType(f"torchaudio.{sub}"))
            sys.modules[f"torchaudio.{sub}"] = getattr(stub, sub)
        sys.modules["torchaudio"] = stub
    try:
        import torch_audiomentations as TA
    except Exception as exc:
        say(f"skip torch-audiomentations: {type(exc).__name__}: {exc} (run benchmarks/setup-peers.sh)")
        return None
    return TA


# ---------------------------------------------------------------- images: flip + crop + normalize

def loop_flip_crop_normalize(images: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """A Dataset's per-sample torch transforms (ToTensor, flip, RandomCrop(32, 4), Normalize), then collate."""
    mean = torch.tensor(MEAN, device=images.device)[:, None, None]
    std = torch.tensor(STD, device=images.device)[:, None, None]
    out = []
    for img in images:
        x = img.float() / 255
        if rng.random() < 0.5:
            x = x.flip(-1)
        x = F.pad(x, (4, 4, 4, 4))
        top, left = rng.randint(0, 8), rng.randint(0, 8)
        out.append((x[:, top:top + 32, left:left + 32] - mean) / std)
    return torch.stack(out)


def bench_images(n: int, device: torch.device, min_s: float, K: Any) -> list[dict[str, Any]]:
    g = torch.Generator(device=device).manual_seed(0)
    u8 = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(device)
    f32 = u8.float() / 255
    ours = A.Compose([A.RandomHorizontalFlip(), A.RandomCrop(32, padding=4), A.Normalize(MEAN, STD)]).to(device)
    rng = random.Random(0)
    pipelines = [Pipeline("prebake (uint8 in)", lambda: ours(u8, generator=g), "uint8 -> float fused into Normalize"),
                 Pipeline("prebake (float in)", lambda: ours(f32, generator=g))]
    if K is not None:
        kornia = K.AugmentationSequential(
            K.RandomHorizontalFlip(), K.RandomCrop((32, 32), padding=4),
            K.Normalize(mean=torch.tensor(MEAN), std=torch.tensor(STD))).to(device)
        pipelines += [Pipeline("kornia (float in)", lambda: kornia(f32), "Kornia rejects uint8"),
                      Pipeline("kornia (uint8 in, x.float() / 255 first)", lambda: kornia(u8.float().div_(255)),
                               "the conversion Kornia needs from a uint8 cache batch")]
    pipelines.append(Pipeline("per-sample loop (uint8 in)", lambda: loop_flip_crop_normalize(u8, rng), max_calls=10))
    return measure("images", tuple(u8.shape), pipelines, device, min_s)


# ---------------------------------------------------------------- ViT input: 32 -> 224

def pil_vit_input(hwc: np.ndarray, device: torch.device, rng: random.Random) -> torch.Tensor:
    """The federated ViT workload online: per image PIL resize 224, flip, ToTensor, Normalize; collate; to device."""
    from PIL import Image

    mean, std = torch.tensor(VIT_MEAN)[:, None, None], torch.tensor(VIT_STD)[:, None, None]
    out = []
    for img in hwc:
        pil = Image.fromarray(img).resize((224, 224), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255
        out.append((x - mean) / std)
    return torch.stack(out).to(device)


def bench_vit(n: int, device: torch.device, min_s: float) -> list[dict[str, Any]]:
    g = torch.Generator(device=device).manual_seed(0)
    u8 = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    hwc = np.ascontiguousarray(u8.permute(0, 2, 3, 1).numpy())
    u8 = u8.to(device)
    fast = A.Compose([A.RandomHorizontalFlip(), A.Normalize(VIT_MEAN, VIT_STD), A.Resize(224)]).to(device)
    literal = A.Compose([A.Resize(224), A.RandomHorizontalFlip(), A.Normalize(VIT_MEAN, VIT_STD)]).to(device)
    rng = random.Random(0)
    return measure("vit", tuple(u8.shape), [
        Pipeline("prebake flip+normalize at 32, resize 224", lambda: fast(u8, generator=g),
                 "same result up to uint8 rounding"),
        Pipeline("prebake resize 224 (uint8), flip, normalize", lambda: literal(u8, generator=g),
                 "the issue's literal order"),
        Pipeline("per-sample PIL (federated ViT, online)", lambda: pil_vit_input(hwc, device, rng), max_calls=5),
    ], device, min_s)


# ---------------------------------------------------------------- signals: the heart-sound workload's six ops

class SeedScipyDataset(torch.utils.data.Dataset):
    """The heart-sound workload's CPU path: six numpy/scipy augmentations per sample in __getitem__, p = 0.5 each."""

    def __init__(self, signals: np.ndarray, seed: int = 0):
        self.signals, self.rng = signals, np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, i: int) -> torch.Tensor:
        import scipy.signal

        x, rng, t = self.signals[i].copy(), self.rng, self.signals.shape[-1]
        if rng.random() < 0.5:  # TimeShift
            x = np.roll(x, rng.integers(-t // 10, t // 10 + 1), axis=-1)
        if rng.random() < 0.5:  # AmplitudeScale
            x = x * rng.uniform(0.8, 1.2)
        if rng.random() < 0.5:  # GaussianNoise at an SNR in dB
            rms = np.sqrt(np.mean(x ** 2))
            x = x + rng.standard_normal(x.shape).astype(np.float32) * rms / 10 ** (rng.uniform(20, 40) / 20)
        if rng.random() < 0.5:  # TimeMask
            w = rng.integers(0, t // 10 + 1)
            s = rng.integers(0, t - w + 1)
            x[..., s:s + w] = 0
        if rng.random() < 0.5:  # FrequencyMask
            spec = np.fft.rfft(x, axis=-1)
            bins = spec.shape[-1]
            w = rng.integers(0, int(0.1 * bins) + 1)
            s = rng.integers(0, bins - w + 1)
            spec[..., s:s + w] = 0
            x = np.fft.irfft(spec, n=t, axis=-1)
        if rng.random() < 0.5:  # TimeStretch: scipy.signal.resample, then crop or pad
            y = scipy.signal.resample(x, int(round(t / rng.uniform(0.8, 1.25))), axis=-1)
            x = y[..., :t] if y.shape[-1] >= t else np.pad(y, [(0, 0), (0, t - y.shape[-1])])
        return torch.tensor(x, dtype=torch.float32)  # the seed re-wraps every sample with torch.tensor


def ours_three_ops() -> A.Compose:
    """The same three ops as the torch-audiomentations pipeline, for a like-for-like ratio."""
    return A.Compose([A.TimeShift(0.1, p=0.5), A.AmplitudeScale((0.5, 2.0), p=0.5),
                      A.GaussianNoise(snr_db=(3, 30), p=0.5)])


def bench_signals(n: int, device: torch.device, min_s: float, TA: Any, with_peers: bool) -> list[dict[str, Any]]:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, 1, 4000, generator=torch.Generator().manual_seed(2))
    host = x.numpy()
    x = x.to(device)
    six, three = A.signal_pretrain_preset(SAMPLE_RATE).to(device), ours_three_ops().to(device)
    views = A.TwoViews(six)
    pipelines = [Pipeline("prebake six ops", lambda: six(x, generator=g)),
                 Pipeline("prebake two views of six ops", lambda: views(x, generator=g), "samples/s counts pairs"),
                 Pipeline("prebake shift+gain+noise", lambda: three(x, generator=g))]
    if with_peers and TA is not None:
        ta = TA.Compose([TA.Shift(min_shift=-0.1, max_shift=0.1, p=0.5, output_type="tensor"),
                         TA.Gain(p=0.5, output_type="tensor"),
                         TA.AddColoredNoise(p=0.5, output_type="tensor")], output_type="tensor").to(device)
        pipelines.append(Pipeline("torch-audiomentations shift+gain+colored noise",
                                  lambda: ta(x, sample_rate=SAMPLE_RATE)))
    if with_peers:
        loader = torch.utils.data.DataLoader(SeedScipyDataset(host), batch_size=n, num_workers=0)
        pipelines.append(Pipeline("heart-sound scipy per-sample (DataLoader, 1 process)",
                                  lambda: next(iter(loader)).to(device), "the seed ran 8 such worker processes",
                                  max_calls=5))
    return measure("signals", tuple(x.shape), pipelines, device, min_s)


# ---------------------------------------------------------------- report

RATIOS = [  # (ours, peer, peer key for the target)
    ("prebake (uint8 in)", "kornia (uint8 in, x.float() / 255 first)", "kornia"),
    ("prebake (float in)", "kornia (float in)", "kornia"),
    ("prebake (uint8 in)", "per-sample loop (uint8 in)", None),
    ("prebake flip+normalize at 32, resize 224", "per-sample PIL (federated ViT, online)", None),
    ("prebake resize 224 (uint8), flip, normalize", "per-sample PIL (federated ViT, online)", None),
    ("prebake six ops", "torch-audiomentations shift+gain+colored noise", "torch-audiomentations"),
    ("prebake shift+gain+noise", "torch-audiomentations shift+gain+colored noise", None),
    ("prebake six ops", "heart-sound scipy per-sample (DataLoader, 1 process)", "heart-sound scipy"),
]


def ratios(repeats: list[list[dict[str, Any]]], device: torch.device) -> list[dict[str, Any]]:
    """Each comparison's ratio per repeat, and their median, min and max; the target is judged on the median."""
    out = []
    for ours, peer, target_key in RATIOS:
        for a in (r for r in repeats[0] if r["pipeline"] == ours):
            per_repeat = []
            for rows in repeats:
                mine = next(r for r in rows if r["pipeline"] == ours and r["batch"] == a["batch"])
                theirs = next((r for r in rows if r["pipeline"] == peer and r["batch"] == a["batch"]), None)
                if theirs is not None:
                    per_repeat.append(mine["samples_per_s"] / theirs["samples_per_s"])
            if not per_repeat:
                continue
            target = TARGETS.get(target_key) if device.type == "cpu" and target_key else None
            ratio = statistics.median(per_repeat)
            out.append({"ours": ours, "peer": peer, "batch": a["batch"], "ratio": ratio, "ratio_min": min(per_repeat),
                        "ratio_max": max(per_repeat), "per_repeat": per_repeat, "target": target,
                        "meets_target": None if target is None else ratio >= target})
    return out


def combine(repeats: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per pipeline: the median over repeats of its median call time."""
    rows = []
    for i, first in enumerate(repeats[0]):
        seconds = [rows_[i]["seconds"] for rows_ in repeats]
        median = statistics.median(seconds)
        rows.append({**first, "seconds": median, "samples_per_s": first["batch"][0] / median,
                     "samples_per_s_per_repeat": [first["batch"][0] / s for s in seconds],
                     "calls": sum(rows_[i]["calls"] for rows_ in repeats)})
    return rows


def print_report(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> None:
    print(f"\n{'suite':8} {'pipeline':52} {'batch':>16} {'samples/s':>12} {'ms/batch':>10}")
    for r in rows:
        batch = "x".join(map(str, r["batch"]))
        print(f"{r['suite']:8} {r['pipeline']:52} {batch:>16} {r['samples_per_s']:12,.0f} {r['seconds'] * 1e3:10.2f}")
    print(f"\n{'prebake':45} {'vs':52} {'ratio':>8} {'min-max':>12} {'target':>12}")
    for p in pairs:
        target = "" if p["target"] is None else f">={p['target']:.0f}x " + ("ok" if p["meets_target"] else "MISSED")
        spread = f"{p['ratio_min']:.1f}-{p['ratio_max']:.1f}x"
        print(f"{p['ours']:45} {p['peer']:52} {p['ratio']:7.2f}x {spread:>12} {target:>12}")


SUITES = ("images", "vit", "signals")


def run_suite(suite: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One suite, timed in this process (the child side of ``main``)."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    min_s = 0.05 if args.quick else 1.0
    quiet: Callable[[str], None] = lambda message: None  # noqa: E731 - the parent already said it
    if suite == "images":
        return bench_images(32 if args.quick else 512, device, min_s, import_kornia(quiet))
    if suite == "vit":
        return bench_vit(8 if args.quick else (args.vit_batch or (1024 if cuda else 256)), device, min_s)
    rows, TA = [], import_torch_audiomentations(quiet)
    signal_ns = [8] if args.quick else (args.signal_batches or ([64, 1024] if cuda else [64]))
    for i, n in enumerate(signal_ns):  # peers only at the first (the 64 x 4000) size
        rows += bench_signals(n, device, min_s, TA, with_peers=i == 0)
    return rows


def run_in_fresh_process(suite: str, argv: list[str]) -> list[dict[str, Any]]:
    """Run one suite in a new interpreter (same arguments, same environment) and read back its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--suite", suite, "--rows-to", str(rows_file)]
        done = subprocess.run(cmd)
        if done.returncode != 0:
            sys.exit(f"the {suite} suite failed (exit {done.returncode}); rerun it alone: {' '.join(cmd[:-2])}")
        return json.loads(rows_file.read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--quick", action="store_true", help="tiny batches and short timings: a smoke run")
    ap.add_argument("--out", type=Path, help="JSON path (default: runs/augment/augment-<device tag>.json)")
    ap.add_argument("--save", action="store_true", help="also update benchmarks/results/augment-<device tag>.json")
    ap.add_argument("--signal-batches", type=int, nargs="+", help="signal batch sizes (default 64; 64 1024 on cuda)")
    ap.add_argument("--vit-batch", type=int, help="ViT batch (default 256 on cpu, 1024 on cuda)")
    ap.add_argument("--retain-freed-memory", action="store_true",
                    help="rerun under glibc settings that keep freed memory in the process "
                         f"({' '.join(f'{k}={v}' for k, v in RETAIN.items())}); by default glibc hands large "
                         "blocks back to the OS on free, and each new tensor page-faults in again. "
                         "Every pipeline runs under the same settings")
    ap.add_argument("--repeat", type=int, default=3,
                    help="measure everything this many times; report medians and the spread of each ratio (default 3)")
    ap.add_argument("--suite", choices=SUITES, help="run only this suite, once, in this process, and print its rows")
    ap.add_argument("--rows-to", type=Path, help=argparse.SUPPRESS)  # where a --suite child writes its rows
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat {args.repeat}: give at least 1")
    if args.retain_freed_memory and any(os.environ.get(k) != v for k, v in RETAIN.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **RETAIN})

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False here; run on a GPU machine or use --device cpu")
    if args.suite:
        rows = run_suite(args.suite, args)
        if args.rows_to:
            args.rows_to.write_text(json.dumps(rows))
        else:
            print_report(rows, ratios([rows], device))
        return

    K, TA = import_kornia(), import_torch_audiomentations()  # say once which peers run or are skipped
    repeats = []
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1} of {args.repeat}: " + ", ".join(SUITES) + ", each in a fresh process", flush=True)
        repeats.append([row for suite in SUITES for row in run_in_fresh_process(suite, argv)])
    rows, pairs = combine(repeats), ratios(repeats, device)
    print_report(rows, pairs)

    allocator = {k: os.environ[k] for k in RETAIN if k in os.environ} or "glibc defaults"
    suffix = "-retain" if args.retain_freed_memory else ""
    name = f"augment-{device_tag(device)}{suffix}.json"
    here = Path(__file__).resolve().parent
    report = {"benchmark": "augment", "quick": args.quick, "machine": {"device": str(device), **machine(device)},
              "allocator": allocator, "process": "each suite of each repeat in a fresh process",
              "peers": {"kornia": K is not None, "torch-audiomentations": TA is not None},
              "repeats": args.repeat, "rows": rows, "ratios": pairs}
    for path in write_results(report, args.out or here.parent / "runs" / "augment" / name,
                              here / "results" / name if args.save else None):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
