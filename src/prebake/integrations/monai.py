"""MONAI pipelines through prebake: bake a ``Compose``'s deterministic prefix, apply the rest per batch.

>>> import prebake                                                       # doctest: +SKIP
>>> from prebake.integrations.monai import DataList, to_device_ops       # doctest: +SKIP
>>> cache = prebake.build(DataList(files), "cache/ct", steps=train_transforms)  # doctest: +SKIP
>>> device, missing = to_device_ops(cache.build_report.remainder)       # doctest: +SKIP
>>> loader = prebake.Loader(cache, 8, transform=device)                  # doctest: +SKIP

- ``prebake.build(source, out, steps=compose)`` splits ``compose`` at its first random transform,
  by MONAI's own rule (:mod:`prebake.steps.monai`), bakes the prefix in the workers as a
  :class:`~prebake.steps.MonaiTransforms` step, and leaves the rest in
  ``cache.build_report.remainder``; :func:`split` does the same split without building.
- :class:`DataList`: MONAI's data list (dicts of file paths and values) as a source whose
  identity is its content, so an edited list rebuilds (the files LoadImaged opens are checked
  by the build itself).
- :func:`to_device_ops`: the remainder's transforms that have batched device equivalents in
  :mod:`prebake.augment`, as one ``prebake.Loader`` transform, and the ones that have none.
- :func:`to_patches`: the remainder's sampled crop (``RandCropByPosNegLabeld``,
  ``RandSpatialCropSamplesd``) as a :class:`prebake.Patches` view, and the transforms left for
  :func:`to_device_ops`.
- :class:`MonaiDataset`: a cache with the remainder applied per item (MetaTensors rebuilt from the
  columns), for a ``DataLoader``, as ``PersistentDataset`` gives them: the path for transforms with
  no device equivalent.

monai is imported only when one of these is used (``pip install 'prebake[monai]'``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from ..errors import OptionError
from ..steps.monai import DEFAULT_META, MonaiTransforms, expand, flatten, from_monai, is_compose, is_monai, to_monai
from . import require

if TYPE_CHECKING:
    from ..augment.base import Op
    from ..cache.reader import Cache

__all__ = ["DataList", "DeviceTransform", "MonaiDataset", "MonaiTransforms", "from_monai", "split", "to_device_ops",
           "to_monai", "to_patches"]


def split(transforms: Any) -> tuple[MonaiTransforms | None, Any]:
    """``(prefix step, remainder)`` of a MONAI ``Compose`` (or list of MONAI transforms), split as
    ``PersistentDataset`` does: the prefix is None when the first transform is random, the remainder
    (a ``Compose``) None when none is."""
    given = list(transforms) if isinstance(transforms, (list, tuple)) else [transforms]
    stray = [f"[{k}] {type(t).__name__}" for k, t in enumerate(given) if not is_monai(t)]
    if not given or stray:
        raise OptionError(f"split takes a monai.transforms.Compose or a list of MONAI transforms; got "
                          f"{', '.join(stray) or 'nothing'}; give a list that mixes in prebake steps to "
                          "prebake.build(source, out, steps=[...]) instead")
    steps, remainder = expand(transforms)
    prefix = [s for s in steps if isinstance(s, MonaiTransforms)]
    return (prefix[0] if prefix else None), remainder


class DataList:
    """MONAI's data list, ``[{"image": "a.nii.gz", "label": "a_seg.nii.gz"}, ...]``, as a map-style dataset.

    ``fingerprint()`` hashes the list's content (paths and values), so adding, removing or editing an
    entry rebuilds the cache; the files the transforms open are checked by the build (their size and
    times, or content with ``content_hash=True``).
    """

    def __init__(self, data: Sequence[dict[str, Any]]):
        self.data = list(data)
        bad = next((k for k, d in enumerate(self.data) if not isinstance(d, dict)), None)
        if bad is not None:
            raise OptionError(f"DataList: data[{bad}] is a {type(self.data[bad]).__name__}; MONAI's data list holds "
                              "one dict per item, e.g. {'image': 'scan.nii.gz', 'label': 'seg.nii.gz'}")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self.data[index])

    def fingerprint(self) -> str:
        text = json.dumps(self.data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


class MonaiDataset:
    """``transform(item)`` over a cache's items as MONAI data dicts (arrays with an affine column as
    MetaTensors, with their meta columns): ``PersistentDataset(data, compose, dir)``'s items, read from
    the cache instead of torch-pickled files. A map-style dataset for ``torch.utils.data.DataLoader``."""

    def __init__(self, cache: Cache, transform: Callable[[Any], Any] | None = None,
                 meta: Sequence[str] = DEFAULT_META):
        require("monai", "monai", "prebake.integrations.monai.MonaiDataset")
        self.cache, self.transform, self.meta = cache, transform, tuple(meta)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> Any:
        row = {k: _value(v) for k, v in self.cache[index].items()}
        item = to_monai(row, self.meta)
        return item if self.transform is None else self.transform(item)


def _value(v: Any) -> Any:
    """A cache value as MONAI's inputs hold it: 0-d strings as str, tensors as numpy (writable)."""
    arr = np.array(v.numpy() if hasattr(v, "numpy") else v)
    return arr.item() if arr.ndim == 0 and arr.dtype.kind in "US" else arr


# -- the remainder on the device ------------------------------------------------------------------

_PATCHES = ("a sampled crop: cut it with prebake.Patches (to_patches(remainder, cache) maps RandCropByPosNegLabeld "
            "and RandSpatialCropSamplesd), or apply it per item with MonaiDataset")
_TYPES_ONLY = ("EnsureTyped", "ToTensord", "EnsureType", "ToTensor")  # a Loader's batches are tensors already


class DeviceTransform(nn.Module):
    """Batched device ops for MONAI's random transforms, as a ``prebake.Loader`` transform.

    Each op runs on every key of its MONAI transform with one draw per batch, so a flip or rotation
    moves an image and its label together; ``generator`` (the Loader's per-batch one) makes a resumed
    run augment as the uninterrupted one did.
    """

    def __init__(self, ops: Sequence[tuple[Sequence[str], Any]] = ()):
        super().__init__()
        self.keys = [tuple(keys) for keys, _ in ops]
        self.ops = nn.ModuleList([op for _, op in ops])

    def forward(self, batch: dict[str, Any], generator: Any = None) -> dict[str, Any]:
        """The ops in order on a copy of ``batch``; an op writes into a tensor an earlier op made (never into
        ``batch``'s own tensors), as :class:`prebake.augment.Compose` does."""
        from ..augment.base import owned

        out = dict(batch)
        for keys, module in zip(self.keys, self.ops):
            op = cast("Op", module)
            params = None
            for key in keys:
                if key not in out:
                    raise KeyError(f"{op} acts on {key!r}, but the batch has {sorted(out)}; load that column")
                x, source = out[key], batch[key]
                inplace = op.has_inplace and isinstance(x, torch.Tensor) and isinstance(source, torch.Tensor) \
                    and owned(x, source)
                out[key], params = op.run(x, params, generator, inplace=True) if inplace else \
                    op(x, params, generator, return_params=True)
        return out


def to_device_ops(remainder: Any) -> tuple[DeviceTransform, list[str]]:
    """``(transform, missing)``: the remainder's transforms that have batched equivalents in
    :mod:`prebake.augment`, as one Loader transform in their order, and one line for each that has none.

    Mapped (same distribution, drawn per sample): ``RandFlipd`` on one axis -> ``RandomFlip3d``,
    ``RandRotate90d`` (``max_k=3``) -> ``RandomRotate90``, ``RandScaleIntensityd`` and
    ``RandShiftIntensityd`` -> ``RandomIntensity``, ``RandGaussianNoised`` (``mean=0``) -> ``GaussianNoise3d``,
    ``RandSpatialCropd`` (fixed size, random centre) -> ``RandomCrop3d``, ``ScaleIntensityRanged``
    (``clip=True``) -> ``IntensityWindow``; ``EnsureTyped``/``ToTensord`` need nothing.
    ``RandCropByPosNegLabeld`` and the other sampled crops are views, not ops: :func:`to_patches`.
    """
    transforms = [] if remainder is None else flatten(remainder) if is_compose(remainder) else list(remainder)
    ops: list[tuple[Sequence[str], Any]] = []
    missing: list[str] = []
    for t in transforms:
        name = type(t).__name__
        if name in _TYPES_ONLY:
            continue
        mapped = _map(name, t)
        if isinstance(mapped, str):
            missing.append(f"{name}: {mapped}")
        else:
            ops.append((tuple(map(str, getattr(t, "keys", ()))), mapped))
    return DeviceTransform(_merged_flips(ops)), missing


def _merged_flips(ops: list[tuple[Sequence[str], Any]]) -> list[tuple[Sequence[str], Any]]:
    """Adjacent one-axis flips of the same keys and probability as one RandomFlip3d (a coin per axis: the same
    distribution), one gather instead of three: RandFlipd on each axis is MONAI's usual chain."""
    from ..augment import RandomFlip3d

    out: list[tuple[Sequence[str], Any]] = []
    for keys, op in ops:
        if out and type(op) is RandomFlip3d and type(out[-1][1]) is RandomFlip3d and out[-1][0] == keys \
                and out[-1][1].p == op.p and not set(op.axes) & set(out[-1][1].axes):
            out[-1] = (keys, RandomFlip3d(axes=tuple(sorted(out[-1][1].axes + op.axes)), p=op.p))
        else:
            out.append((keys, op))
    return out


def _map(name: str, t: Any) -> Any:
    """The prebake.augment op for MONAI transform ``t``, or why there is none."""
    mapper = _MAPPERS.get(name)
    if mapper is None:
        return _PATCHES if "Crop" in name else "no batched device op in prebake.augment; apply it per item"
    try:
        return mapper(t)
    except ValueError as e:  # parameters the op cannot express (a scale factor below -1)
        return f"its parameters have no device equivalent ({e})"


def _flip(t: Any) -> Any:
    from ..augment import RandomFlip3d

    axis = t.flipper.spatial_axis
    axes = (axis,) if isinstance(axis, int) else tuple(axis) if axis is not None else (0, 1, 2)
    if len(axes) != 1:
        return (f"spatial_axis={axis} flips {len(axes)} axes on one coin, RandomFlip3d one coin per axis; "
                "give one RandFlipd per axis")
    return RandomFlip3d(axes=axes, p=t.prob)


def _rotate90(t: Any) -> Any:
    from ..augment import RandomRotate90

    if t.max_k != 3:
        return f"max_k={t.max_k}: RandomRotate90 draws k from 1, 2 and 3 (max_k=3)"
    return RandomRotate90(axes=tuple(t.spatial_axes), p=t.prob)


def _scale(t: Any) -> Any:
    from ..augment import RandomIntensity

    if t.scaler.channel_wise:
        return "channel_wise=True: RandomIntensity draws one factor per sample"
    low, high = t.scaler.factors
    return RandomIntensity(scale=(1 + low, 1 + high), shift=0.0, p=t.prob)  # MONAI: x * (1 + factor)


def _shift(t: Any) -> Any:
    from ..augment import RandomIntensity

    if t.shifter.channel_wise or any(k is not None for k in t.factor_key):
        return "channel_wise or factor_key: RandomIntensity draws one offset per sample, in the volume's units"
    return RandomIntensity(scale=1.0, shift=tuple(t.shifter.offsets), p=t.prob)


def _noise(t: Any) -> Any:
    from ..augment import GaussianNoise3d

    g = t.rand_gaussian_noise
    if g.mean != 0:
        return f"mean={g.mean}: GaussianNoise3d adds zero-mean noise"
    return GaussianNoise3d(std=(0.0, g.std) if g.sample_std else g.std, p=t.prob)  # sample_std: std ~ U(0, std)


def _crop(t: Any) -> Any:
    from ..augment import RandomCrop3d

    c = t.cropper
    size = (c.roi_size,) * 3 if isinstance(c.roi_size, int) else tuple(c.roi_size)
    if c.random_size or not c.random_center or len(size) != 3 or min(size) < 1:
        return "a random size, a fixed centre or a roi_size with -1: " + _PATCHES
    return RandomCrop3d(tuple(int(s) for s in size), p=1.0)


def _window(t: Any) -> Any:
    from ..augment import IntensityWindow

    s = t.scaler
    if not s.clip or s.b_min is None or s.b_max is None:
        return "clip=False or no output range: IntensityWindow clips to [a_min, a_max] and maps to [b_min, b_max]"
    return IntensityWindow(s.a_min, s.a_max, (s.b_min, s.b_max))


_MAPPERS: dict[str, Callable[[Any], Any]] = {
    "RandFlipd": _flip, "RandRotate90d": _rotate90, "RandScaleIntensityd": _scale, "RandShiftIntensityd": _shift,
    "RandGaussianNoised": _noise, "RandSpatialCropd": _crop, "ScaleIntensityRanged": _window,
}


#: Transforms that act on each voxel alone: a crop after them draws from the same distribution as before them.
_PER_VOXEL = ("RandScaleIntensityd", "RandShiftIntensityd", "RandGaussianNoised", "ScaleIntensityRanged",
              *_TYPES_ONLY)


def to_patches(remainder: Any, cache: Cache, *, seed: int = 0, indices: Any = None) -> tuple[Any, list[Any]]:
    """``(patches, rest)``: the sampled crop of ``remainder`` as a :class:`prebake.Patches` view of ``cache``, and
    the remainder without it (for :func:`to_device_ops`, which then runs on the patch batches).

    ``RandCropByPosNegLabeld(keys, label_key, spatial_size, pos, neg, num_samples)`` becomes
    ``Patches(cache, keys[0], spatial_size, num_samples, sampler="balanced", label=label_key,
    pos_fraction=pos / (pos + neg))``: bake ``prebake.steps.FgBgIndices(label_key)`` after the prefix
    (``steps=[prefix, FgBgIndices("label")]``), as MONAI's ``FgBgToIndicesd`` precomputes them. One difference:
    MONAI moves a centre near the edge inward so the box fits; Patches keeps the centre and pads the part
    outside (``pad_value``, marked in ``padded``). ``RandSpatialCropSamplesd`` (fixed ``roi_size``, random
    centre) becomes a uniform ``Patches`` of ``num_samples`` per item. The crop must come first in the
    remainder or after per-voxel transforms only (intensity, noise), which commute with it; anything else is
    an OptionError naming the transform.
    """
    lone = remainder is not None and not is_compose(remainder) and not isinstance(remainder, (list, tuple))
    transforms = [] if remainder is None else flatten(remainder) if is_compose(remainder) else \
        [remainder] if lone else list(remainder)  # a lone transform is a remainder of one
    names = [type(t).__name__ for t in transforms]
    at = next((i for i, n in enumerate(names) if n in ("RandCropByPosNegLabeld", "RandSpatialCropSamplesd")), None)
    if at is None:
        raise OptionError(f"to_patches: the remainder holds no RandCropByPosNegLabeld or RandSpatialCropSamplesd "
                          f"(it holds {names}); use to_device_ops alone")
    before = [n for n in names[:at] if n not in _PER_VOXEL]
    if before:
        raise OptionError(f"to_patches: {before[0]} comes before the crop and does not act on each voxel alone, "
                          "so cutting the patch first would change what it does; move the crop before it")
    return _patches_of(names[at], transforms[at], cache, seed, indices), transforms[:at] + transforms[at + 1:]


def _patches_of(name: str, t: Any, cache: Cache, seed: int, indices: Any) -> Any:
    from ..load.patches import Patches

    keys = [str(k) for k in t.keys]
    if name == "RandSpatialCropSamplesd":
        c = t.cropper.cropper
        if c.random_size or not c.random_center:
            raise OptionError(f"to_patches: {name}(random_size={c.random_size}, random_center={c.random_center}): "
                              "Patches cuts boxes of one size at random centres; give random_size=False, "
                              "random_center=True")
        return Patches(cache, keys[0], _size(c.roi_size), t.cropper.num_samples, seed=seed, indices=indices)
    c = t.cropper
    if t.image_key is not None or t.fg_indices_key is not None:
        raise OptionError(f"to_patches: {name}(image_key={t.image_key!r}, fg_indices_key={t.fg_indices_key!r}): "
                          "Patches draws from the label map's classes baked by FgBgIndices; leave both None")
    return Patches(cache, keys[0], _size(c.spatial_size), c.num_samples, sampler="balanced", label=str(t.label_key),
                   pos_fraction=float(c.pos_ratio), seed=seed, indices=indices)


def _size(size: Any) -> tuple[int, ...]:
    out = (int(size),) * 3 if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if min(out) < 1:
        raise OptionError(f"to_patches: a patch size of {list(out)} (-1 means the whole axis in MONAI): give a "
                          "size >= 1 on every axis")
    return out
