"""Read one file of a table (or a folder of mixed files) with the reader its content needs.

A CSV table reads either **audio** (every row a recording: ``signal`` ragged, ``sample_rate``)
or **media**: each row an image (``image`` RGB or 16-bit grey) or a volume (``image``
``(C, D, H, W)`` with its geometry), whichever the file is. Which one a table reads is
``reads="audio"`` (``--kind audio`` on a CSV), else what most of its rows are: the first
:data:`SNIFFED_ROWS` by their first bytes, the others by their names (by their bytes where the
name says nothing, ``IM000001``). A row whose file
is of the other kind (a WAV in a table of scans, a scan in a table of recordings) is a bad
item that says so; a video row is refused (``--kind video`` reads clips).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadItemError, OptionError, opt
from .audio import read_audio, require_soundfile
from .images import DEFAULT_MAX_PIXELS, decode_image
from .sniff import family, name_family
from .volume_formats import libraries_needed
from .volume_header import DEFAULT_MAX_VOXELS
from .volume_readers import is_series_dir, read_volume, require

READS = ("media", "audio")
#: Rows whose first bytes decide what the table reads (the rest by their names, unless those say nothing).
SNIFFED_ROWS = 256


@dataclass(frozen=True)
class Readers:
    """The limits and policies every reader of a table uses (see :class:`prebake.SourceOptions`)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_voxels: int = DEFAULT_MAX_VOXELS
    nan_fill: float | None = None
    channel: str = "mix"
    audio_dtype: str = "int16"
    channels: str | None = None  # images' channel policy (prebake.sources.images.with_channels)

    def __post_init__(self) -> None:
        # a fill value too large for a volume's own dtype is refused per item (volume_formats.finite), which knows it
        if self.nan_fill is not None and not math.isfinite(self.nan_fill):
            raise OptionError(f"{opt('nan_fill', self.nan_fill)} is not a finite number; NaN and infinite voxels are "
                              "what it replaces: give a finite value, e.g. 0")


def row_family(path: Path, by_content: bool = True) -> str | None:
    """What a row's path holds: a series directory, else its first bytes (or, not ``by_content``, its name when
    that says)."""
    if path.is_dir():
        return "volume" if is_series_dir(path) else None
    return family(path) if by_content else name_family(path.name) or family(path)


def table_reads(families: list[str | None], forced: str | None) -> str:
    """``"audio"`` when asked, or when most rows are audio; else ``"media"`` (images and volumes)."""
    if forced is not None:
        return forced
    audio = sum(f == "audio" for f in families)
    return "audio" if audio and audio > sum(f in ("image", "volume") for f in families) else "media"


def require_readers(reads: str, paths: list[Path], families: list[str | None]) -> None:
    """Fail before any work when the rows need a reader that is not installed."""
    if reads == "audio":
        require_soundfile()
        return
    for module in sorted(libraries_needed([p for p, f in zip(paths, families) if f == "volume"])):
        require(module)


def read_file(path: Path, reads: str, readers: Readers) -> dict[str, Any]:
    """The item of the file at ``path`` in a table that ``reads`` audio or media (see the module docstring)."""
    kind = ("volume" if is_series_dir(path) else None) if path.is_dir() else family(path)
    if reads == "audio":
        if kind not in ("audio", None):
            raise BadItemError(f"is {_a(kind)} file, in a table of audio recordings; give it a table of its own, or "
                               "leave the row out")
        signal, rate = read_audio(path, readers.channel, readers.audio_dtype)
        return {"signal": signal, "sample_rate": rate}
    if kind == "volume":
        return read_volume(path, readers.max_voxels, readers.nan_fill)
    if kind in ("audio", "video"):
        fix = f"read a table of recordings with {opt('kind', 'audio')}" if kind == "audio" else \
            f"read clips with {opt('kind', 'video')}"
        raise BadItemError(f"is {_a(kind)} file, in a table of images and volumes: give it a table of its own "
                           f"({fix}), or leave the row out")
    return {"image": decode_image(path, readers.max_pixels, readers.channels)}


def _a(kind: str | None) -> str:
    return f"an {kind}" if kind and kind[0] in "aeiou" else f"a {kind}"
