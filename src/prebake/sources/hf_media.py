"""Decoding a ``datasets`` Image or Audio value in a bake worker, from its bytes or its local path, by the
image and audio folders' rules (:mod:`.images`, :mod:`.audio`)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadItemError


def _local(path: Any) -> Path:
    """``path`` as a local file, or a BadItemError: a remote one would need a download inside the bake."""
    if not isinstance(path, str) or "://" in path or "::" in path:
        raise BadItemError(f"the value has no bytes, and its path {path!r} is not a local file; load the dataset "
                           "with its files downloaded (the default of load_dataset), or cast the column to "
                           "bytes first")
    return Path(path)


def decode_image(value: Any, feature: Any, max_pixels: int) -> np.ndarray:
    """An ``Image`` value as the image folder bakes it: uint8 ``(3, H, W)``, or ``(1, H, W)`` uint16 for 16-bit
    grey; EXIF orientation and the feature's ``mode`` applied as ``datasets`` applies them."""
    from PIL import Image, ImageOps

    from .images import _check_pixels, full_depth, to_rgb

    data = value.get("bytes") if isinstance(value, dict) else None
    try:
        opened = Image.open(io.BytesIO(data)) if data is not None else Image.open(_local(value.get("path")))
        with opened as im:
            _check_pixels(im, max_pixels)
            im.load()
            if im.width == 0 or im.height == 0:
                raise BadItemError(f"zero-size image ({im.width}x{im.height})")
            if im.getexif().get(Image.ExifTags.Base.Orientation) is not None:
                im = ImageOps.exif_transpose(im)
            if feature.mode and feature.mode != im.mode:
                im = im.convert(feature.mode)
            if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit grey PGM opens as "I": kept at full depth too
                return full_depth(im)
            return np.ascontiguousarray(np.asarray(to_rgb(im)).transpose(2, 0, 1))
    except BadItemError:
        raise
    except Image.DecompressionBombError as e:
        raise BadItemError(f"decompression bomb: {str(e).split(', could')[0]}") from None
    except Exception as e:  # noqa: BLE001 - Pillow plugins raise many types on corrupt data
        raise BadItemError(f"not a decodable image ({type(e).__name__}: {e})") from None


def decode_audio(value: Any, feature: Any, options: Any) -> tuple[np.ndarray, int]:
    """An ``Audio`` value as the audio folder bakes it (``options.channel``, ``options.audio_dtype``), resampled to
    the feature's ``sampling_rate`` when it sets one."""
    from .audio import _channels, _convert, read_audio

    data = value.get("bytes") if isinstance(value, dict) else None
    if data is None:
        signal, rate = read_audio(_local(value.get("path")), options.channel, options.audio_dtype)
    else:
        import soundfile as sf

        try:
            with sf.SoundFile(io.BytesIO(data)) as f:
                rate, x = f.samplerate, f.read(dtype="float64", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise BadItemError(f"not a readable audio file ({e})") from None
        if not np.isfinite(x).all():
            raise BadItemError("contains NaN or Inf samples")
        signal = _convert(_channels(x, options.channel), options.audio_dtype)
    target = getattr(feature, "sampling_rate", None)
    if target and int(target) != int(rate):
        return resample(signal, int(rate), int(target)), int(target)
    return signal, int(rate)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (:func:`.polyphase.resample_poly`, scipy's filter without scipy), rounded back into the
    signal's dtype: what :class:`prebake.steps.audio.Resample` computes."""
    from .polyphase import resample_poly, samples_as

    g = math.gcd(rate, target)
    return samples_as(resample_poly(x, target // g, rate // g, axis=0), x)
