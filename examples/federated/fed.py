"""The two algorithms: which parameters a client trains and sends, and how the server averages them.

FedAvg trains and sends every parameter. FedLoRA wraps the model with ``peft`` LoRA adapters
(rank r, scaling alpha / r) on the chosen linear layers of the blocks, freezes the base and
trains, sends and averages only the adapters and the classification head. Both then share
one training loop (train.py): the difference is entirely in :class:`Federated`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

State = dict[str, Tensor]


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("qkv", "proj", "fc1", "fc2")


class Federated:
    """A model plus the names of the parameters that travel between clients and server."""

    def __init__(self, model: nn.Module, shared: Sequence[str]):
        self.model = model
        params = dict(model.named_parameters())
        self.shared = list(shared)
        self.params = [params[n] for n in self.shared]

    def send(self) -> State:
        """A detached copy of the shared parameters (what a client uploads)."""
        return {n: p.detach().clone() for n, p in zip(self.shared, self.params)}

    @torch.no_grad()
    def receive(self, state: State) -> None:
        """Copy ``state`` into the shared parameters in place (optimisers keep their references)."""
        for n, p in zip(self.shared, self.params):
            p.copy_(state[n])


def fedavg_model(model: nn.Module) -> Federated:
    return Federated(model, [n for n, _ in model.named_parameters()])


def _lora_pattern(targets: Iterable[str]) -> str:
    # Blocks only: a bare "proj" would also match patch_embed.proj (a Conv2d).
    names = "|".join(sorted(set(targets)))
    return rf".*blocks\.\d+\.(attn|mlp)\.({names})"


def fedlora_model(model: nn.Module, lora: LoraSettings) -> Federated:
    """Wrap with peft LoRA: base frozen; adapters and ``head`` trainable and shared."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("--alg fedlora needs peft: pip install 'prebake[federated]' (or pip install peft)") from e
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=_lora_pattern(lora.targets),
                        lora_dropout=0.0, bias="none")
    wrapped = get_peft_model(model, config)
    for name, p in wrapped.named_parameters():
        if ".head." in f".{name}":
            p.requires_grad_(True)
    return Federated(wrapped, [n for n, p in wrapped.named_parameters() if p.requires_grad])


class WeightedMean:
    """Running sample-weighted mean of client states, so the server never holds all of them."""

    def __init__(self) -> None:
        self.total: State = {}
        self.weight = 0.0

    def add(self, state: State, weight: float) -> None:
        for n, t in state.items():
            contrib = t.float() * weight
            self.total[n] = self.total[n] + contrib if n in self.total else contrib
        self.weight += weight

    def result(self, like: State) -> State:
        if self.weight <= 0:
            raise ValueError("no client state was added (total weight 0); every selected client had no data")
        return {n: (t / self.weight).to(like[n].dtype) for n, t in self.total.items()}


def fedavg(states: Sequence[State], weights: Sequence[float]) -> State:
    """``sum_k w_k state_k / sum_k w_k``, per tensor; weights are the clients' sample counts."""
    mean = WeightedMean()
    for s, w in zip(states, weights):
        mean.add(s, float(w))
    return mean.result(states[0])
