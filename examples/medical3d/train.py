"""The training loop, written once: per epoch, train and validate, and one CSV row with the loss, the accuracy,
samples/s and the share of the epoch spent waiting for data (``prebake.watch``)."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import prebake

from .config import Config
from .data import Loaders

log = logging.getLogger(__name__)
FIELDS = ("epoch", "train_loss", "val_loss", "val_accuracy", "train_samples_per_s", "data_wait_fraction", "seconds")


@dataclass
class EpochRow:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    train_samples_per_s: float
    data_wait_fraction: float
    seconds: float


def train_epoch(model: nn.Module, data: Loaders, opt: torch.optim.Optimizer, epoch: int) -> tuple[float, float, float]:
    """One pass over the train split; returns (mean loss, samples/s, data-wait fraction)."""
    model.train()
    data.train_tf.train()
    loss_fn = nn.CrossEntropyLoss()
    total, n = 0.0, 0
    gen = torch.Generator(device=data.train.device).manual_seed(epoch)
    watched = prebake.watch(data.train, report=lambda r: None)
    for batch in watched:
        x = data.train_tf(batch["image"], generator=gen)
        loss = loss_fn(model(x), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(x)
        n += len(x)
    report = watched.report
    assert report is not None
    return total / max(n, 1), report.samples_per_s, report.input_bound_fraction


@torch.no_grad()
def evaluate(model: nn.Module, data: Loaders) -> tuple[float, float]:
    model.eval()
    tf = data.train_tf.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, correct, n = 0.0, 0, 0
    for batch in data.val:
        logits = model(tf(batch["image"]))
        total += float(loss_fn(logits, batch["label"]))
        correct += int((logits.argmax(1) == batch["label"]).sum())
        n += len(batch["label"])
    return total / max(n, 1), correct / max(n, 1)


def fit(cfg: Config, model: nn.Module, data: Loaders, out: Path) -> list[EpochRow]:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(out / "epochs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            loss, rate, wait = train_epoch(model, data, opt, epoch)
            val_loss, acc = evaluate(model, data)
            row = EpochRow(epoch, loss, val_loss, acc, rate, wait, time.perf_counter() - t0)
            writer.writerow([row.epoch, f"{row.train_loss:.4f}", f"{row.val_loss:.4f}", f"{row.val_accuracy:.4f}",
                             f"{row.train_samples_per_s:.1f}", f"{row.data_wait_fraction:.3f}", f"{row.seconds:.2f}"])
            f.flush()
            log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %.3f, %.1f samples/s, %.0f%% waiting for data",
                     epoch, loss, val_loss, acc, rate, 100 * wait)
            rows.append(row)
    return rows
