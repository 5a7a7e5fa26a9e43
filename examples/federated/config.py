"""The run's settings, parsed once from the command line into a typed :class:`Config`.

Option names are the federated ViT workload's (``federated_main.py``) where they had one.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .model import VARIANTS


@dataclass
class Config:
    alg: str = "fedavg"  # fedavg | fedlora
    model: str = "vit"
    vit: str = "tiny"  # tiny | small | base (| micro: 2 blocks, for tests)
    pretrained: Path | None = None
    cache: Path = Path("cache/cifar10")
    data: Path | None = None
    image_size: int = 224
    epochs: int = 10  # communication rounds
    num_users: int = 100
    frac: float = 0.1
    local_ep: int = 5
    local_bs: int = 32
    lr: float | None = None  # None: 1e-4 for fedavg, 3e-4 for fedlora (the seed's scripts)
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("qkv", "proj", "fc1", "fc2")
    dirichlet_alpha: float = 0.5
    min_partition_size: int = 10
    seed: int = 0
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    eval_every: int = 1
    out: Path = Path("runs/federated")
    resume: bool = False
    data_path: str = "prebake"  # prebake | offline | online
    workers: int = 4  # DataLoader workers of the offline/online paths (the seed's 4)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (3e-4 if self.alg == "fedlora" else 1e-4)

    @property
    def clients_per_round(self) -> int:
        return max(1, round(self.frac * self.num_users))


def parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(prog="python -m examples.federated",
                                description="Federated ViT on CIFAR-10 (FedAvg / FedLoRA, Dirichlet clients) "
                                            "fed by prebake.")
    a = p.add_argument
    a("--alg", choices=["fedavg", "fedlora"], default=d.alg)
    a("--model", choices=["vit"], default=d.model)
    a("--vit", choices=sorted(VARIANTS), default=d.vit, help="ViT/16 size (micro: 2 blocks, patch 8, for tests)")
    a("--pretrained", type=Path, help="local timm or Hugging Face ViT state dict (.pth/.bin/.safetensors)")
    a("--cache", type=Path, default=d.cache, help="prebake cache of CIFAR-10 (CACHE/train, CACHE/test)")
    a("--data", type=Path, help="CIFAR-10 download (cifar-10-batches-py) to build --cache from when it is missing")
    a("--image_size", type=int, default=d.image_size)
    a("--epochs", type=int, default=d.epochs, help="communication rounds")
    a("--num_users", type=int, default=d.num_users)
    a("--frac", type=float, default=d.frac, help="fraction of clients per round")
    a("--local_ep", type=int, default=d.local_ep)
    a("--local_bs", type=int, default=d.local_bs)
    a("--lr", type=float, help="default: 1e-4 (fedavg), 3e-4 (fedlora)")
    a("--optimizer", choices=["adam", "sgd"], default=d.optimizer)
    a("--momentum", type=float, default=d.momentum, help="SGD momentum")
    a("--lora_r", type=int, default=d.lora_r)
    a("--lora_alpha", type=int, default=d.lora_alpha)
    a("--lora_targets", default=",".join(d.lora_targets), help="comma list of qkv, proj, fc1, fc2")
    a("--dirichlet_alpha", type=float, default=d.dirichlet_alpha)
    a("--min_partition_size", type=int, default=d.min_partition_size)
    a("--seed", type=int, default=d.seed)
    a("--device", default=d.device)
    a("--eval_every", type=int, default=d.eval_every)
    a("--out", type=Path, default=d.out)
    a("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    a("--data_path", choices=["prebake", "offline", "online"], default=d.data_path,
      help="prebake: 32 px cache, resize+augment on the device; offline/online: the seed's pipelines")
    a("--workers", type=int, default=d.workers, help="DataLoader workers of the offline/online paths")
    return p


def parse_args(argv: Sequence[str] | None = None) -> Config:
    ns = parser().parse_args(argv)
    values = vars(ns)
    values["lora_targets"] = tuple(t.strip() for t in ns.lora_targets.split(",") if t.strip())
    bad = set(values["lora_targets"]) - {"qkv", "proj", "fc1", "fc2"}
    if bad:
        parser().error(f"--lora_targets {ns.lora_targets}: unknown {sorted(bad)}; use qkv, proj, fc1, fc2")
    return Config(**values)
