"""The bake's batched encoders and the three data paths, in one run, on the same clips and the same encoders.

``python -m examples.talking_head.bench`` writes the synthetic clips of ``--config``, then:

- **bake**: decodes every clip once (a prebake build without stages, 2 workers), loads
  the frames and samples into RAM, and times both encoders over all clips three ways, in
  ``--rounds`` interleaved rounds (medians): as a ``prebake.Stage`` of 32 clips per call (and
  of 8, 4 and 1), and as the seed's loop (``inference`` / ``encode`` per clip). The outputs
  are compared (largest absolute difference against batch 32). Then the whole bake with the
  stages (decode + encoders + commit) at batch 32 and at 1, and the seed's
  ``_preprocess_all_data`` (decode + encoders per clip, in one process, + ``torch.save``);
- **data**: for ``original``, ``optimised`` (with the seed's DataLoader workers, and again
  without: its data is in RAM) and ``prebake``: the same windows are checked
  equal (16 of them, every key the model reads), then batches are drawn for ``--seconds``
  without a model (after a warm-up), then ``--steps`` training steps from the same
  initial weights: samples/s and the data-wait fraction over the steps after the first 10.

Torch runs ``--threads`` intra-op threads (default 1, for figures that repeat on a shared
2-core machine). It prints a table and writes ``runs/talking-head-bench/talking-head-<device>.json``
(``--out``), and ``benchmarks/results/`` too with ``--save``; every figure in it was measured in this run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prebake
from prebake.measure.bench import device_tag, machine, ratios_to, write_results

from . import data as D
from . import seed as S
from .config import DATA_PATHS, PRESETS, Config
from .encoders import AUTOCAST, load_encoders, stages
from .run import Prepared, make_batches, take, train

WARMUP_STEPS = 10  # training steps left out of the figures: first calls, worker start-up, page faults

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"  # updated only with --save


def encoder_inputs(root: Path, work: Path) -> tuple[dict[str, Any], float]:
    """Every clip's frames, samples and frame count in RAM, decoded by a prebake build without stages."""
    t0 = time.perf_counter()
    raw = prebake.build(root, work / "decoded", [D.add_num_frames], kind="video", workers=2, progress=False)
    seconds = time.perf_counter() - t0
    cols = {c: [np.array(a) for a in raw.column(c)] for c in ("frames", "audio")}
    cols["num_frames"] = np.array(raw.column("num_frames"))
    return cols, seconds


Encode = Callable[[dict[str, Any]], list[np.ndarray]]


def per_item(audio: Any, motion: Any, e: Any) -> dict[str, Encode]:
    """The seed's loop: each encoder called on one clip at a time, where the Stages run and in their dtype."""
    device = torch.device(e.stage_device or ("cuda" if torch.cuda.is_available() else "cpu"))  # the Stages' default
    audio, motion = copy.deepcopy(audio).to(device), copy.deepcopy(motion).to(device)
    amp = AUTOCAST[e.stage_dtype]

    def run(fn: Callable[..., torch.Tensor], *args: Any) -> np.ndarray:
        with torch.inference_mode(), (torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()):
            return fn(*args).float().cpu().numpy()

    def audio_fn(cols: dict[str, Any]) -> list[np.ndarray]:
        return [run(audio.inference, torch.from_numpy(a).to(device), int(n)) for a, n in zip(cols["audio"],
                                                                                           cols["num_frames"])]

    def motion_fn(cols: dict[str, Any]) -> list[np.ndarray]:
        return [run(motion.encode, torch.from_numpy(f).to(device)) for f in cols["frames"]]

    return {"w_audio": audio_fn, "motion": motion_fn}


def staged(audio: Any, motion: Any, cfg: Config, batch: int, max_rows: Any = "config") -> dict[str, Encode]:
    """Both encoders as the bake runs them: ``prebake.Stage`` s of ``batch`` clips per call (and the motion
    encoder's ``max_rows``: the config's unless given)."""
    e = dataclasses.replace(cfg.encoders, stage_batch=batch)
    if max_rows != "config":
        e = dataclasses.replace(e, motion_max_rows=max_rows)
    audio_stage, motion_stage, _ = stages(audio, motion, e)
    return {"w_audio": lambda cols: audio_stage.run(cols)["w_audio"],
            "motion": lambda cols: motion_stage.run(cols)["motion"]}


def time_encoders(ways: dict[str, dict[str, Encode]], cols: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Seconds per way and encoder (interleaved rounds, so a change in the machine's load hits every way alike),
    and each way's largest difference from the first way's outputs."""
    seconds = {w: {e: [] for e in fns} for w, fns in ways.items()}
    outputs: dict[str, dict[str, list[np.ndarray]]] = {}
    for _ in range(rounds):
        for way, fns in ways.items():
            for enc, fn in fns.items():
                t0 = time.perf_counter()
                outputs.setdefault(way, {})[enc] = fn(cols)
                seconds[way][enc].append(time.perf_counter() - t0)
    first = next(iter(outputs.values()))
    diff = {w: max(float(np.abs(np.float32(a) - np.float32(b)).max()) for e in out for a, b in zip(first[e], out[e]))
            for w, out in outputs.items()}
    median = {w: {e: statistics.median(v) for e, v in t.items()} for w, t in seconds.items()}
    return {"seconds": seconds, "median": median, "total": {w: sum(m.values()) for w, m in median.items()},
            "max_abs_diff_vs_stage_b32": diff}


def bake_bench(cfg: Config, p: Prepared, work: Path, rounds: int) -> dict[str, Any]:
    cols, decode_s = encoder_inputs(p.root, work)
    ways = {f"stage_b{b}": staged(p.audio, p.motion, cfg, b) for b in (32, 8, 4, 1)}
    ways["stage_b32_unbounded"] = staged(p.audio, p.motion, cfg, 32, max_rows=None)  # no max_rows
    ways["per_item_loop"] = per_item(p.audio, p.motion, cfg.encoders)
    enc = time_encoders(ways, cols, rounds)
    total = enc["total"]
    builds = {f"build_b{b}": timed_build(cfg, p, work / f"b{b}", b) for b in (32, 1)}
    t0 = time.perf_counter()
    S.OptimisedDataset(S.Clips(p.root, p.cache, cfg.train.window, cfg.train.stride), p.audio, p.motion,
                       work / "optimised.pt", force_preprocess=True)
    seed_s = time.perf_counter() - t0
    sizes = {"seed_optimised_pt_bytes": (work / "optimised.pt").stat().st_size,
             "prebake_cache_bytes": _bytes(p.cache.path), "decoded_frames_and_audio_bytes": _bytes(work / "decoded")}
    return {"clips": len(cols["frames"]), "frames": int(cols["num_frames"].sum()), "decode_seconds": decode_s,
            "encoders": enc, **builds, "seed_preprocess_seconds": seed_s, "sizes": sizes,
            "ratio_stage_b32_vs_b1": total["stage_b1"] / total["stage_b32"],
            "ratio_stage_b32_vs_loop": total["per_item_loop"] / total["stage_b32"],
            "ratio_build_b32_vs_b1": builds["build_b1"] / builds["build_b32"]}


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def timed_build(cfg: Config, p: Prepared, out: Path, batch: int) -> float:
    c = dataclasses.replace(cfg, encoders=dataclasses.replace(cfg.encoders, stage_batch=batch))
    t0 = time.perf_counter()
    D.bake(p.root, c, p.audio, p.motion, workers=2, out=out)
    return time.perf_counter() - t0


def same_windows(cfg: Config, p: Prepared) -> dict[str, Any]:
    """16 windows through each seed dataset against ``prebake.Windows``: the keys the model reads."""
    clips = S.Clips(p.root, p.cache, cfg.train.window, cfg.train.stride)
    view = D.windows(p.cache, cfg)
    same_index = bool(np.array_equal(clips.item, view.item) and np.array_equal(clips.start, view.start))
    seeds = {"original": S.OriginalDataset(clips, p.audio, p.motion),
             "optimised": S.OptimisedDataset(clips, p.audio, p.motion, cfg.cache_root / "optimised.pt")}
    picks = np.random.default_rng(0).choice(len(view), 16, replace=False)
    diff = {name: 0.0 for name in seeds}
    for i in picks.tolist():
        ref = view[i]
        for name, ds in seeds.items():
            got = ds[i]
            for k in ("motion", "motion_context", "w_audio", "reference"):
                diff[name] = max(diff[name], float(np.abs(got[k].numpy() - ref[k]).max()))
    return {"windows": len(view), "same_index": same_index, "checked": len(picks), "max_abs_diff": diff}


def data_only(batches: Any, seconds: float, warmup: int = 5) -> dict[str, Any]:
    """Batches for ``seconds`` without a model (across epochs), after ``warmup`` untimed ones."""
    for _ in take(batches.epoch(0), warmup):
        pass
    samples, epoch, t0 = 0, 1, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for b in take(batches.epoch(epoch), 10**9):
            samples += len(b["motion"])
            if time.perf_counter() - t0 >= seconds:
                break
        epoch += 1
    elapsed = time.perf_counter() - t0
    return {"samples": samples, "seconds": elapsed, "samples_per_s": samples / elapsed}


def training(cfg: Config, batches: Any, steps: int, device: str) -> dict[str, Any]:
    rows = train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps)), batches, "", device)
    timed = rows[WARMUP_STEPS:] or rows
    seconds = sum(r.seconds for r in timed)
    return {"steps": len(rows), "samples_per_s": sum(r.samples for r in timed) / seconds,
            "data_wait_fraction": sum(r.data_wait_fraction * r.seconds for r in timed) / seconds,
            "loss_first": rows[0].loss, "loss_last": statistics.mean(r.loss for r in rows[-10:])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.talking_head.bench", description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(PRESETS), default="default")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the encoder timings (median)")
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds of the data-only pass per path")
    p.add_argument("--steps", type=int, default=200, help="training steps per path")
    p.add_argument("--paths", default=",".join(DATA_PATHS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of this process (default 1: on a "
                   "shared 2-core machine two made one training run vary 4x, 2,462 against 685 samples/s; one gave "
                   "3,228 and 3,227)")
    p.add_argument("--stage-dtype", choices=["bf16", "fp16"], help="autocast of the encoders at bake time "
                   "(default float32)")
    p.add_argument("--bake-only", action="store_true", help="the bake's encoder timings only: no data paths")
    p.add_argument("--out", type=Path, default=Path("runs/talking-head-bench"),
                   help="the run's folder (default runs/talking-head-bench)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/talking-head-<device>.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="prebake-talkbench-") as tmp:
        cfg = PRESETS[args.config]()
        cfg.out, cfg.device = Path(tmp), args.device
        cfg.encoders = dataclasses.replace(cfg.encoders, stage_device=args.device, stage_dtype=args.stage_dtype)
        t0 = time.perf_counter()
        D.write_synthetic(cfg.out / "clips", cfg.data, cfg.train.seed)
        write_s = time.perf_counter() - t0
        audio, motion = load_encoders(cfg)
        prepared = Prepared(cfg.out / "clips", audio, motion, D.bake(cfg.out / "clips", cfg, audio, motion, workers=2))
        bake = bake_bench(cfg, prepared, Path(tmp), args.rounds)
        check = None if args.bake_only else same_windows(cfg, prepared)
        results = {}
        for path in [] if args.bake_only else args.paths.split(","):
            runs = [(path, cfg)]
            if path == "optimised" and cfg.train.num_workers:  # its data is in RAM: also without worker processes
                runs.append(("optimised_0_workers", dataclasses.replace(
                    cfg, train=dataclasses.replace(cfg.train, num_workers=0))))
            for name, c in runs:
                c.data_path = path
                batches = make_batches(c, prepared, args.device)
                results[name] = {"data": data_only(batches, args.seconds),
                                 "train": training(c, batches, args.steps, args.device)}
                del batches
    report(args, cfg, write_s, bake, check, results, load_start)
    return 0


def report(args: argparse.Namespace, cfg: Config, write_s: float, bake: dict[str, Any], check: dict[str, Any],
           results: dict[str, Any], load_start: tuple[float, ...]) -> None:
    d, t, enc = cfg.data, cfg.train, bake["encoders"]
    print(f"talking head: {bake['clips']} clips, {bake['frames']:,} frames of {d.size}x{d.size} at {d.fps} "
          f"fps + 16 kHz audio (written in {write_s:.1f} s), window {t.window} + context {t.window}, batch "
          f"{t.batch_size}, {t.num_workers} DataLoader workers, device {device_tag(args.device)}, "
          f"{args.threads} torch thread(s)")
    print(f"bake: decode (2 workers, written to a cache) {bake['decode_seconds']:.1f} s; the encoders over every "
          f"clip, seconds (median of {args.rounds}):")
    print(f"  {'way':<14} {'audio':>6} {'motion':>7} {'both':>6} {'max |diff|':>11}")
    for way, m in enc["median"].items():
        print(f"  {way:<14} {m['w_audio']:>6.2f} {m['motion']:>7.2f} {enc['total'][way]:>6.2f} "
              f"{enc['max_abs_diff_vs_stage_b32'][way]:>11.1e}")
    print(f"  whole bake (decode + encoders + commit): batch 32 {bake['build_b32']:.1f} s, batch 1 "
          f"{bake['build_b1']:.1f} s; the seed's preprocessing {bake['seed_preprocess_seconds']:.1f} s")
    z = bake["sizes"]
    print(f"  sizes: the seed's optimised.pt {z['seed_optimised_pt_bytes'] / 1e6:,.1f} MB (frames and latents), the "
          f"prebake cache {z['prebake_cache_bytes'] / 1e6:,.1f} MB (latents), the decoded frames and audio "
          f"{z['decoded_frames_and_audio_bytes'] / 1e6:,.1f} MB")
    print(f"  stage batch 32 vs 1: {bake['ratio_stage_b32_vs_b1']:.2f}x, vs the per-clip loop: "
          f"{bake['ratio_stage_b32_vs_loop']:.2f}x; whole bake 32 vs 1: {bake['ratio_build_b32_vs_b1']:.2f}x")
    print(f"same windows in every path: {check}")
    print(f"{'data path':<20} {'data samples/s':>15} {'train samples/s':>16} {'data wait':>10} {'loss':>16}")
    for path, r in results.items():
        tr = r["train"]
        print(f"{path:<20} {r['data']['samples_per_s']:>15,.0f} {tr['samples_per_s']:>16,.0f} "
              f"{100 * tr['data_wait_fraction']:>9.1f}% {tr['loss_first']:>7.4f}->{tr['loss_last']:.4f}")
    ratios = ratios_to(results)
    if ratios:
        print("ratios: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    load_end = os.getloadavg()
    print(f"load average (1, 5, 15 min): {load_start} at the start, {load_end} at the end")
    suffix = "" if args.stage_dtype is None else f"-{args.stage_dtype}"
    name = f"talking-head-{device_tag(args.device)}{suffix}.json"
    record = {"machine": machine(args.device), "device": device_tag(args.device), "config": args.config,
              "stage_dtype": args.stage_dtype or "float32", "torch_threads": args.threads,
              "load_average": {"start": load_start, "end": load_end},
              "write_seconds": write_s, "bake": bake, "same_windows": check, "results": results, "ratios": ratios}
    if args.device == "cpu":
        record["gpu"] = "not measured"
    for path in write_results(record, args.out / name, RESULTS / name if args.save else None):
        print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
