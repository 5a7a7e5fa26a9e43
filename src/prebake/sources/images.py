"""Decode one image file into an RGB ``PIL.Image`` (16-bit grey: a uint16 array), or say exactly why it cannot be.

Every failure becomes a :class:`~prebake.errors.BadItemError` with a short reason
("file not found", "truncated image: ...") so a build records the item and goes on.

Mode conversion rules (the cache stores 8-bit RGB):

- ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``: Pillow's own conversion to RGB.
- Alpha (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour): the alpha channel is
  **dropped**, the colour values are kept. This matches what ``Image.convert("RGB")``
  (and so torchvision's ``ImageFolder`` loader) produces, so a prebake cache holds the same
  pixels the usual loader would.
- 16-bit grey (``I;16*``, 16-bit PNG and TIFF): kept at full depth, a ``(1, H, W)`` uint16
  array, value for value. ``--rgb`` (:class:`~prebake.steps.base.ToRGB8`) asks for
  8-bit RGB instead, through :func:`to_rgb` (``value >> 8``).
- 32-bit int (``I``: 16-bit PGM/PNM, 32-bit integer TIFF, 16-bit PNG/TIFF in some Pillow versions):
  kept at full depth too, as 16-bit grey is: a ``(1, H, W)`` uint16 array when every value fits
  in [0, 65535], else int32, value for value (never cut to fit: a column mixing the two is int32).
  ``--rgb`` gives values in [0, 65535] ``>> 8``; wider values are clipped at 0 and get ``>> 23``.
- Float (``F``): values in [0, 1] are scaled by 255; others are clipped to [0, 255]; NaN is 0.
- 16-bit colour (48-bit RGB, 64-bit RGBA PNG or TIFF): Pillow decodes it at 8 bits per
  channel; the image is kept so, and counted in the build's notes (:mod:`.notes`).

Multi-frame files (an animated GIF, PNG or WebP, a multi-page TIFF) give their **first
frame**, as ``Image.open(path).convert("RGB")`` (torchvision's loader) does, so a folder of
stills and GIFs is one column of images; the frames left out are counted in the notes.

Truncated files always fail: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never enabled, and a
file that ends before its format's end marker (JPEG, PNG) or declared size (WebP) is
reported as truncated, whatever Pillow's own message says.

Size: the dimensions are read from the header and checked against ``max_pixels`` before
anything is decoded (default :data:`DEFAULT_MAX_PIXELS`), and Pillow's
``DecompressionBombWarning`` becomes the item's reason instead of a warning, so an
oversized image costs a header read, not its decoded size in every worker. Pillow's own
limit (``PIL.Image.MAX_IMAGE_PIXELS``) still applies on top: raise it as well for
``max_pixels`` beyond it.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadItemError, OptionError, opt
from .notes import note
from .sniff import FAMILY, IMAGE_EXTENSIONS, sniff

#: Images with more pixels are bad items, refused from their header: 64 Mpx is 192 MiB of
#: decoded RGB per worker (an 8K frame has 33 Mpx).
DEFAULT_MAX_PIXELS = 64 * 2**20


def is_image_file(name: str | os.PathLike[str]) -> bool:
    """True when the file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fspath(name))[1].lower() in IMAGE_EXTENSIONS


def decode_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS,
                 channels: str | None = None) -> Image.Image | np.ndarray:
    """Fully decode ``path`` into an RGB image with its EXIF orientation applied (16-bit grey:
    a ``(1, H, W)`` uint16 array, see the module docstring); ``channels`` (:data:`CHANNELS`) chooses
    another channel policy (:func:`with_channels`).

    Raises :class:`BadItemError` with a short reason for a missing, empty, unreadable,
    truncated, oversized (over ``max_pixels``, or a decompression bomb) or zero-size image.
    """
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_pixels says it instead
            opened = Image.open(path)
        with opened as im:
            _check_pixels(im, max_pixels)
            deep = _deep(im)
            im.load()
            if im.width == 0 or im.height == 0:
                raise BadItemError(f"zero-size image ({im.width}x{im.height})")
            _note_losses(im, deep)
            ImageOps.exif_transpose(im, in_place=True)  # not a copy of every image that needs no turn
            return with_channels(im, channels)
    except BadItemError:
        raise
    except Image.DecompressionBombError as e:
        # Pillow's text: "Image size (N pixels) exceeds limit of M pixels, could be ..."
        raise BadItemError(f"decompression bomb: {str(e).split(', could')[0]}") from None
    except Exception as e:  # noqa: BLE001 - Pillow plugins raise many types on corrupt data
        raise BadItemError(_decode_failure(path, e)) from None


def _note_losses(im: Image.Image, deep: bool) -> None:
    """Count what the decode leaves out: frames after the first, colour bits beyond 8 (``deep``: :func:`_deep`)."""
    if getattr(im, "is_animated", False):  # cheap; n_frames may scan the whole file
        note("frames after the first of multi-frame images (animated GIF/PNG/WebP, multi-page TIFF) left out: each "
             "image keeps its first frame", int(getattr(im, "n_frames", 1)) - 1)
    if deep and im.mode in ("RGB", "RGBA"):
        note("16-bit-per-channel colour images (48/64-bit) reduced to 8 bits per channel (Pillow decodes them so)", 1)


def _deep(im: Image.Image) -> bool:
    """Whether the file stores colour at 16 bits a sample (a tile's raw mode says so before it is decoded)."""
    return any(";16" in str(t[3]) for t in getattr(im, "tile", ()) if len(t) > 3) and not im.mode.startswith(("I", "L"))


def _check_pixels(im: Image.Image, max_pixels: int) -> None:
    """Refuse an image from its header's dimensions, before a byte of it is decoded.

    Then Pillow's own limit, where Pillow would only warn (``DecompressionBombWarning``).
    """
    w, h = im.size
    if w * h > max_pixels:
        raise BadItemError(f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} (decoding it "
                           f"would take {w * h * 3:,} bytes as RGB); raise {opt('max_pixels')} to bake it")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and max(1, w) * max(1, h) > limit:
        raise BadItemError(f"decompression bomb: Image size ({w * h} pixels) exceeds limit of {limit} pixels "
                           "(PIL.Image.MAX_IMAGE_PIXELS); raise that limit too to bake it")


def _decode_failure(path: Path, e: Exception) -> str:
    """The reason for a failed decode: a truncated file when it is one, else Pillow's words."""
    short = _shortfall(path)
    if short:
        return f"truncated image file: {short}; re-copy or re-download it"
    other = _other_kind(path)
    if other:
        return "not a readable image" + other
    text = str(e)
    if "truncated" in text.lower():
        return f"truncated image: {text}"
    if isinstance(e, UnidentifiedImageError):
        return "not a readable image (Pillow cannot identify it)"
    if isinstance(e, OSError):
        return f"cannot decode image: {text}"
    return f"cannot decode image: {type(e).__name__}: {text}"


def _other_kind(path: Path) -> str:
    """What the file is instead, by its first bytes, when that is a volume, audio or video."""
    found = sniff(path)
    kind = FAMILY.get(found or "")
    if kind in (None, "image"):
        return ""
    where = {"volume": f"a volume folder ({opt('kind', 'volumes')}) or a CSV table",
             "audio": "an audio folder or table", "video": f"a folder of clips ({opt('kind', 'video')})"}[kind]
    return f": its content is {found} ({'an' if kind == 'audio' else 'a'} {kind}); read it from {where}"


def _check_file(path: Path) -> None:
    """Reasons that do not need Pillow: missing file, directory, empty file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadItemError("file not found") from None
    except OSError as e:
        raise BadItemError(f"cannot stat file: {e.strerror or e}") from None
    if path.is_dir():
        raise BadItemError("is a directory, not an image file")
    if st.st_size == 0:
        raise BadItemError("empty file (0 bytes)")


def _shortfall(path: Path) -> str | None:
    """For JPEG, PNG and WebP, say how the file is cut short (None when it is not).

    Pillow reports a cut JPEG as "Truncated File Read" or "cannot identify", and a cut
    WebP only as "could not create decoder object".
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            f.seek(max(0, size - 12))
            tail = f.read(12)
    except OSError:
        return None
    if head[:2] == b"\xff\xd8" and not tail.endswith(b"\xff\xd9"):
        return f"the JPEG data ends after {size:,} bytes, before its end-of-image marker"
    if head[:8] == b"\x89PNG\r\n\x1a\n" and tail[-8:-4] != b"IEND":
        return f"the PNG data ends after {size:,} bytes, before its IEND chunk"
    if len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        declared = struct.unpack("<I", head[4:8])[0] + 8
        if size < declared:
            return f"file has {size} bytes, its RIFF header declares {declared}"
    return None


#: The channel policies of images (``SourceOptions.channels``, ``--channels``): None, the default, is the rule
#: of the module docstring (8-bit images as RGB with alpha dropped, as torchvision's loader gives them;
#: 16-bit grey kept at full depth, one channel).
CHANNELS = ("1", "3", "keep")
_KEPT = {"L": "L", "1": "L", "LA": "LA", "La": "LA", "PA": "RGBA", "RGB": "RGB", "RGBA": "RGBA", "RGBa": "RGBA"}


def check_channels(channels: Any) -> str | None:
    """``channels`` as given when it is None or one of :data:`CHANNELS`; else an OptionError naming them."""
    if channels is None or (isinstance(channels, str) and channels in CHANNELS):
        return channels
    raise OptionError(f"{opt('channels')} is {channels!r}; give 1 (every image one grey channel), 3 (every image "
                      "RGB) or keep (each file's own channels: grey 1, grey+alpha 2, RGB 3, RGBA 4), or leave it out "
                      "(8-bit images as RGB, 16-bit grey kept at full depth)")


def with_channels(im: Image.Image, channels: str | None) -> Image.Image | np.ndarray:
    """``im`` under a channel policy: None (the module docstring's rule); ``"1"`` every image one grey channel
    (ITU-R 601 luma, as Pillow's ``convert("L")``; grey values unchanged, 16-bit grey at full depth); ``"3"``
    every image RGB (16-bit grey repeated into three uint16 channels, every value kept); ``"keep"`` the file's own
    channels (grey 1, grey + alpha 2, RGB 3, RGBA 4; a palette image RGB, or RGBA when it has a transparent
    colour; CMYK, YCbCr, LAB and HSV as RGB)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        deep = full_depth(im)
        return np.ascontiguousarray(np.repeat(deep, 3, axis=0)) if channels == "3" else deep
    if channels is None or channels == "3":
        return to_rgb(im)
    if channels == "1":
        return im if im.mode == "L" else im.convert("L") if im.mode in _KEPT else to_rgb(im).convert("L")
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    kept = _KEPT.get(im.mode)
    if kept is not None:
        return im if kept == im.mode else im.convert(kept)
    rgb = to_rgb(im)  # F is grey: one channel, as the default rule scales it
    return rgb.convert("L") if im.mode == "F" else rgb


def full_depth(im: Image.Image) -> np.ndarray:
    """A 16-bit grey image (or a 32-bit int one, mode ``I``) as a ``(1, H, W)`` native uint16 array, every value
    kept; a mode ``I`` image with values outside [0, 65535] as int32 instead, never cut to 16 bits."""
    a = np.asarray(im)
    if im.mode == "I" and a.size and (a.min() < 0 or a.max() > 0xFFFF):
        return np.ascontiguousarray(a.astype(np.int32))[None]
    return np.ascontiguousarray(a.astype(np.uint16))[None]


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB following the rules in the module docstring."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16"):
        a = np.asarray(im).astype(np.uint16) >> 8
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if mode == "I":
        return Image.fromarray(_int_to_uint8(np.asarray(im)), "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(im)), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        return im.convert("RGBA").convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise BadItemError(f"unsupported image mode {mode!r}: {e}") from None


def rgb8_array(img: np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image array as ``(3, H, W)`` uint8, by the rules of :func:`to_rgb`: uint16 ``>> 8``, other
    integers as mode ``I``, floats as mode ``F``; one channel repeated, alpha (the 2nd of 2, the 4th of 4) dropped."""
    if img.ndim != 3 or img.shape[0] not in (1, 2, 3, 4) or img.dtype.kind not in "uif":
        raise BadItemError(f"image of shape {img.shape} and dtype {img.dtype} has no 8-bit RGB form: "
                           "`prebake.steps.ToRGB8` takes (C, H, W) integer or float images of 1 to 4 channels (grey, "
                           "grey + alpha, RGB, RGBA); leave it out for these images")
    if img.dtype == np.uint8:
        a = img
    elif img.dtype == np.uint16:
        a = (img >> 8).astype(np.uint8)
    elif img.dtype.kind == "f":
        a = _float_to_uint8(img)
    else:
        a = _int_to_uint8(img)
    a = a[:1] if a.shape[0] <= 2 else a[:3]
    return np.ascontiguousarray(np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a)


def _int_to_uint8(a: np.ndarray) -> np.ndarray:
    """Mode ``I`` to 8 bits: values in [0, 65535] are 16-bit data (``>> 8``); wider ones clipped at 0, ``>> 23``."""
    a = a.astype(np.int64)
    shift = 8 if a.size == 0 or (a.min() >= 0 and a.max() <= 0xFFFF) else 23
    return (np.clip(a, 0, 2**31 - 1) >> shift).astype(np.uint8)


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if a.size and a.min() >= 0.0 and a.max() <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
