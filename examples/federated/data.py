"""The three ways to feed the clients, behind one interface (:class:`FedData`).

- ``prebake``: the 32 px uint8 cache, copied once to the device when it fits. Each client is
  a ``prebake.Loader(indices=client)`` view of it; flip, normalise, resize to ``image_size``
  and the padded random crop run on the device, batched (``prebake.augment``).
- ``offline``: the federated ViT workload's fix, a float32 [0, 1] memmap already at ``image_size``.
- ``online``: the federated ViT workload before its fix, a PIL resize per sample.

The seed pipelines run in one DataLoader per run with persistent workers; its batch sampler
is pointed at a client before each local epoch, so no worker is started per round or client.
Every path yields ``{"image": float32 (B, 3, S, S) normalised, "label": int64 (B,)}`` on the device.
Evaluation always reads the test split through prebake, so accuracies compare across paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

import prebake
from prebake.augment import batch_transform, image_eval_preset, image_train_preset
from prebake.measure.bench.pipelines import MEAN, STD, BenchData, SeedOffline, SeedOnline, write_seed_offline

from .config import Config

logger = logging.getLogger(__name__)
Batch = dict[str, Any]


class FedData(Protocol):
    def client_epoch(self, client: int, epoch: int) -> Iterable[Batch]: ...
    def test_batches(self) -> Iterable[Batch]: ...


def open_caches(cache: Path, data: Path | None) -> tuple[prebake.Cache, prebake.Cache]:
    """``cache/train`` and ``cache/test``, baked from ``data`` first when missing."""
    try:
        return prebake.open(cache / "train"), prebake.open(cache / "test")
    except prebake.CacheNotFoundError:
        if data is None:
            raise prebake.CacheNotFoundError(
                f"no prebake cache at {cache}/train and {cache}/test; pass --data path/to/cifar-10-batches-py "
                f"to build it, or run 'prebake build path/to/cifar-10-batches-py {cache}'") from None
    logger.info("building the prebake cache %s from %s", cache, data)
    built = prebake.build(data, cache)
    if not isinstance(built, dict) or not {"train", "test"} <= set(built):
        raise prebake.SourceError(f"{data} did not give train and test splits; pass a CIFAR-10 download")
    return built["train"], built["test"]


def fits_on(device: torch.device, cache: prebake.Cache) -> bool:
    """Whether the image column takes under a quarter of the free memory of ``device``."""
    need = np.asarray(cache.column("image")).nbytes  # a memmap: no copy
    if device.type == "cuda":
        return need < torch.cuda.mem_get_info(device)[0] / 4
    return need < os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 4


class PrebakeData:
    """One Loader view per client over one cache; augmentation and resize on the device."""

    def __init__(self, train: prebake.Cache, test: prebake.Cache, parts: Sequence[np.ndarray], cfg: Config):
        device = torch.device(cfg.device)
        resident = fits_on(device, train)
        where = "copied to " + str(device) if resident else "memory-mapped"
        logger.info("prebake path: cache %s (%s)", train.path, where)
        train_tf = batch_transform(image=image_train_preset(cfg.image_size, MEAN, STD)).to(device)
        eval_tf = batch_transform(image=image_eval_preset(cfg.image_size, MEAN, STD)).to(device).eval()
        self.source = train
        # every client Loader over the same Cache object shares one preloaded copy (Cache.preloaded)
        self.clients = [prebake.Loader(train, cfg.local_bs, seed=cfg.seed + k, indices=p, device=device,
                                       columns=["image", "label"], transform=train_tf,
                                       preload="device" if resident else None) for k, p in enumerate(parts)]
        self.test = prebake.Loader(test, max(256, cfg.local_bs), shuffle=False, device=device,
                                   columns=["image", "label"], transform=eval_tf)

    def client_epoch(self, client: int, epoch: int) -> Iterable[Batch]:
        loader = self.clients[client]
        loader.set_epoch(epoch)
        return loader

    def test_batches(self) -> Iterable[Batch]:
        return self.test


class ClientBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of the selected client's indices, shuffled per (seed, client, epoch)."""

    def __init__(self, batch_size: int, seed: int):
        self.batch_size, self.seed = batch_size, seed
        self.indices, self.key = np.zeros(0, np.int64), (0, 0)

    def select(self, indices: np.ndarray, client: int, epoch: int) -> None:
        self.indices, self.key = indices, (client, epoch)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, *self.key]).permutation(self.indices)
        for lo in range(0, len(order), self.batch_size):
            yield order[lo:lo + self.batch_size].tolist()

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)


class SeedData:
    """The seed's pipelines (``online`` or ``offline``) in one persistent DataLoader."""

    def __init__(self, train: prebake.Cache, test: prebake.Cache, parts: Sequence[np.ndarray], cfg: Config):
        labels = train.targets
        if cfg.data_path == "online":
            raw_hwc = np.ascontiguousarray(np.asarray(train.column("image")).transpose(0, 2, 3, 1))
            dataset: torch.utils.data.Dataset = SeedOnline(raw_hwc, labels, cfg.image_size)
        else:
            dataset = SeedOffline(*offline_file(train, cfg), labels)
        self.parts, self.device = parts, torch.device(cfg.device)
        self.sampler = ClientBatches(cfg.local_bs, cfg.seed)
        workers = cfg.workers
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda", prefetch_factor=2 if workers > 0 else None)
        eval_tf = batch_transform(image=image_eval_preset(cfg.image_size, MEAN, STD)).to(self.device).eval()
        self.test_loader = prebake.Loader(test, max(256, cfg.local_bs), shuffle=False, device=self.device,
                                          columns=["image", "label"], transform=eval_tf)

    def client_epoch(self, client: int, epoch: int) -> Iterator[Batch]:
        self.sampler.select(self.parts[client], client, epoch)
        for x, y in self.loader:
            yield {"image": x.to(self.device, non_blocking=True), "label": y.to(self.device, non_blocking=True)}

    def test_batches(self) -> Iterable[Batch]:
        return self.test_loader


def offline_file(train: prebake.Cache, cfg: Config) -> tuple[Path, tuple[int, ...]]:
    """The seed's float32 [0, 1] N x 3 x S x S memmap, written once into ``OUT/seed_offline/``."""
    shape = (len(train), 3, cfg.image_size, cfg.image_size)
    path = cfg.out / "seed_offline" / f"train_{cfg.image_size}.f32"
    if not path.exists() or path.stat().st_size != int(np.prod(shape)) * 4:
        path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("writing the seed's offline float32 file %s (%.1f GB)", path, np.prod(shape) * 4 / 1e9)
        bench = BenchData(train, np.zeros((0, 32, 32, 3), np.uint8), train.targets, cfg.image_size,
                          cfg.local_bs, torch.device("cpu"), 0, path.parent)
        write_seed_offline(bench, path)
    return path, shape


def make_data(train: prebake.Cache, test: prebake.Cache, parts: Sequence[np.ndarray], cfg: Config) -> FedData:
    if cfg.data_path == "prebake":
        return PrebakeData(train, test, parts, cfg)
    return SeedData(train, test, parts, cfg)
