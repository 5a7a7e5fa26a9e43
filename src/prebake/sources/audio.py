"""Audio folders: ``root/<class>/<recording>.{wav,flac,ogg,mp3,...}``, read with soundfile (libsndfile).

Items are ``{"signal": samples, "sample_rate": Hz, "label": class index}``. Recordings
differ in length, so ``signal`` is a ragged column. soundfile is the reader librosa and
torchaudio use; it is in the ``audio`` extra (``pip install 'prebake[audio]'``) and is
imported only when a recording is read.

Formats: every one libsndfile decodes (``soundfile.available_formats()``), by the suffixes
of :data:`AUDIO_EXTENSIONS`: WAV (8-bit unsigned, 16/24/32-bit signed PCM, 32/64-bit float,
u-law, A-law, ...), WAVEX, RF64, W64, FLAC, OGG (Vorbis, Opus), MP3, AIFF, AU, CAF, and
the rarer AVR, HTK, IFF/SVX, MPC 2000, PAF, PVF, SD2, SDS, IRCAM, VOC, NIST, WVE, XI.
MATLAB ``.mat`` and headerless RAW are left to other readers (a ``.mat`` is rarely audio).

**One dtype for every file**, chosen by ``dtype`` (the ``audio_dtype`` setting), never by
whichever file comes first. Every file is decoded to float64 in ``[-1, 1]`` (exact for
integer PCM up to 32 bits) and converted:

- ``"int16"`` (default): ``round(x * 32768)``, clipped to int16. 16-bit files come back
  bit for bit; 24- and 32-bit files are rounded to 16 bits; 8-bit files are centred and
  scaled (``(u - 128) * 256``). Half the bytes of int32, and the resolution of a
  digital stethoscope. A float file's samples beyond full scale (``|x| > 1``) are clipped,
  and counted in the build's notes (manifest, ``build.log``, a WARNING) with the fix:
  int16 stays the default because one scale for every file matters more than the rare
  over-range float file, and ``"float32"`` keeps them;
- ``"int32"``: ``round(x * 2**31)``: full scale is ``2**31`` whatever the file's bit depth,
  so 24-bit samples are ``value * 256`` and mix with 16-bit ones on one scale;
- ``"float32"``: the decoded values; float files above 1.0 are kept, not clipped.

Integer PCM is turned into float on the device (``prebake.crop_or_pad`` scales by
``1 / 2**(bits - 1)``, so every choice lands in ``[-1, 1)``).

**Channels**, by ``channel``:

- ``"mix"`` (default): the mean of the channels, ``(T,)``;
- ``"0"``, ``"1"``, ...: that channel, ``(T,)``; a file with fewer channels is a bad item;
- ``"all"``: ``(T, channels)``; files may differ in channel count (the ``signal`` column is ragged in
  every axis then, each item keeping its own ``channels``), so check them when a model needs one count.

A WAV (or RF64) whose ``data`` chunk header says 0 bytes though bytes follow it (a streaming
writer stopped before it went back to write the size) is a bad item that says so and how to repair
it: libsndfile alone reads it as empty, and where its audio ends cannot be known (a ``LIST`` chunk
after the frames would be read as samples). When what follows the header is a chain of chunks
ending at the end of the file (``LIST``, ...), the recording is empty.

Bad items, with the reason in the manifest: a missing, empty, truncated (WAV: fewer
frames than the header declares, counted with the frame size its channels and sample
width give, so a wrong ``blockAlign`` does not make a whole file look cut) or undecodable
file, NaN or Inf samples in a float file, and a channel that is not there.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadItemError, OptionError, SourceError, opt
from .folder import ClassFolderSource
from .notes import note
from .sniff import AUDIO_EXTENSIONS, FAMILY, sniff

AUDIO_DTYPES = ("int16", "int32", "float32")
_FULL_SCALE = {"int16": 2.0**15, "int32": 2.0**31}


def check_channel(channel: str) -> str:
    """``channel`` as given, if it is ``"mix"``, ``"all"`` or a channel index; else an OptionError."""
    channel = str(channel)
    if channel in ("mix", "all") or (channel.isdigit() and int(channel) >= 0):
        return channel
    raise OptionError(f"{opt('channel')} is {channel!r}; give mix (the mean of the channels), all (keep "
                      f"(T, channels)) or a channel index such as 0")


def check_dtype(dtype: str) -> str:
    if dtype not in AUDIO_DTYPES:
        raise OptionError(f"{opt('audio_dtype')} is {dtype!r}; give one of {', '.join(AUDIO_DTYPES)} "
                          "(int16 halves the bytes of int32; float32 keeps float files unclipped)")
    return dtype


def require_soundfile() -> None:
    """Fail before any work, with the install command, when soundfile is not installed."""
    if importlib.util.find_spec("soundfile") is None:
        raise SourceError("reading audio needs soundfile (libsndfile): pip install 'prebake[audio]' "
                          "(or pip install soundfile)")


class AudioFolderSource(ClassFolderSource):
    """Items ``{"signal", "sample_rate", "label"}`` from class subfolders of audio files.

    ``channel`` and ``dtype`` are the channel policy and the output dtype of the module
    docstring; both are part of the source's identity, so changing one rebuilds.
    """

    kind = "audio"
    what = "audio files"
    extensions = AUDIO_EXTENSIONS
    content_family = "audio"
    ragged_columns = ("signal",)

    def __init__(self, root: str | os.PathLike[str], classes: Any = None, channel: str = "mix",
                 dtype: str = "int16"):
        self.channel, self.dtype = check_channel(channel), check_dtype(dtype)
        require_soundfile()
        super().__init__(root, classes)

    def imports(self) -> tuple[str, ...]:
        return ("soundfile",)

    def read_file(self, path: Path) -> dict[str, Any]:
        signal, rate = read_audio(path, self.channel, self.dtype)
        return {"signal": signal, "sample_rate": rate}

    def describe(self) -> dict[str, Any]:
        params = {"classes": list(self.classes), "channel": self.channel, "dtype": self.dtype}
        return self.describe_files(self.root, params, [self.root / p for p in self._paths])


def read_audio(path: Path, channel: str = "mix", dtype: str = "int16") -> tuple[np.ndarray, int]:
    """Samples of ``path`` in ``dtype`` under the channel policy ``channel``, and the sample rate.

    Raises :class:`~prebake.errors.BadItemError` with the reason for a file that cannot be used.
    """
    path = Path(path)
    if not path.is_file():
        raise BadItemError("file not found" if not path.exists() else "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise BadItemError("empty file (0 bytes)")
    x, rate, channels = _decode(path)
    if not len(x):
        _refuse_unsized(path)
    _check_wav_length(path, len(x), channels)
    if not np.isfinite(x).all():
        raise BadItemError("contains NaN or Inf samples")
    return _convert(_channels(x, channel), dtype), int(rate)


def _decode(path: Path) -> tuple[np.ndarray, int, int]:
    """(samples ``(T, channels)`` float64, sample rate, channels) of ``path``."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            rate, channels = f.samplerate, f.channels
            frames = -1 if f.seekable() else f.frames  # XI files are not seekable: soundfile needs the count
            return f.read(frames=frames, dtype="float64", always_2d=True), rate, channels
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise BadItemError(f"not a readable audio file ({e}){_other_kind(path)}") from None


def _refuse_unsized(path: Path) -> None:
    """A BadItemError for a WAV (or RF64) whose ``data`` chunk says 0 bytes though bytes follow it that are not a
    chain of chunks to the file's end (see the module docstring): where its audio ends cannot be known, so reading
    to the end could take a trailing chunk for samples (a ``LIST`` after the frames: garbage at the end)."""
    declared, frame_bytes, start = _wav_data_size(path)
    size = path.stat().st_size
    if declared != 0 or size - start < max(frame_bytes, 1) or _chunks_to_end(path, start, size):
        return
    raise BadItemError(f"unsized WAV data: its header says the audio is 0 bytes, but {size - start:,} bytes follow "
                       "it (a writer stopped before it wrote the size?), so where the audio ends is unknown; rewrite "
                       "it with a tool told to ignore the header's length (sox's ignore-length option) or leave the "
                       "file out")


def _chunks_to_end(path: Path, pos: int, size: int) -> bool:
    """Whether the bytes from ``pos`` are RIFF chunks (a 4-character name, a size) that end at the file's end:
    an empty recording followed by metadata, not audio (samples almost never chain so)."""
    with open(path, "rb") as f:
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(8)
            if not all(32 <= c < 127 for c in head[:4]):
                return False
            end = pos + 8 + struct.unpack("<I", head[4:])[0]
            pos = end + (end & 1) if end + (end & 1) <= size else end  # the pad byte may be missing at the end
    return pos == size


def _other_kind(path: Path) -> str:
    """What the file is instead, by its first bytes, when that is an image, a volume or a video."""
    found = sniff(path)
    kind = FAMILY.get(found or "")
    if kind in (None, "audio"):
        return ""
    article = "an" if kind == "image" else "a"
    return f": its content is {found} ({article} {kind}); read it from a folder or table of {kind}s"


def _channels(x: np.ndarray, channel: str) -> np.ndarray:
    if channel == "all":
        return x
    if channel == "mix":
        return x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
    c = int(channel)
    if c >= x.shape[1]:
        raise BadItemError(f"has {x.shape[1]} channel(s), and {opt('channel', channel)} asks for channel {c}; "
                           f"use {opt('channel', 'mix')} or a channel below {x.shape[1]}")
    return x[:, c]


def _convert(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return x.astype(np.float32)
    info = np.iinfo(dtype)
    over = int(np.count_nonzero(np.abs(x) > 1.0))  # only float files go beyond full scale (PCM tops out at 1)
    if over:
        note(f"audio samples beyond full scale clipped to {dtype}; keep them with {opt('audio_dtype', 'float32')}",
             over)
    return np.clip(np.rint(x * _FULL_SCALE[dtype]), info.min, info.max).astype(dtype)


def _check_wav_length(path: Path, frames: int, channels: int) -> None:
    """A WAV whose data chunk is shorter than its header says was cut off (libsndfile reads what is there).

    The header's frame count is taken at the larger of two frame sizes, ``blockAlign`` and channels x
    bytes per sample (what libsndfile reads by), so a wrong ``blockAlign`` alone never looks like a cut."""
    declared, frame_bytes, _ = _wav_data_size(path)
    if declared is None or frame_bytes <= 0 or declared == 0xFFFFFFFF:  # unknown, or a streamed/RF64 size
        return
    if frames < declared // frame_bytes:
        raise BadItemError(f"truncated WAV: the header says {declared // frame_bytes} frames, the file holds {frames}")


def _wav_data_size(path: Path) -> tuple[int | None, int, int]:
    """(bytes the ``data`` chunk declares, bytes per frame, offset of its first byte) from the RIFF chunk headers;
    None, 0 if not found. Bytes per frame: the larger of blockAlign and channels x whole bytes per sample."""
    frame_bytes = 0
    wide = None  # RF64: the data size its ds64 chunk gives, where the data chunk's own says 0xFFFFFFFF
    with open(path, "rb") as f:
        if f.read(12)[:4] not in (b"RIFF", b"RF64"):
            return None, 0, 0
        while True:
            head = f.read(8)
            if len(head) < 8:
                return None, frame_bytes, 0
            name, size = head[:4], struct.unpack("<I", head[4:])[0]
            if name == b"fmt ":
                fmt = f.read(size + (size & 1))
                frame_bytes = _frame_bytes(fmt)
            elif name == b"ds64":
                ds64 = f.read(size + (size & 1))
                wide = struct.unpack("<Q", ds64[8:16])[0] if len(ds64) >= 16 else None
            elif name == b"data":
                return (wide if size == 0xFFFFFFFF and wide is not None else size), frame_bytes, f.tell()
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)


def _frame_bytes(fmt: bytes) -> int:
    """The larger of the fmt chunk's blockAlign and channels x whole bytes per sample (0: unknown)."""
    if len(fmt) < 14:
        return 0
    channels, block_align = struct.unpack("<H", fmt[2:4])[0], struct.unpack("<H", fmt[12:14])[0]
    bits = struct.unpack("<H", fmt[14:16])[0] if len(fmt) >= 16 else 0
    return max(block_align, channels * ((bits + 7) // 8))
