"""Ready pipelines for two workloads: heart-sound pretraining, and CIFAR into a 224 px ViT (federated ViT)."""

from __future__ import annotations

from collections.abc import Sequence

from .color import IMAGENET_MEAN, IMAGENET_STD, Normalize
from .compose import Compose
from .image import RandomCrop, RandomHorizontalFlip, Resize
from .signal import AmplitudeScale, GaussianNoise, TimeMask, TimeShift, TimeStretch
from .spectral import FrequencyMask


def signal_pretrain_preset(sample_rate: float = 5000.0, p: float = 0.5, max_mask_hz: float = 250.0) -> Compose:
    """The heart-sound workload's six ops (TimeShift, AmplitudeScale, GaussianNoise, TimeMask, FrequencyMask,
    TimeStretch), each applied per sample with probability ``p``.

    For ``(N, 1, T)`` float signals at ``sample_rate`` Hz (the heart-sound workload: 5 kHz, T = 4000).
    The frequency mask is up to ``max_mask_hz`` wide. Wrap it in ``TwoViews`` for
    the contrastive pair the heart-sound workload made in ``__getitem__``.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate!r} must be > 0 Hz, e.g. 5000")
    nyquist = sample_rate / 2
    return Compose([
        TimeShift(max_shift=0.1, mode="roll", p=p),
        AmplitudeScale(scale=(0.8, 1.2), p=p),
        GaussianNoise(snr_db=(20.0, 40.0), p=p),
        TimeMask(max_width=0.1, p=p),
        FrequencyMask(max_width=min(1.0, max_mask_hz / nyquist), p=p),
        TimeStretch(rate=(0.8, 1.25), p=p),
    ])


def image_train_preset(size: int | Sequence[int] = 224, mean: Sequence[float] = IMAGENET_MEAN,
                       std: Sequence[float] = IMAGENET_STD, padding: int = 4) -> Compose:
    """The federated ViT workload's training transform (flip, RandomCrop(224, padding=4), Normalize), on
    native-size uint8.

    The images stay small in the cache and are resized to ``size`` on the device;
    ``mean`` and ``std`` normalise per channel (default: ImageNet's); ``padding`` is the crop's.
    Order, for speed with the same result: flip and normalize at the native size
    (49x fewer pixels for 32 -> 224; bilinear weights sum to 1, so a per-channel
    affine commutes with the resize), then resize, then the padded random crop.
    The pad is filled with normalized black, as padding before Normalize would be.
    Output: float32 ``(N, C, size, size)``.
    """
    fill = [-m / s for m, s in zip(mean, std)]
    return Compose([
        RandomHorizontalFlip(p=0.5),
        Normalize(mean, std),
        Resize(size),
        RandomCrop(size, padding=padding, fill=fill),
    ])


def image_eval_preset(size: int | Sequence[int] = 224, mean: Sequence[float] = IMAGENET_MEAN,
                      std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Normalize (by ``mean`` and ``std``) and resize to ``size``, nothing random: the eval input of
    :func:`image_train_preset`."""
    return Compose([Normalize(mean, std), Resize(size)])
