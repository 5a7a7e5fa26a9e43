"""Samples/s and data wait of heart-sound pretraining fed three ways, in one run, same recordings, same model.

``python -m examples.pcg.bench`` writes synthetic recordings (``--config``'s ``data``
section), bakes their cycles once (timed), checks that the seed's segmentation in
``__getitem__`` and the baked cache give the same cycles, and then, for ``original``,
``viewcache`` and ``prebake``:

- **data only**: batches of two augmented views (and substructures) on the device, no
  model: samples/s over ``--data-epochs`` epochs (one view-cache refresh period), after one
  untimed warm-up epoch; and how many distinct views each cycle got per epoch (hashes of
  its ``view1``);
- **training**: ``--train-epochs`` epochs of the same model from the same initial weights:
  samples/s, the share of step time spent waiting for data (``prebake.watch``) and, for
  prebake, the share spent in the six ops on the device inside the Loader's ``next()``
  (which ``watch`` counts apart from waiting), medians over the epochs after the first.

It prints a table and writes ``runs/pcg-bench/pcg-<device>.json`` (``--out``), and
``benchmarks/results/`` too with ``--save``; every figure in it was measured in this run.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import logging
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prebake.measure.bench import device_tag, machine, ratios_to, write_results

from . import data as D
from .config import load
from .model import Contrastive
from .run import DATA_PATHS, make_batches, prepare, train_epoch

#: prebake with the augmentation on the Loader's threads (``hardware.augment_in_threads``), beside the default.
THREADED = "prebake-threads"

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"  # updated only with --save


def same_cycles(batches: Any, cache: Any, cfg: Any) -> dict[str, Any]:
    """The seed path's cycles (segmented per recording in Python) against the cache's, sample for sample."""
    seed = [c for cycles in batches.dataset.rec.cycles for c in cycles]
    baked, _, _ = D.eval_cycles(cache, cfg, "cpu")
    equal = len(seed) == len(baked) and all(np.array_equal(a, b[0].numpy()) for a, b in zip(seed, baked))
    return {"cycles": len(baked), "seed_cycles": len(seed), "identical": bool(equal)}


def data_only(batches: Any, epochs: int) -> dict[str, Any]:
    for _ in batches.epoch(0):  # warm-up: workers, caches, first calls
        pass
    views: dict[tuple[int, int], set[str]] = defaultdict(set)
    samples, t0 = 0, time.perf_counter()
    for e in range(1, epochs + 1):
        for b in batches.epoch(e):
            samples += len(b["label"])
            for item, element, v in zip(b["item"].tolist(), b["element"].tolist(), b["view1"].cpu().numpy()):
                views[(item, element)].add(hashlib.blake2b(v.tobytes(), digest_size=8).hexdigest())
    seconds = time.perf_counter() - t0
    return {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds,
            "distinct_views_per_epoch": statistics.mean(len(v) for v in views.values()) / epochs}


def training(batches: Any, cfg: Any, epochs: int, device: str) -> dict[str, Any]:
    torch.manual_seed(cfg.train.seed)
    m = cfg.model
    model = Contrastive(m.channels, m.embedding_dim, m.projection_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    rows = [train_epoch(model, opt, batches, 100 + e, cfg) for e in range(epochs)]
    timed = rows[1:] or rows
    return {"epochs": [r.__dict__ for r in rows], "samples_per_s": statistics.median(r.samples_per_s for r in timed),
            "data_wait_fraction": statistics.median(r.data_wait_fraction for r in timed),
            "transform_fraction": statistics.median(r.transform_fraction for r in timed),
            "wait_with_transform_fraction": statistics.median(r.data_wait_fraction + r.transform_fraction
                                                              for r in timed),
            "input_cores": statistics.median(r.input_cores for r in timed),
            "verdict": statistics.mode(r.verdict for r in timed),
            "loss_first": rows[0].loss, "loss_last": rows[-1].loss}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.pcg.bench", description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, default=Path(__file__).parent / "configs" / "default.yaml")
    p.add_argument("--data-epochs", type=int, default=5, help="timed epochs of the data-only pass (default 5)")
    p.add_argument("--train-epochs", type=int, default=3, help="training epochs per data path (default 3)")
    p.add_argument("--paths", default=",".join([*DATA_PATHS, THREADED]),
                   help=f"data paths to run; {THREADED}: prebake with hardware.augment_in_threads")
    p.add_argument("--device", help="default: the config's hardware.device")
    p.add_argument("--out", type=Path, default=Path("runs/pcg-bench"), help="the run's folder (default runs/pcg-bench)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/pcg-<device>.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load(args.config)
    if args.device:
        cfg.hardware.device = args.device
    device = cfg.device
    with tempfile.TemporaryDirectory(prefix="prebake-pcgbench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        root, cache = prepare(cfg, work)
        bake_s = time.perf_counter() - t0  # writing the WAV files, then the bake
        results, check = {}, None
        for path in args.paths.split(","):
            if path == THREADED:
                threaded = copy.deepcopy(cfg)
                threaded.hardware.augment_in_threads = True
                batches = make_batches("prebake", threaded, root, cache, device)
            else:
                batches = make_batches(path, cfg, root, cache, device)
            if check is None and path not in ("prebake", THREADED):
                check = same_cycles(batches, cache, cfg)
            results[path] = {"data": data_only(batches, args.data_epochs),
                             "train": training(batches, cfg, args.train_epochs, device)}
            del batches
    report(args, cfg, device, len(cache), bake_s, check, results)
    return 0


def report(args: argparse.Namespace, cfg: Any, device: str, recordings: int, bake_s: float,
           check: dict[str, Any] | None, results: dict[str, dict[str, Any]]) -> None:
    d = cfg.data
    print(f"heart-sound pretraining: {recordings} recordings at {d.sample_rate} Hz, "
          f"cycles of {d.cycle_length} samples, "
          f"batch {cfg.train.batch_size}, {cfg.hardware.num_workers} DataLoader workers, device {device_tag(device)}")
    print(f"write + bake (decode, segment, commit): {bake_s:.1f} s; same cycles in every path: {check}")
    print(f"{'data path':<15} {'data samples/s':>15} {'views/cycle/epoch':>18} {'train samples/s':>16} "
          f"{'data wait':>10} {'device ops':>11} {'wait + ops':>11} {'input cores':>12}  watch says")
    for path, r in results.items():
        t = r["train"]
        print(f"{path:<15} {r['data']['samples_per_s']:>15,.0f} {r['data']['distinct_views_per_epoch']:>18.2f} "
              f"{t['samples_per_s']:>16,.0f} {100 * t['data_wait_fraction']:>9.1f}% "
              f"{100 * t['transform_fraction']:>10.1f}% {100 * t['wait_with_transform_fraction']:>10.1f}% "
              f"{t['input_cores']:>12.2f}  {t['verdict']}")
    ratios = ratios_to(results)
    if ratios:
        print("ratios: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    name = f"pcg-{device_tag(device)}.json"
    record = {"machine": machine(), "device": device_tag(device), "config": str(args.config.name),
              "recordings": recordings, "bake_seconds": bake_s, "same_cycles": check, "results": results,
              "ratios": ratios}
    for path in write_results(record, args.out / name, RESULTS / name if args.save else None):
        print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
