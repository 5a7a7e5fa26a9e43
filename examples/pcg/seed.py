"""The heart-sound workload's CPU pipelines, rebuilt for the comparison (``--data_path original`` and ``viewcache``).

``original``: every ``__getitem__`` reads its recording (from RAM with ``cache_in_memory``, else
from disk), segments it into cardiac cycles, takes its cycle, crops or pads it, runs the six
numpy/scipy augmentations twice (two views) and splits each view into substructures.
``viewcache``: the seed's fix: cycles segmented once and kept in memory, both views of every
cycle precomputed in the main process every ``view_cache_refresh_epochs`` epochs
(``refresh_view_cache``), ``__getitem__`` returns the stored views. Both run in a DataLoader
with the seed's ``num_workers``, ``pin_memory``, ``prefetch_factor`` and ``persistent_workers``.

The segmentation is prebake's (:func:`prebake.steps.cycles.find_cycles`), so every path
trains on the same cycles; the bench checks that they are equal.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prebake.sources.audio import read_audio
from prebake.steps.cycles import cycle_bounds, find_cycles

from .config import Augmentation, Config


def cycles_of(signal: np.ndarray, rate: int, length: int) -> list[np.ndarray]:
    """The recording's cycles as float32 in [-1, 1), cut or zero-padded to ``length`` (S1 first)."""
    seg = find_cycles(signal, rate)
    starts, bounds = cycle_bounds(seg)
    out = []
    for s, n in zip(starts, bounds[:, -1]):
        c = np.zeros(length, np.float32)
        piece = signal[s:s + min(int(n), length)].astype(np.float32) / 32768
        c[:len(piece)] = piece
        out.append(c)
    return out


def augment(x: np.ndarray, a: Augmentation, rate: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's six per-sample ops on one ``(T,)`` cycle, each with probability ``a.p``."""
    import scipy.signal

    t = x.shape[-1]
    x = x.copy()
    if rng.random() < a.p:  # TimeShift (np.roll)
        k = int(a.time_shift * t)
        x = np.roll(x, rng.integers(-k, k + 1))
    if rng.random() < a.p:  # AmplitudeScale
        x = x * rng.uniform(*a.amplitude_scale)
    if rng.random() < a.p:  # GaussianNoise at an SNR in dB
        rms = np.sqrt(np.mean(x ** 2))
        x = x + rng.standard_normal(t).astype(np.float32) * rms / 10 ** (rng.uniform(*a.noise_snr_db) / 20)
    if rng.random() < a.p:  # TimeMask
        w = rng.integers(0, int(a.time_mask * t) + 1)
        s = rng.integers(0, t - w + 1)
        x[s:s + w] = 0
    if rng.random() < a.p:  # FrequencyMask
        spec = np.fft.rfft(x)
        w = rng.integers(0, int(min(1.0, a.freq_mask_hz / (rate / 2)) * len(spec)) + 1)
        s = rng.integers(0, len(spec) - w + 1)
        spec[s:s + w] = 0
        x = np.fft.irfft(spec, n=t)
    if rng.random() < a.p:  # TimeStretch: scipy.signal.resample, then crop or pad
        y = scipy.signal.resample(x, int(round(t / rng.uniform(*a.time_stretch))))
        x = y[:t] if len(y) >= t else np.pad(y, (0, t - len(y)))
    return x.astype(np.float32)


def split(x: np.ndarray, k: int) -> np.ndarray:
    """The seed's ``split_substructures``: k equal parts, ``(k, T // k)``."""
    return x[: (len(x) // k) * k].reshape(k, -1)


class Recordings:
    """The recordings' paths and labels, and which cycle of which recording each index is."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], cfg: Config):
        self.files, self.labels, self.cfg = list(files), list(labels), cfg
        self.rate = cfg.data.sample_rate
        self.signals = [read_audio(f)[0] for f in self.files]  # int16, as prebake bakes them
        self.cycles = [cycles_of(s, self.rate, cfg.data.cycle_length) for s in self.signals]
        self.index = [(i, j) for i, c in enumerate(self.cycles) for j in range(len(c))]


class OriginalDataset(torch.utils.data.Dataset):
    """The heart-sound workload before its fix: segmentation, two augmented views and the split in every
    ``__getitem__``."""

    def __init__(self, rec: Recordings, seed: int):
        self.rec, self.seed = rec, seed
        self.in_memory = rec.cfg.data_cache.cache_in_memory
        self._rng: np.random.Generator | None = None

    def rng(self) -> np.random.Generator:
        """One stream per worker process, drawn on from call to call (the seed used np.random)."""
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng([self.seed, 0 if info is None else info.id + 1])
        return self._rng

    def __len__(self) -> int:
        return len(self.rec.index)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i, j = self.rec.index[idx]
        cfg = self.rec.cfg
        signal = self.rec.signals[i] if self.in_memory else read_audio(self.rec.files[i])[0]
        cycle = cycles_of(signal, self.rec.rate, cfg.data.cycle_length)[j]  # segmented again, every time
        rng = self.rng()
        v1, v2 = (augment(cycle, cfg.augmentation, self.rec.rate, rng) for _ in range(2))
        return _sample(v1, v2, cfg.data.substructures, self.rec.labels[i], i, j)


class ViewCacheDataset(torch.utils.data.Dataset):
    """The heart-sound workload after its fix: cycles in memory, both views precomputed every N epochs."""

    def __init__(self, rec: Recordings, seed: int):
        self.rec, self.seed = rec, seed
        self.views: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.rec.index)

    def refresh_view_cache(self, epoch: int) -> bool:
        """The seed's refresh: every view of every cycle, in this process, when ``epoch`` is due."""
        if self.views and epoch % self.rec.cfg.data_cache.view_cache_refresh_epochs:
            return False
        a, rate = self.rec.cfg.augmentation, self.rec.rate
        self.views = []
        for idx, (i, j) in enumerate(self.rec.index):
            rng = np.random.default_rng([self.seed, epoch, idx])
            c = self.rec.cycles[i][j]
            self.views.append((augment(c, a, rate, rng), augment(c, a, rate, rng)))
        return True

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i, j = self.rec.index[idx]
        v1, v2 = self.views[idx]
        return _sample(v1, v2, self.rec.cfg.data.substructures, self.rec.labels[i], i, j)


def _sample(v1: np.ndarray, v2: np.ndarray, k: int, label: int, item: int, element: int) -> dict[str, Any]:
    out = {"view1": torch.tensor(v1[None]), "view2": torch.tensor(v2[None]), "label": label, "item": item,
           "element": element}  # the seed re-wraps every sample with torch.tensor
    if k:
        out["subs1"], out["subs2"] = torch.tensor(split(v1, k)[:, None]), torch.tensor(split(v2, k)[:, None])
    return out


class SeedBatches:
    """Epochs of batches from a seed dataset through a DataLoader with the seed's settings, on ``device``.

    ``viewcache`` refreshes its views at the start of the epochs that are due, in the main
    process, and then starts new workers: persistent workers forked before a refresh would
    keep serving the views they were forked with.
    """

    def __init__(self, dataset: OriginalDataset | ViewCacheDataset, cfg: Config, device: str):
        self.dataset, self.cfg, self.device = dataset, cfg, device
        self.loader: torch.utils.data.DataLoader | None = None
        self.refresh_seconds = 0.0

    def _make_loader(self, epoch: int) -> torch.utils.data.DataLoader:
        h = self.cfg.hardware
        workers = h.num_workers
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.cfg.train.batch_size, shuffle=True, drop_last=True,
            num_workers=workers, pin_memory=h.pin_memory and self.device.startswith("cuda"),
            prefetch_factor=h.prefetch_factor if workers else None,
            persistent_workers=h.persistent_workers and workers > 0,
            generator=torch.Generator().manual_seed(self.cfg.train.seed + epoch))

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        """The epoch's batches; a view refresh runs inside it, so ``prebake.watch`` counts it as waiting."""
        import time

        t0 = time.perf_counter()
        if isinstance(self.dataset, ViewCacheDataset) and self.dataset.refresh_view_cache(epoch):
            self.loader = None  # new workers see the new views
        self.refresh_seconds = time.perf_counter() - t0
        if self.loader is None or not self.cfg.hardware.persistent_workers:
            self.loader = self._make_loader(epoch)
        for batch in self.loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
