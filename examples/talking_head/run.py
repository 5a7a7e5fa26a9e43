"""The training run, written once for the three data paths: ``--steps`` steps, one CSV row per step.

Each row has the step's loss, samples/s and data-wait fraction (``prebake.watch``: the time
blocked waiting for the batch over the step's time) and the dataset version (the prebake
cache's fingerprint digest, what the seed logged to wandb). ``OUT/<data_path>.json`` keeps
the settings and the version; TensorBoard gets the same scalars when it is installed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import prebake

from . import data as D
from . import seed as S
from .config import DATA_PATHS, Config
from .encoders import AudioEncoder, MotionEncoder, load_encoders
from .model import MotionPredictor, loss_of

log = logging.getLogger("examples.talking_head")


@dataclass(frozen=True)
class StepLog:
    step: int
    epoch: int
    loss: float
    samples: int
    seconds: float
    samples_per_s: float
    data_wait_fraction: float
    dataset_version: str


@dataclass
class Prepared:
    """What every data path starts from: the clips, the frozen encoders and the bake."""

    root: Path
    audio: AudioEncoder
    motion: MotionEncoder
    cache: prebake.Cache


def prepare(cfg: Config) -> Prepared:
    """The clips (``--data``, or synthetic ones written once under OUT/clips), the encoders and the baked cache."""
    root = cfg.data_dir if cfg.data_dir is not None else cfg.out / "clips"
    if cfg.data_dir is None and not root.exists():
        D.write_synthetic(root, cfg.data, cfg.train.seed)
    audio, motion = load_encoders(cfg)
    return Prepared(root, audio, motion, D.bake(root, cfg, audio, motion))


def make_batches(cfg: Config, p: Prepared, device: str) -> Any:
    """Something with ``.epoch(e)`` -> batches on ``device``: the seed's two datasets, or prebake's windows."""
    if cfg.data_path == "prebake":
        return D.PrebakeBatches(p.cache, cfg, device)
    if cfg.data_path not in DATA_PATHS:
        raise ValueError(f"--data_path {cfg.data_path!r}: choose one of {', '.join(DATA_PATHS)}")
    clips = S.Clips(p.root, p.cache, cfg.train.window, cfg.train.stride)
    if cfg.data_path == "original":
        return S.SeedBatches(S.OriginalDataset(clips, p.audio, p.motion), cfg, device)
    dataset = S.OptimisedDataset(clips, p.audio, p.motion, cfg.cache_root / "optimised.pt", cfg.force_preprocess)
    return S.SeedBatches(dataset, cfg, device)


def take(batches: Iterable[Any], n: int) -> Iterator[Any]:
    """The first ``n`` batches; the loader's iterator is closed when this one is (its threads stop)."""
    it = iter(batches)
    try:
        for _ in range(n):
            try:
                yield next(it)
            except StopIteration:
                return
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class StepLogger:
    """``OUT/<data_path>.csv``, one row per step; TensorBoard under ``OUT/tb/<run>`` when it imports."""

    def __init__(self, csv_path: Path, tb_dir: Path, version: str):
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        self.file = csv_path.open("w", newline="")
        self.csv = csv.DictWriter(self.file, [f.name for f in dataclasses.fields(StepLog)])
        self.csv.writeheader()
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(tb_dir))
            self.tb.add_text("dataset_version", version)
        except ImportError as e:
            log.info("TensorBoard logging off (%s); %s has every figure", e, csv_path)

    def log(self, row: StepLog) -> None:
        self.csv.writerow(dataclasses.asdict(row))
        if self.tb is not None:
            for key in ("loss", "samples_per_s", "data_wait_fraction"):
                self.tb.add_scalar(key, getattr(row, key), row.step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def train(cfg: Config, batches: Any, version: str, device: str, logger: StepLogger | None = None) -> list[StepLog]:
    """``cfg.train.steps`` steps over as many epochs as they take, from the seeded initial weights."""
    torch.manual_seed(cfg.train.seed)
    e, t = cfg.encoders, cfg.train
    model = MotionPredictor(e.audio_dim, e.motion_dim, t.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.mixed_precision)
    rows: list[StepLog] = []
    losses: list[float] = []
    epoch = 0

    def on_report(r: prebake.WatchReport) -> None:  # one per step (every=1), right after the step's body
        if not r.final:
            rows.append(StepLog(len(rows) + 1, epoch, losses[len(rows)], r.samples, r.seconds, r.samples_per_s,
                                r.input_bound_fraction, version))
            if logger is not None:
                logger.log(rows[-1])

    while len(losses) < t.steps:
        watched = prebake.watch(take(batches.epoch(epoch), t.steps - len(losses)), every=1, report=on_report,
                                count=lambda b: len(b["motion"]))
        for batch in watched:
            with torch.autocast(torch.device(device).type, dtype=amp, enabled=amp is not None):
                loss = loss_of(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        epoch += 1
    return rows


def run(cfg: Config, csv_path: Path | None = None) -> list[StepLog]:
    """Bake (or find the bake up to date), then train fed by ``cfg.data_path``; returns the per-step rows."""
    device = cfg.torch_device
    t0 = time.perf_counter()
    p = prepare(cfg)
    version = D.dataset_version(p.cache)
    batches = make_batches(cfg, p, device)
    log.info("%s: ready in %.1f s (%d clips, dataset version %s)", cfg.data_path, time.perf_counter() - t0,
             len(p.cache), version)
    csv_path = csv_path or cfg.out / f"{cfg.data_path}.csv"
    info = {"config": dataclasses.asdict(cfg), "dataset_version": version, "device": device,
            "cache": str(p.cache.path)}
    logger = StepLogger(csv_path, cfg.out / "tb" / f"{cfg.wandb_project}-{cfg.data_path}", version)
    csv_path.with_suffix(".json").write_text(json.dumps(info, indent=1, default=str))
    try:
        rows = train(cfg, batches, version, device, logger)
    finally:
        logger.close()
    if not rows:
        return rows
    first, last = rows[0].loss, sum(r.loss for r in rows[-5:]) / len(rows[-5:])
    samples, seconds = sum(r.samples for r in rows), sum(r.seconds for r in rows)
    wait = sum(r.data_wait_fraction * r.seconds for r in rows) / seconds
    log.info("%s: %d steps, loss %.4f -> %.4f, %.0f samples/s, %.1f%% of the time waiting for data",
             cfg.data_path, len(rows), first, last, samples / seconds, 100 * wait)
    return rows
