"""Random augmentation, batched on the device: per-sample parameters, no host syncs, replayable.

Every op is an ``nn.Module`` with ``sample_params(batch_shape, device, generator)``
and a pure ``apply(x, params)``; ``op(x)`` does both, ``op(x, return_params=True)``
also returns the params and ``op(x, params)`` replays them. ``p`` is per sample.
Random ops are the identity in ``.eval()``. See :mod:`prebake.augment.base`.
Images are ``(N, C, H, W)``, signals ``(N, C, T)``, volumes ``(N, C, D, H, W)``
(:mod:`prebake.augment.volume`).

>>> import torch
>>> from prebake.augment import Compose, RandomCrop, RandomHorizontalFlip, Normalize
>>> pipeline = Compose([RandomHorizontalFlip(), RandomCrop(32, padding=4), Normalize()])
>>> images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
>>> out, params = pipeline(images, generator=torch.Generator().manual_seed(0), return_params=True)
>>> out.shape, out.dtype
(torch.Size([8, 3, 32, 32]), torch.float32)
>>> torch.equal(pipeline(images, params), out)
True
"""

from __future__ import annotations

from .base import Op, Params
from .color import IMAGENET_MEAN, IMAGENET_STD, ColorJitter, Normalize
from .compose import BatchTransform, Compose, OneOf, RandomApply, TwoViews, batch_transform
from .image import RandomCrop, RandomErasing, RandomHorizontalFlip, RandomResizedCrop, Resize
from .mix import CutMix, MixUp
from .presets import image_eval_preset, image_train_preset, signal_pretrain_preset
from .signal import AmplitudeScale, GaussianNoise, PolarityInversion, TimeMask, TimeShift, TimeStretch
from .spectral import BandPass, BandStop, FrequencyMask
from .substructures import SplitSubstructures
from .volume import GaussianNoise3d, IntensityWindow, RandomCrop3d, RandomFlip3d, RandomIntensity, RandomRotate90

__all__ = [
    "AmplitudeScale",
    "BandPass",
    "BandStop",
    "BatchTransform",
    "ColorJitter",
    "Compose",
    "CutMix",
    "FrequencyMask",
    "GaussianNoise",
    "GaussianNoise3d",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IntensityWindow",
    "MixUp",
    "Normalize",
    "OneOf",
    "Op",
    "Params",
    "PolarityInversion",
    "RandomApply",
    "RandomCrop",
    "RandomCrop3d",
    "RandomErasing",
    "RandomFlip3d",
    "RandomHorizontalFlip",
    "RandomIntensity",
    "RandomResizedCrop",
    "RandomRotate90",
    "Resize",
    "SplitSubstructures",
    "TimeMask",
    "TimeShift",
    "TimeStretch",
    "TwoViews",
    "batch_transform",
    "image_eval_preset",
    "image_train_preset",
    "signal_pretrain_preset",
]
