"""The pipelines ``prebake bench`` compares. Each yields ``(image, label)`` batches on the device,
image float32 N x 3 x S x S normalised with the CIFAR-10 mean/std, label int64 — the same output
from every pipeline, so samples/s compare like for like.

The federated ViT workload's two original pipelines ("seed" online and offline) are rebuilt
without torchvision, with the same operations: ``Resize`` on a PIL image is ``PIL.Image.resize``
(bilinear), ``ToTensor`` is the uint8 HWC -> float CHW / 255 copy, ``Normalize`` clones then
``sub_``/``div_``. Both run in ``DataLoader(num_workers=4, pin_memory=True, prefetch_factor=2)``,
the original configuration (pinning only when the device is CUDA: there is nothing to pin for on a CPU).

Every DataLoader here uses ``persistent_workers=True``, so an epoch boundary does not restart
its workers. The seeds did not do that; it favours the baselines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.utils.data
from PIL import Image

from ...augment import Normalize, Resize
from ...augment.image import resize
from ...cache.reader import Cache
from ...load.loader import Loader

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Pipeline:
    """One contender: ``epoch()`` returns an iterable over one epoch of batches."""

    name: str
    epoch: Callable[[], Iterable[Batch]]
    setup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchData:
    """What every pipeline is built from: the cache, the raw 32 px images and the settings."""

    cache: Cache
    raw_hwc: np.ndarray  # uint8 N x H x W x 3, as torchvision's CIFAR10.data holds it
    labels: np.ndarray
    size: int
    batch_size: int
    device: torch.device
    workers: int
    workdir: Path

    @property
    def n(self) -> int:
        return len(self.labels)


class DeviceNormalize:
    """uint8 N x 3 x H x W on the device -> float32 normalised, then resized to ``size`` when needed.

    Normalising before an upsampling resize is exact (bilinear weights sum to 1) and touches
    (S/H)^2 fewer values: for CIFAR 32 -> 224 that is 49x fewer.
    """

    def __init__(self, size: int, device: torch.device):
        self.normalize = Normalize(MEAN, STD).to(device)
        self.resize = Resize(size).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.normalize(x))


def prebake_loader(data: BenchData, preload: str | None) -> Pipeline:
    norm = DeviceNormalize(data.size, data.device)
    indices = None if data.n == len(data.cache) else np.arange(data.n)
    loader = Loader(data.cache, data.batch_size, shuffle=True, indices=indices, device=data.device,
                    columns=["image", "label"], preload=preload,
                    transform=cast(Any, lambda b: (norm(b["image"]), b["label"])))
    name = "prebake.Loader: one sorted gather per batch" + (f", preload={preload!r}" if preload else ", memmap")
    # the Loader yields what its transform returns: here (image, label) pairs, as every contender does
    return Pipeline(name, lambda: cast(Iterable[Batch], loader))


def make_dataloader(dataset: Any, data: BenchData, **kwargs: Any) -> torch.utils.data.DataLoader:
    workers = data.workers
    options: dict[str, Any] = {"batch_size": data.batch_size, "shuffle": True, **kwargs}
    return torch.utils.data.DataLoader(
        dataset, num_workers=workers, pin_memory=data.device.type == "cuda", persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None, **options)


def on_device(loader: Iterable[Any], data: BenchData, unpack: Callable[[Any], Batch],
               norm: DeviceNormalize | None) -> Callable[[], Iterator[Batch]]:
    def epoch() -> Iterator[Batch]:
        for item in loader:
            x, y = unpack(item)
            x, y = x.to(data.device, non_blocking=True), y.to(data.device, non_blocking=True)
            yield (norm(x) if norm is not None else x), y
    return epoch


def dataloader_over_cache(data: BenchData) -> Pipeline:
    """A stock DataLoader handed whole batches: ``cache[list_of_indices]`` is one gather per column."""
    sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(data.n)), data.batch_size, False)
    loader = make_dataloader(data.cache, data, batch_size=None, shuffle=None, sampler=sampler)
    norm = DeviceNormalize(data.size, data.device)
    name = f"DataLoader x{data.workers} over prebake.open, whole batches (batch sampler)"
    return Pipeline(name, on_device(loader, data, lambda b: (b["image"], b["label"]), norm))


# -- the original pipelines --------------------------------------------------------------------

def _seed_normalize(x: torch.Tensor) -> torch.Tensor:
    """torchvision's Normalize(inplace=False): clone, then sub_ and div_ by per-channel tensors."""
    mean = torch.as_tensor(MEAN, dtype=x.dtype).view(-1, 1, 1)
    std = torch.as_tensor(STD, dtype=x.dtype).view(-1, 1, 1)
    return x.clone().sub_(mean).div_(std)


class SeedOnline(torch.utils.data.Dataset):
    """The federated ViT workload before its fix: per sample, PIL Resize(S) -> ToTensor -> Normalize."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, size: int):
        self.images, self.labels, self.size = images_hwc, labels, size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i])
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        return _seed_normalize(x.float().div(255)), int(self.labels[i])


class SeedOffline(torch.utils.data.Dataset):
    """The federated ViT workload after its fix (``OfflineCIFAR10``): float32 memmap row ``.copy()`` -> Normalize."""

    def __init__(self, path: Path, shape: tuple[int, ...], labels: np.ndarray):
        self.path, self.shape, self.labels = path, shape, labels
        self.data = np.memmap(path, dtype=np.float32, mode="r", shape=shape)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return _seed_normalize(torch.from_numpy(self.data[i].copy())), int(self.labels[i])


def seed_online(data: BenchData) -> Pipeline:
    loader = make_dataloader(SeedOnline(data.raw_hwc, data.labels, data.size), data)
    name = f"seed online: per-sample PIL resize + ToTensor + Normalize, DataLoader x{data.workers}"
    return Pipeline(name, on_device(loader, data, tuple, None))


def write_seed_offline(data: BenchData, path: Path) -> tuple[int, ...]:
    """The original preprocess output: float32 [0, 1] N x 3 x S x S, written in chunks."""
    shape = (data.n, 3, data.size, data.size)
    out = np.memmap(path, dtype=np.float32, mode="w+", shape=shape)
    images = cast(np.ndarray, data.cache.column("image"))  # a fixed uint8 column: image_size() checked it
    step = max(1, (64 << 20) // (3 * data.size * data.size * 4))
    for lo in range(0, data.n, step):
        x = resize(torch.from_numpy(np.array(images[lo:min(lo + step, data.n)])).float(), (data.size, data.size))
        out[lo:lo + step] = (x / 255.0).numpy()
    out.flush()
    del out
    return shape


def seed_offline(data: BenchData) -> Pipeline:
    t = time.perf_counter()
    path = data.workdir / f"seed_offline_{data.size}.f32"
    shape = write_seed_offline(data, path)
    setup = time.perf_counter() - t
    loader = make_dataloader(SeedOffline(path, shape, data.labels), data)
    name = f"seed offline: float32 memmap, per-sample .copy() + Normalize, DataLoader x{data.workers}"
    return Pipeline(name, on_device(loader, data, tuple, None), setup,
                    [f"seed offline file: {path.stat().st_size / 2**20:,.0f} MB float32, written in {setup:.1f} s"])
