"""Federated rounds: select clients, train each from the global state, average, evaluate, log, checkpoint.

The model and its optimiser are built once. Each selected client loads the global state
into that one model in place, trains ``local_ep`` epochs, and its shared parameters are
added to a running sample-weighted mean. Client selection and the device RNG are seeded
per round, so ``--resume`` continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .data import make_data, open_caches
from .fed import Federated, LoraSettings, State, WeightedMean, fedavg_model, fedlora_model
from .model import VARIANTS, ViT, load_pretrained
from .partition import dirichlet_partition, save_partition
from .train import LocalResult, evaluate, make_optimizer, reset_optimizer, train_epoch

logger = logging.getLogger(__name__)
CSV_FIELDS = ["round", "seconds", "data_wait_fraction", "mean_client_loss", "test_accuracy", "samples",
              "transform_fraction"]
# Settings a checkpoint must agree with to be resumed.
RESUME_KEYS = ("alg", "vit", "image_size", "num_users", "frac", "dirichlet_alpha", "min_partition_size",
               "seed", "lora_r", "lora_alpha", "lora_targets", "local_bs", "local_ep", "optimizer")


@dataclass
class RoundLog:
    round: int
    seconds: float
    data_wait_fraction: float
    mean_client_loss: float
    test_accuracy: float | None
    samples: int
    transform_fraction: float = 0.0  # prebake: the Loader's transform on the device (flip, normalize, resize)


def build_federated(cfg: Config, num_classes: int) -> Federated:
    model = ViT(VARIANTS[cfg.vit], cfg.image_size, num_classes)
    if cfg.pretrained is not None:
        load_pretrained(model, cfg.pretrained)
    if cfg.alg == "fedlora":
        fed = fedlora_model(model, LoraSettings(cfg.lora_r, cfg.lora_alpha, cfg.lora_targets))
    else:
        fed = fedavg_model(model)
    fed.model.to(cfg.device)
    return fed


def selected_clients(cfg: Config, rnd: int) -> np.ndarray:
    return np.random.default_rng([cfg.seed, rnd]).choice(cfg.num_users, cfg.clients_per_round, replace=False)


class RoundLogger:
    """``OUT/log.csv`` always; TensorBoard under ``OUT/tb`` when ``torch.utils.tensorboard`` imports."""

    def __init__(self, out: Path, append: bool):
        self.path = out / "log.csv"
        fresh = not (append and self.path.exists())
        self.file = self.path.open("w" if fresh else "a", newline="")
        self.csv = csv.DictWriter(self.file, CSV_FIELDS)
        if fresh:
            self.csv.writeheader()
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"))
        except ImportError as e:
            logger.info("TensorBoard logging off (%s); the CSV %s has the same figures", e, self.path)

    def log(self, row: RoundLog) -> None:
        self.csv.writerow(dataclasses.asdict(row))
        self.file.flush()
        if self.tb is not None:
            for key, value in dataclasses.asdict(row).items():
                if key != "round" and value is not None:
                    self.tb.add_scalar(key, value, row.round)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def save_checkpoint(path: Path, fed: Federated, rnd: int, cfg: Config) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"round": rnd, "model": fed.model.state_dict(), "config": _resume_settings(cfg)}, tmp)
    os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint intact


def _resume_settings(cfg: Config) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items() if k in RESUME_KEYS}


def load_checkpoint(path: Path, fed: Federated, cfg: Config) -> int:
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; run without --resume to start, "
                                "or pass the --out of the run to continue")
    ckpt = torch.load(path, map_location=cfg.device, weights_only=True)
    diff = {k: (v, ckpt["config"].get(k)) for k, v in _resume_settings(cfg).items() if ckpt["config"].get(k) != v}
    if diff:
        raise ValueError(f"--resume: {path} was saved with other settings "
                         f"({', '.join(f'{k}={old!r}, now {new!r}' for k, (new, old) in diff.items())}); "
                         "pass the same options or a new --out")
    fed.model.load_state_dict(ckpt["model"])
    return int(ckpt["round"])


def run_round(cfg: Config, fed: Federated, optimizer: torch.optim.Optimizer, data: Any,
              parts: list[np.ndarray], global_state: State, rnd: int) -> tuple[State, LocalResult]:
    torch.manual_seed(cfg.seed * 100_003 + rnd)  # the device augmentations' draws, per round
    device, mean, total = torch.device(cfg.device), WeightedMean(), LocalResult()
    for client in selected_clients(cfg, rnd).tolist():
        fed.receive(global_state)
        reset_optimizer(optimizer)
        for ep in range(cfg.local_ep):
            total.add(train_epoch(fed.model, optimizer, data.client_epoch(client, rnd * cfg.local_ep + ep), device))
        mean.add(fed.send(), len(parts[client]))
    new_state = mean.result(global_state)
    fed.receive(new_state)
    return new_state, total


def run(cfg: Config, progress: Callable[[Iterable[int]], Iterable[int]] = lambda x: x) -> list[RoundLog]:
    """Train ``cfg.epochs`` rounds (from the checkpoint with ``cfg.resume``); return this call's round logs."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    train, test = open_caches(cfg.cache, cfg.data)
    labels = train.targets
    parts = dirichlet_partition(labels, cfg.num_users, cfg.dirichlet_alpha, cfg.min_partition_size, cfg.seed)
    save_partition(parts, labels, cfg.out, alpha=cfg.dirichlet_alpha, seed=cfg.seed,
                   min_partition_size=cfg.min_partition_size)
    fed = build_federated(cfg, max(len(train.classes), int(labels.max()) + 1))
    optimizer = make_optimizer(fed.params, cfg.optimizer, cfg.learning_rate, cfg.momentum)
    ckpt = cfg.out / "checkpoint.pt"
    start = load_checkpoint(ckpt, fed, cfg) if cfg.resume else 0
    data = make_data(train, test, parts, cfg)
    (cfg.out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1, default=str))
    log, logs, global_state = RoundLogger(cfg.out, append=cfg.resume), [], fed.send()
    try:
        for rnd in progress(range(start, cfg.epochs)):
            t0 = time.perf_counter()
            global_state, local = run_round(cfg, fed, optimizer, data, parts, global_state, rnd)
            seconds = time.perf_counter() - t0
            last = rnd + 1 == cfg.epochs
            acc = evaluate(fed.model, data.test_batches(), torch.device(cfg.device)) \
                if (rnd + 1) % cfg.eval_every == 0 or last else None
            steps = local.wait_seconds + local.transform_seconds + local.compute_seconds
            row = RoundLog(rnd + 1, seconds, local.wait_seconds / steps if steps else 0.0,
                           local.loss_sum / max(1, local.samples), acc, local.samples,
                           local.transform_seconds / steps if steps else 0.0)
            log.log(row)
            logger.info("round %d: %.2f s, data wait %.1f%%, mean client loss %.4f%s", row.round, seconds,
                        100 * row.data_wait_fraction, row.mean_client_loss,
                        "" if acc is None else f", test accuracy {acc:.4f}")
            logs.append(row)
            save_checkpoint(ckpt, fed, rnd + 1, cfg)
    finally:
        log.close()
    return logs
