"""The recordings (synthetic WAV class folders, or ``--data DIR``), their prebake cache, and the
prebake data path: one cycle per sample through ``prebake.Elements``, two views on the device."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import prebake
from prebake.augment import SplitSubstructures, TwoViews, signal_pretrain_preset
from prebake.augment.compose import Compose
from prebake.augment.signal import AmplitudeScale, GaussianNoise, TimeMask, TimeShift, TimeStretch
from prebake.augment.spectral import FrequencyMask
from prebake.sources import detect
from prebake.steps import Resample, SegmentCycles
from prebake.synthetic import pcg

from .config import Augmentation, Config

CLASSES = ("murmur", "normal")
#: The columns training reads: one gather each per batch.
COLUMNS = ["cycles", "cycle_lengths", "label"]


def write_synthetic(root: Path, cfg: Config) -> Path:
    """``root/<murmur|normal>/<n>.wav``: 16-bit PCM recordings at varied heart rates and SNRs."""
    import soundfile as sf

    d = cfg.data
    rng = np.random.default_rng(cfg.train.seed)
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(d.recordings_per_class):
            x, _, _ = pcg(rng.uniform(*d.seconds), d.sample_rate, rng.uniform(*d.heart_rate), rng.uniform(*d.snr_db),
                          murmur=label == "murmur", rng=rng)
            sf.write(root / label / f"{label}_{i:03d}.wav", 0.9 * x, d.sample_rate, subtype="PCM_16")
    return root


def recordings(root: Path, cache: prebake.Cache) -> tuple[list[Path], list[int]]:
    """The audio files behind ``cache``'s items (the source's files less the skipped ones) and their labels."""
    source = detect(root, kind="audio")[""]
    skipped = {s["key"] for s in cache.manifest["skipped"]}
    files = [source.root / k for k in source.keys() if k not in skipped]
    return files, [int(v) for v in cache.targets]


def bake(root: Path, cache_dir: Path, cfg: Config) -> prebake.Cache:
    """Decode, resample to ``data.sample_rate`` and segment every recording once (a no-op when up to date)."""
    steps = [Resample(cfg.data.sample_rate), SegmentCycles(length=cfg.data.cycle_length)]
    return prebake.build(root, cache_dir, steps, kind="audio", progress=False)


def preset(a: Augmentation, sample_rate: float) -> Compose:
    """``signal_pretrain_preset``'s six ops with the config's parameters."""
    if a == Augmentation():
        return signal_pretrain_preset(sample_rate, p=a.p, max_mask_hz=a.freq_mask_hz)
    return Compose([
        TimeShift(a.time_shift, "roll", p=a.p), AmplitudeScale(a.amplitude_scale, p=a.p),
        GaussianNoise(snr_db=a.noise_snr_db, p=a.p), TimeMask(a.time_mask, p=a.p),
        FrequencyMask(min(1.0, a.freq_mask_hz / (sample_rate / 2)), p=a.p), TimeStretch(a.time_stretch, p=a.p)])


class PretrainViews(nn.Module):
    """A Loader transform: int16 cycles -> two augmented float views (and their substructures), on the device."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.length, self.k = cfg.data.cycle_length, cfg.data.substructures
        self.views = TwoViews(preset(cfg.augmentation, cfg.data.sample_rate))
        self.split = SplitSubstructures(self.k) if self.k else None

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        x = prebake.crop_or_pad(batch["cycles"], batch["cycle_lengths"], self.length, crop="start")
        v1, v2 = self.views(x, generator=generator)  # the Loader's per-batch generator: exact on resume
        out = {"view1": v1, "view2": v2, "label": batch["label"], "item": batch["item"], "element": batch["element"]}
        if self.split is not None:
            out["subs1"], out["subs2"] = self.split(v1), self.split(v2)  # the seed's split_substructures_batch
        return out


class PrebakeBatches:
    """Epochs of ``prebake.Loader`` batches over the cycles, augmented on the device."""

    def __init__(self, cache: prebake.Cache, cfg: Config, device: str):
        self.transform = PretrainViews(cfg).to(device).train()
        self.loader = prebake.Loader(prebake.Elements(cache, "cycles", columns=COLUMNS), cfg.train.batch_size,
                                     seed=cfg.train.seed, drop_last=True, device=device, transform=self.transform,
                                     transform_in_threads=cfg.hardware.augment_in_threads,  # CPU only
                                     preload="ram" if cfg.data_cache.cache_in_memory else None,
                                     prefetch=cfg.hardware.prefetch_factor)
        self.refresh_seconds = 0.0

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        self.loader.set_epoch(epoch)
        return iter(self.loader)


def eval_cycles(cache: prebake.Cache, cfg: Config, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every cycle un-augmented ``(N, 1, T)`` float, its label and its recording: the probe's inputs."""
    cycles = prebake.Elements(cache, "cycles", columns=COLUMNS)
    batch = cycles[np.arange(len(cycles))]
    x = prebake.crop_or_pad(torch.from_numpy(batch["cycles"]), torch.from_numpy(batch["cycle_lengths"]),
                            cfg.data.cycle_length, crop="start")
    return x.to(device), torch.from_numpy(batch["label"]).to(device), torch.from_numpy(batch["item"])
