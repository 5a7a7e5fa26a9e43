"""Images decoded without extra copies keep every pixel: random photos of every 8-bit mode, odd sizes and all eight
EXIF orientations, decoded by ``decode_image`` and laid out by ``ToCHW`` (one band at a time, the image turned in
place), against the reference: Pillow's ``exif_transpose`` then ``convert`` and a transposed ``np.asarray``.

A trial fails when a value, shape or dtype differs, when the array is not a writable C-contiguous ``(C, H, W)``,
or when an image that needs no turn comes back as a copy instead of as decoded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from prebake.sources.images import decode_image
from prebake.steps.image import ToCHW

from . import Row

_MODES = ("RGB", "RGBA", "L", "LA", "P", "CMYK")
_FORMATS = {"RGB": ("png", "jpg", "webp"), "RGBA": ("png", "webp"), "L": ("png", "jpg"), "LA": ("png",),
            "P": ("png", "gif"), "CMYK": ("jpg", "tiff")}


def write_image(path: Path, rng: np.random.Generator, mode: str, orientation: int) -> Path:
    """A random image of ``mode`` and odd size at ``path`` (its suffix names the format), with an EXIF orientation."""
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    im = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    kwargs = {"exif": exif.tobytes()} if orientation != 1 and path.suffix in (".jpg", ".png", ".webp", ".tiff") else {}
    im.save(path, **kwargs)
    return path


def reference(path: Path, channels: str | None) -> np.ndarray:
    """What torchvision's loader gives (``keep``: the file's own RGB or RGBA), turned, as ``(C, H, W)``."""
    with Image.open(path) as im:
        turned = ImageOps.exif_transpose(im)
    mode = "RGBA" if channels == "keep" and turned.mode in ("RGBA", "PA") else "RGB"
    if channels == "keep" and turned.mode == "P" and "transparency" in turned.info:
        mode = "RGBA"
    if channels == "keep" and turned.mode in ("L", "LA"):
        mode = turned.mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pillow's advice on palette transparency, not a failure
        arr = np.asarray(turned.convert(mode))
    return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


def trial_decode_copies(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    row = Row("images decoded with no extra copy: pixels, layout and orientation equal the reference")
    rng = np.random.default_rng(seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    for k in range(trials):
        mode = _MODES[int(rng.integers(len(_MODES)))]
        fmt = _FORMATS[mode][int(rng.integers(len(_FORMATS[mode])))]
        orientation = int(rng.integers(1, 9))
        channels = None if rng.random() < 0.6 else "keep"
        path = write_image(work_dir / f"{k}.{fmt}", rng, mode, orientation)
        what = f"{path.name} ({mode}, EXIF orientation {orientation}, channels={channels})"
        decoded = decode_image(path, channels=channels)
        got = ToCHW()({"image": decoded})["image"]
        want = reference(path, channels)
        if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
            row.fail(f"{what}: {got.dtype} {got.shape} differs from the reference's {want.dtype} {want.shape}")
        elif not (got.flags.c_contiguous and got.flags.writeable) and decoded.mode in ("RGB", "RGBA"):
            row.fail(f"{what}: the (C, H, W) array is not a writable C-contiguous one")
        elif _turn(path) == 1 and decoded.mode == mode and type(decoded) is Image.Image:
            row.fail(f"{what}: needs no turn, but decode_image returned a copy of the decoded image")
        else:
            row.ok()
        path.unlink()
    return row


def _turn(path: Path) -> int:
    with Image.open(path) as im:
        return int(im.getexif().get(0x0112, 1))
