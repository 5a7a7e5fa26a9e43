"""Image steps: resize, resize the shorter side, centre crop, to 8-bit RGB, and the layout the cache stores.

Between steps an ``image`` is a PIL image or a ``(C, H, W)`` array; :class:`ToCHW` makes it the
contiguous ``(C, H, W)`` array a cache stores (as PyTorch lays images out). A build puts a
``ToCHW`` before every function of yours and at the end, so functions see arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import BadItemError
from ..native import image_planes
from .base import Item, Step, hint, size_field

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
class Resize(Step):
    """Resize the image to ``size`` x ``size`` (antialiased bilinear)."""

    needs: ClassVar[tuple[str, ...]] = ("image",)
    option: ClassVar[str] = "image_size"
    size: int

    def __post_init__(self) -> None:
        size_field(self, "size")

    def __call__(self, item: Item) -> Item:
        item["image"] = resize_image(item["image"], self.size, self.size)
        return item


@dataclass(frozen=True)
class ShorterSide(Step):
    """Resize the image so that its shorter side is ``size``, keeping the aspect ratio (torchvision's rule)."""

    needs: ClassVar[tuple[str, ...]] = ("image",)
    option: ClassVar[str] = "shorter_side"
    size: int

    def __post_init__(self) -> None:
        size_field(self, "size")

    def __call__(self, item: Item) -> Item:
        w, h = image_size(item["image"])
        if w <= h:  # the longer side is truncated, not rounded, as torchvision's Resize(int) does
            nw, nh = self.size, int(self.size * h / w)
        else:
            nw, nh = int(self.size * w / h), self.size
        item["image"] = resize_image(item["image"], nw, nh)
        return item


@dataclass(frozen=True)
class CenterCrop(Step):
    """Crop the central ``size`` x ``size`` window; a smaller image is a bad item."""

    needs: ClassVar[tuple[str, ...]] = ("image",)
    option: ClassVar[str] = "crop"
    size: int

    def __post_init__(self) -> None:
        size_field(self, "size")

    def __call__(self, item: Item) -> Item:
        img = item["image"]
        w, h = image_size(img)
        s = self.size
        if w < s or h < s:
            raise BadItemError(f"image is {w}x{h}, smaller than the {s}x{s} crop; resize first "
                               f"({hint('Resize')} or {hint('ShorterSide')})")
        top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        if isinstance(img, Image.Image):
            item["image"] = img.crop((left, top, left + s, top + s))
        else:
            item["image"] = np.ascontiguousarray(img[..., top : top + s, left : left + s])
        return item


@dataclass(frozen=True)
class ToCHW(Step):
    """PIL image -> contiguous uint8 (C, H, W). Arrays are already CHW and pass through."""

    def __call__(self, item: Item) -> Item:
        img = item.get("image")
        if isinstance(img, Image.Image):
            item["image"] = _bands(img) if img.mode in _BANDED else _chw(np.asarray(img))
        return item


_BANDED = ("RGB", "RGBA")  # 8 bits a band: Pillow copies each band out on its own


def _chw(arr: np.ndarray) -> np.ndarray:
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _bands(img: Image.Image) -> np.ndarray:
    """An RGB(A) image as (C, H, W): in one pass from Pillow's pixels with prebake's C loop (native.py), else one
    band at a time, which is under half the CPU of ``np.asarray`` then a transposed copy, which gathers across the
    interleaved bands (0.13 ms an image less on benchmarks/realdata.py's photos)."""
    planes = image_planes(img)
    if planes is not None:
        return planes
    w, h = img.size
    out = np.empty((len(img.mode), h, w), np.uint8)
    for k, band in enumerate(img.mode):
        out[k] = np.frombuffer(img.tobytes("raw", band), np.uint8).reshape(h, w)
    return out


@dataclass(frozen=True)
class ToRGB8(Step):
    """Every image as 8-bit RGB: grey, palette and RGBA images to RGB, 16-bit grey to ``value >> 8`` in three
    channels. Arrays of 1 to 4 channels too, of any integer or float dtype (``--channels 3`` keeps 16-bit grey as
    three uint16 channels; an array source may hold grey beside colour): see :func:`prebake.sources.images.rgb8_array`;
    other arrays are bad items, with the reason."""

    needs: ClassVar[tuple[str, ...]] = ("image",)
    option: ClassVar[str] = "rgb"

    def __call__(self, item: Item) -> Item:
        from ..sources.images import rgb8_array, to_rgb

        img = item["image"]
        item["image"] = to_rgb(img) if isinstance(img, Image.Image) else rgb8_array(np.asarray(img))
        return item
