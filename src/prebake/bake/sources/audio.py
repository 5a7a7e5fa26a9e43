"""Audio folders: ``root/<class>/<recording>.wav``, read with the standard library.

Items are ``{"signal": PCM samples, "sample_rate": Hz, "label": class index}``.
``signal`` keeps its natural dtype: int16 for 8- and 16-bit PCM (8-bit is
unsigned on disk and is centred and scaled to int16), int32 for 24- and 32-bit
PCM. Mono recordings are ``(T,)``, others ``(T, channels)``. Recordings differ
in length, so ``signal`` is a ragged column. Float WAV files are not read by
the standard library; convert them to PCM first (``sox in.wav -e signed -b 16 out.wav``).
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BadItemError
from .folder import ClassFolderSource


class AudioFolderSource(ClassFolderSource):
    """Items ``{"signal", "sample_rate", "label"}`` from class subfolders of WAV files."""

    kind = "audio"
    what = "WAV files"
    extensions = (".wav",)
    ragged_columns = ("signal",)

    def read_file(self, path: Path) -> dict[str, Any]:
        signal, rate = read_wav(path)
        return {"signal": signal, "sample_rate": rate}


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """PCM samples and the sample rate of a WAV file; BadItemError with the reason if unreadable."""
    if not path.is_file():
        raise BadItemError("file not found" if not path.exists() else "is a directory, not a WAV file")
    if path.stat().st_size == 0:
        raise BadItemError("empty file (0 bytes)")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise BadItemError(f"not a readable PCM WAV file ({e})") from None
    if len(raw) < frames * channels * width:
        got = len(raw) // max(1, channels * width)
        raise BadItemError(f"truncated WAV: the header says {frames} frames, the file holds {got}")
    samples = _pcm(raw, width)
    return (samples if channels == 1 else samples.reshape(-1, channels)), rate


def _pcm(raw: bytes, width: int) -> np.ndarray:
    if width == 1:  # unsigned 8-bit, centred on 128
        return ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if width == 2:
        return np.frombuffer(raw, "<i2").copy()
    if width == 3:  # little-endian 24-bit: sign-extend into int32
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        return ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.int32)
    if width == 4:
        return np.frombuffer(raw, "<i4").copy()
    raise BadItemError(f"unsupported PCM sample width of {width} bytes")
