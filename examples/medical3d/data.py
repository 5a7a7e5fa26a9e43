"""The data side: the CSV (or synthetic NIfTI volumes), the bake, the patient-level split, the loaders and
the device-side augmentation. Each step is a prebake call; this file only chooses them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import prebake
import prebake.augment as A
from prebake.steps import CropOrPad, Orient, Spacing, Window

from .config import Config

log = logging.getLogger(__name__)


def ensure_csv(cfg: Config) -> None:
    """Write synthetic volumes and their CSV when asked to and the CSV is not there yet."""
    if cfg.csv_path.exists() or cfg.synthetic_patients <= 0:
        return
    from prebake.synthetic_volumes import write_volume_table

    written = write_volume_table(cfg.csv_path.parent, patients=cfg.synthetic_patients, scans_per_patient=(1, 2),
                                 shape=(36, 48), spacing=(0.9, 1.6), seed=cfg.seed)
    if written != cfg.csv_path:
        written.rename(cfg.csv_path)
    log.info("wrote %d synthetic patients' volumes and %s", cfg.synthetic_patients, cfg.csv_path)


def bake(cfg: Config) -> prebake.Cache:
    """``prebake build CSV CACHE --keep-column patient_id ... --orientation RAS --spacing ... --window ...``."""
    v = cfg.volume
    steps = [Orient(v.orientation), Spacing(v.spacing), Window(*v.window), CropOrPad(v.volume_shape, v.window[0])]
    options = prebake.SourceOptions(path_column=cfg.path_column, label_columns=(cfg.label_column,),
                                    keep_columns=tuple(cfg.keep_columns), base_dir=cfg.base_path)
    return prebake.build(cfg.csv_path, cfg.cache_dir, steps, source_options=options, workers=cfg.num_workers)


def splits(cfg: Config, cache: prebake.Cache) -> dict[str, np.ndarray]:
    """``prebake split CACHE --by patient_id ...``: no patient in two splits, saved beside the cache."""
    return prebake.split(cache, by=cfg.split.by, fractions=cfg.split.fractions, seed=cfg.seed,
                         stratify=cfg.split.stratify, save=True)


def augmentation(cfg: Config, low: float, high: float) -> A.Compose:
    """int16 HU in, float in [0, 1] out: crop, flips, 90° turns on int16 (half the bytes), then window."""
    a = cfg.augment
    ops: list[A.Op] = [A.RandomCrop3d(a.crop), A.RandomFlip3d(a.flip_axes, p=0.5)]
    if a.rotate90:
        ops.append(A.RandomRotate90((1, 2), p=0.5))
    ops += [A.IntensityWindow(low, high), A.RandomIntensity(a.intensity_scale, a.intensity_shift, p=0.8),
            A.GaussianNoise3d(a.noise_std, p=0.5)]
    return A.Compose(ops)


@dataclass
class Loaders:
    train: prebake.Loader
    val: prebake.Loader
    train_tf: A.Compose
    num_classes: int
    in_channels: int


def loaders(cfg: Config, cache: prebake.Cache, parts: dict[str, np.ndarray], device: str) -> Loaders:
    """The train loader (shuffled) and the val one (``preload_val_data``: its columns on the device).

    Only ``image`` and ``label`` are loaded: the string ``patient_id`` column stays in the cache (the
    Loader hands tensors on, and strings have no tensor type)."""
    columns = ["image", "label"]
    low, high = cfg.volume.window
    train_tf = augmentation(cfg, low, high).to(device)
    cc = cfg.cache_config
    train = prebake.Loader(cache, cfg.batch_size, seed=cfg.seed, indices=parts["train"], columns=columns,
                           drop_last=True, device=device, preload="device" if cc.preload_train_data else None)
    val = prebake.Loader(cache, cfg.batch_size, shuffle=False, indices=parts["val"], columns=columns, device=device,
                         preload="device" if cc.preload_val_data else None)
    return Loaders(train, val, train_tf, len(cache.classes), int(cache.column("image").shape[1]))


def eval_batch(batch: dict[str, Any], cfg: Config, tf: A.Compose) -> torch.Tensor:
    """Validation input: the same window and the crop's deterministic version (eval mode: centre crop)."""
    return tf.eval()(batch["image"])
