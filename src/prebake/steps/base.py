"""Bake-time, per-item, deterministic transforms: item dict -> item dict.

Between transforms an ``image`` is a PIL image or a ``(C, H, W)`` ndarray.
:class:`ToCHW` turns it into a contiguous ``uint8`` ``(C, H, W)`` array, the
layout the cache stores (like PyTorch). A user function runs last and sees
that array.

Random augmentation does not belong here: it runs batched on the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import BadItemError, OptionError, opt
from ..identity.code import code_identity
from .audio import BandPass, Resample
from .volume import VolumeOptions, volume_steps

Item = dict[str, Any]
ImageLike = Any  # PIL.Image.Image | np.ndarray (C, H, W)

_PIL_MODES = {1: "L", 3: "RGB"}


def image_size(img: ImageLike) -> tuple[int, int]:
    """(width, height) of a PIL image or a CHW array."""
    if isinstance(img, Image.Image):
        return img.size
    return int(img.shape[-1]), int(img.shape[-2])


def _resize_array(img: np.ndarray, w: int, h: int) -> np.ndarray:
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[0] in _PIL_MODES:
        hwc = np.ascontiguousarray(img.transpose(1, 2, 0))
        pil = Image.fromarray(hwc[..., 0] if img.shape[0] == 1 else hwc)  # mode L or RGB
        out = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR))
        return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)
    import torch  # other dtypes and channel counts: torch's antialiased bilinear

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    t = t.reshape(1, -1, *t.shape[-2:])
    t = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    out = t.reshape(*img.shape[:-2], h, w).numpy()
    if img.dtype.kind in "iu":  # round, as Pillow does, rather than truncate
        info = np.iinfo(img.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(img.dtype, copy=False)


def resize_image(img: ImageLike, w: int, h: int) -> ImageLike:
    """Antialiased bilinear resize (Pillow's filter widens on downscale)."""
    if image_size(img) == (w, h):
        return img
    if isinstance(img, Image.Image):
        return img.resize((w, h), Image.Resampling.BILINEAR)
    return _resize_array(np.asarray(img), w, h)


@dataclass(frozen=True)
class Resize:
    """Resize to ``size`` x ``size``, or (``shorter=True``) the shorter side to ``size``."""

    needs: ClassVar[tuple[str, ...]] = ("image",)
    size: int
    shorter: bool = False

    @property
    def option(self) -> str:
        return "shorter_side" if self.shorter else "image_size"

    def __call__(self, item: Item) -> Item:
        w, h = image_size(item["image"])
        if not self.shorter:
            nw, nh = self.size, self.size
        elif w <= h:  # torchvision's rule: the longer side is truncated, not rounded
            nw, nh = self.size, int(self.size * h / w)
        else:
            nw, nh = int(self.size * w / h), self.size
        item["image"] = resize_image(item["image"], nw, nh)
        return item


@dataclass(frozen=True)
class CenterCrop:
    """Crop the central ``size`` x ``size`` window."""

    needs: ClassVar[tuple[str, ...]] = ("image",)
    option: ClassVar[str] = "crop"
    size: int

    def __call__(self, item: Item) -> Item:
        img = item["image"]
        w, h = image_size(img)
        s = self.size
        if w < s or h < s:
            raise BadItemError(
                f"image is {w}x{h}, smaller than the {s}x{s} crop; resize first ({opt('image_size')} or "
                f"{opt('shorter_side')})"
            )
        top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        if isinstance(img, Image.Image):
            item["image"] = img.crop((left, top, left + s, top + s))
        else:
            item["image"] = np.ascontiguousarray(img[..., top : top + s, left : left + s])
        return item


@dataclass(frozen=True)
class ToCHW:
    """PIL image -> contiguous uint8 (C, H, W). Arrays are already CHW and pass through."""

    def __call__(self, item: Item) -> Item:
        img = item.get("image")
        if isinstance(img, Image.Image):
            arr = np.asarray(img)
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
            item["image"] = np.ascontiguousarray(arr, dtype=np.uint8)
        return item


@dataclass(frozen=True)
class ToRGB8:
    """Every image as 8-bit RGB (``--rgb``): 16-bit grey arrays become ``value >> 8`` in three channels."""

    needs: ClassVar[tuple[str, ...]] = ("image",)
    option: ClassVar[str] = "rgb"

    def __call__(self, item: Item) -> Item:
        from ..sources.images import to_rgb

        img = item["image"]
        if isinstance(img, Image.Image):
            item["image"] = to_rgb(img)
        elif img.ndim == 3 and img.shape[0] == 1 and img.dtype == np.uint16:
            item["image"] = np.repeat((img >> 8).astype(np.uint8), 3, axis=0)
        return item


class UserTransform:
    """A user's per-item function; its module source is part of the fingerprint."""

    def __init__(self, fn: Callable[[Item], Item]):
        if not callable(fn):
            raise TypeError(f"transform must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.identity = code_identity(fn)

    def __call__(self, item: Item) -> Item:
        out = self.fn(item)
        if not isinstance(out, dict):
            raise BadItemError(f"transform {self.identity['name']} returned {type(out).__name__}, expected a dict")
        return out


Transform = Callable[[Item], Item]


def make_pipeline(
    *,
    image_size: int | None = None,
    shorter_side: int | None = None,
    crop: int | None = None,
    sample_rate: int | None = None,
    bandpass: tuple[float, float] | None = None,
    transform: Callable[[Item], Item] | None = None,
    segment: Transform | None = None,
    volume: VolumeOptions | None = None,
    rgb: bool = False,
) -> list[Transform]:
    """The bake pipeline: [resample] [band-pass] [segment cycles] [volume steps] [to RGB] [resize] [center crop]
    to-CHW [user function].

    The volume steps (reorient, spacing, window, crop/pad) are :mod:`prebake.steps.volume`'.
    """
    if image_size is not None and shorter_side is not None:
        raise OptionError(f"give {opt('image_size')} (S x S) or {opt('shorter_side')}, not both")
    steps: list[Transform] = []
    if sample_rate is not None:
        steps.append(Resample(_positive(sample_rate, "sample_rate")))
    if bandpass is not None:
        steps.append(_bandpass(bandpass, sample_rate))
    if segment is not None:
        steps.append(segment)
    steps += volume_steps(volume)
    if rgb:
        steps.append(ToRGB8())
    if image_size is not None:
        steps.append(Resize(_positive(image_size, "image_size")))
    if shorter_side is not None:
        steps.append(Resize(_positive(shorter_side, "shorter_side"), shorter=True))
    if crop is not None:
        steps.append(CenterCrop(_positive(crop, "crop")))
    steps.append(ToCHW())
    if transform is not None:
        steps.append(UserTransform(transform))
    return steps


def ragged_outputs(steps: Sequence[Transform]) -> tuple[str, ...]:
    """The ragged columns the built-in steps add (the cycles of a segmentation)."""
    return tuple(c for s in steps for c in getattr(s, "ragged", ()))


def _positive(v: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v <= 0:
        raise OptionError(f"{opt(name)} takes a positive integer, got {v!r}")
    return int(v)


def _bandpass(band: Sequence[float], sample_rate: int | None) -> BandPass:
    if len(band) != 2:
        raise OptionError(f"{opt('bandpass')} takes two frequencies LOW HIGH in Hz, got {list(band)!r}")
    low, high = float(band[0]), float(band[1])
    if not 0 < low < high:
        raise OptionError(f"{opt('bandpass')} takes LOW HIGH with 0 < LOW < HIGH Hz, got {low:g} {high:g}; "
                          f"for example {opt('bandpass', '25 400')}")
    if sample_rate is not None and high >= sample_rate / 2:
        raise OptionError(f"{opt('bandpass')} {low:g} {high:g} Hz: HIGH must be below half of "
                          f"{opt('sample_rate', sample_rate)} ({sample_rate / 2:g} Hz)")
    return BandPass(low, high)


_PROBE_ITEMS = 5


def check_inputs(steps: Sequence[Transform], source: Any) -> None:
    """Before any work: the built-in steps find the columns they need in the source's items.

    Reads up to the first few raw items (the first that reads is enough); items that do
    not read are left to the build, which records them as bad.
    """
    wanted = [s for s in steps if getattr(s, "needs", ())]
    if not wanted:
        return
    for index in range(min(len(source), _PROBE_ITEMS)):
        try:
            item = source.read(index)
        except Exception:  # a bad item: the build reports it; look at the next one
            continue
        for step in wanted:
            missing = [c for c in step.needs if c not in item]
            if missing:
                raise OptionError(
                    f"{opt(step.option)} needs a {' and '.join(map(repr, step.needs))} column, but the items of "
                    f"{_name(source)} have {sorted(item)}; drop {opt(step.option)} for this source"
                )
        rate = next((s.rate for s in steps if isinstance(s, Resample)), item.get("sample_rate"))
        band = next((s for s in steps if isinstance(s, BandPass)), None)
        if band is not None and rate is not None and band.high >= int(rate) / 2:
            raise OptionError(f"{opt('bandpass')} {band.low:g} {band.high:g} Hz: HIGH must be below half the "
                              f"sample rate, and the signals are at {int(rate)} Hz (Nyquist {int(rate) / 2:g} Hz)")
        return


def _name(source: Any) -> str:
    root = source.describe().get("root") if hasattr(source, "describe") else None
    return f"{root} ({source.kind})" if root else f"the {getattr(source, 'kind', 'source')} source"


def describe(steps: Sequence[Transform]) -> list[dict[str, Any]]:
    """JSON identity of a pipeline, for the fingerprint."""
    out: list[dict[str, Any]] = []
    for s in steps:
        if dataclasses.is_dataclass(s):
            out.append({"name": type(s).__name__, **dataclasses.asdict(s)})
        else:
            ident = s.identity if isinstance(s, UserTransform) else code_identity(s)
            out.append({"name": "user", "function": ident["name"], "code": ident["code"], "weights": ident["weights"]})
    return out


def apply(steps: Sequence[Transform], item: Item) -> Item:
    for step in steps:
        item = step(item)
    return item
