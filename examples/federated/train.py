"""The one training loop both algorithms share, and evaluation.

bf16 autocast on CUDA only (CPU autocast would slow the small CPU runs down).
``prebake.watch`` times, per step, the wait for the next batch against the step itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import prebake

from .data import Batch


@dataclass
class LocalResult:
    """One client's local training: summed loss, samples seen, seconds waiting for data, in the Loader's
    transform on the device, and computing."""

    loss_sum: float = 0.0
    samples: int = 0
    wait_seconds: float = 0.0
    compute_seconds: float = 0.0
    transform_seconds: float = 0.0

    def add(self, other: "LocalResult") -> None:
        self.loss_sum += other.loss_sum
        self.samples += other.samples
        self.wait_seconds += other.wait_seconds
        self.compute_seconds += other.compute_seconds
        self.transform_seconds += other.transform_seconds


def autocast(device: torch.device) -> AbstractContextManager[object]:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
                device: torch.device) -> LocalResult:
    """One pass over a client's batches. The loss is summed on the device: no host sync per step."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    watched = prebake.watch(batches, report=lambda r: None)
    for batch in watched:
        x, y = batch["image"], batch["label"]
        with autocast(device):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().float() * len(y)
    r = watched.report
    assert r is not None  # set when the loop ends
    return LocalResult(float(loss_sum), r.samples, r.wait_seconds, r.compute_seconds, r.transform_seconds)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch], device: torch.device) -> float:
    """Top-1 accuracy."""
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    total = 0
    for batch in batches:
        with autocast(device):
            logits = model(batch["image"])
        correct += (logits.argmax(1) == batch["label"]).sum()
        total += len(batch["label"])
    return float(correct) / max(1, total)


def make_optimizer(params: list[nn.Parameter], name: str, lr: float, momentum: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.Adam(params, lr=lr)


def reset_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Forget moments between clients: each client starts like a fresh optimiser, without a rebuild."""
    optimizer.state.clear()
