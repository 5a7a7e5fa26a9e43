"""CSV -> bake -> patient split -> train: ``python -m examples.medical3d --config config.json``."""

from __future__ import annotations

import logging

import torch

from .config import Config
from .data import bake, ensure_csv, loaders, splits
from .model import SmallCNN3d
from .train import EpochRow, fit

log = logging.getLogger(__name__)


def run(cfg: Config) -> list[EpochRow]:
    torch.manual_seed(cfg.seed)
    device = cfg.resolved_device()
    ensure_csv(cfg)
    cache = bake(cfg)
    parts = splits(cfg, cache)
    log.info("split by %s: %s", cfg.split.by, ", ".join(f"{k} {len(v)}" for k, v in parts.items()))
    data = loaders(cfg, cache, parts, device)
    model = SmallCNN3d(data.in_channels, data.num_classes).to(device)
    return fit(cfg, model, data, cfg.output_dir)
