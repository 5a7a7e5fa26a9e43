"""What a file is, from its first bytes: the format that decides which reader opens it.

Real exports name files as they please: a DICOM series as ``IM000001``, ``6154``; a NIfTI
saved as ``scan.img``; a WAV as ``take.audio``. So readers choose by content
(:func:`sniff`), and by the name only where the content cannot tell: the raw data half of
a header/data pair (Analyze ``.img``, PAR/REC ``.REC``, AFNI ``.BRIK``), DICOM written
without its 128-byte preamble, and the audio formats without a mark (headerless RAW).

:func:`family` turns a format into what a source does with it: ``"image"`` (Pillow),
``"audio"`` (soundfile), ``"volume"`` (nibabel, pydicom, numpy), ``"video"`` (PyAV) or
``"array"``; None when neither content nor name says.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

#: Bytes read to decide (the DICOM mark sits at byte 128; a NIfTI-1 magic at 344).
HEAD_BYTES = 512

#: Suffixes of the files that hold only raw voxels: their header half decides what they are.
DATA_HALVES = (".img", ".rec", ".brik", ".brik.gz", ".img.gz")

#: Extensions (lower case) that image folders and CSV tables treat as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm",
                    ".pbm", ".pnm", ".jp2", ".j2k")

#: The suffixes of the formats libsndfile decodes (lower case).
AUDIO_EXTENSIONS = (".wav", ".wave", ".rf64", ".w64", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
                    ".aifc", ".au", ".snd", ".caf", ".avr", ".htk", ".svx", ".8svx", ".iff", ".paf", ".pvf", ".sd2",
                    ".sds", ".sf", ".ircam", ".voc", ".nist", ".sph", ".wve", ".xi", ".mpc")

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")

#: Volume formats by name: NIfTI, DICOM, nibabel's other formats, numpy.
VOLUME_NAMES = (".nii.gz", ".nii", ".dcm", ".npy", ".mgh", ".mgz", ".mnc", ".mnc.gz", ".par", ".head", ".hdr",
                ".hdr.gz", ".v", *DATA_HALVES)

FAMILY = {
    **dict.fromkeys(("jpeg", "png", "gif", "bmp", "tiff", "webp", "pnm", "jpeg2000"), "image"),
    **dict.fromkeys(("wav", "w64", "flac", "ogg", "aiff", "au", "caf", "mp3", "nist", "voc", "svx", "avr", "paf", "pvf",
                     "xi", "sds", "ircam"), "audio"),
    **dict.fromkeys(("dicom", "nifti1", "nifti2", "nifti-pair", "analyze", "mgh", "minc1", "minc2", "parrec", "afni",
                     "ecat", "npy"), "volume"),
    **dict.fromkeys(("mp4", "matroska", "avi"), "video"),
}


def read_head(path: Path, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of ``path`` (fewer for a short file; empty when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def sniff(path: str | os.PathLike[str]) -> str | None:
    """The format of ``path`` from its first bytes (see :data:`FAMILY`), or None when they do not say."""
    path = Path(path)
    head = read_head(path)
    if head[:2] == b"\x1f\x8b":
        return _gzip_inner(path)
    found = sniff_bytes(head)
    if found == "minc2?":
        return "minc2" if _is_minc2(path) else None
    return found


def sniff_bytes(head: bytes) -> str | None:
    """The format that the first bytes ``head`` of a file show ("minc2?" for HDF5: the file must say)."""
    for check in (_volume_mark, _image_mark, _audio_mark, _video_mark):
        found = check(head)
        if found is not None:
            return found
    return None


def _volume_mark(h: bytes) -> str | None:
    if h[128:132] == b"DICM":
        return "dicom"
    if h[:6] == b"\x93NUMPY":
        return "npy"
    if h[:4] in (b"CDF\x01", b"CDF\x02"):
        return "minc1"
    if h[:8] == b"\x89HDF\r\n\x1a\n":
        return "minc2?"
    if h[:7] in (b"MATRIX7", b"MATRIX6"):
        return "ecat"
    nifti = _nifti_mark(h)
    if nifti is not None:
        return nifti
    if b"DATA DESCRIPTION FILE" in h[:128] and h.lstrip()[:1] == b"#":
        return "parrec"
    if h.lstrip(b"\r\n ")[:6] == b"type =" and b"-attribute" in h[:64]:
        return "afni"
    return "mgh" if _is_mgh(h) else None


def _nifti_mark(h: bytes) -> str | None:
    """NIfTI-1/2 (single file or header of a pair) and Analyze 7.5 headers, by size field and magic."""
    if len(h) < 348:
        return None
    sizes = struct.unpack("<i", h[:4])[0], struct.unpack(">i", h[:4])[0]
    if 540 in sizes and h[4:12] in (b"n+2\0\r\n\x1a\n", b"ni2\0\r\n\x1a\n"):
        return "nifti2" if h[4:7] == b"n+2" else "nifti-pair"
    if 348 not in sizes:
        return None
    magic = h[344:348]
    if magic == b"n+1\0":
        return "nifti1"
    if magic == b"ni1\0":
        return "nifti-pair"
    return "analyze" if magic == b"\0\0\0\0" or not magic.strip(b"\0") else None


def _is_mgh(h: bytes) -> bool:
    """FreeSurfer MGH: version 1, four positive dimensions and a known voxel type, big-endian."""
    if len(h) < 284:
        return False
    version, *dims, kind = struct.unpack(">6i", h[:24])
    return version == 1 and all(0 < d < 2**16 for d in dims) and kind in (0, 1, 3, 4)


def _image_mark(h: bytes) -> str | None:
    if h[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if h[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if h[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if h[:4] == b"RIFF" and h[8:12] == b"WEBP":
        return "webp"
    if h[:2] == b"BM" and h[6:10] == b"\0\0\0\0" and len(h) >= 26:
        return "bmp"
    if h[:12] == b"\0\0\0\x0cjP  \r\n\x87\n" or h[:4] == b"\xff\x4f\xff\x51":
        return "jpeg2000"
    if len(h) > 2 and h[:1] == b"P" and h[1:2] in b"123456" and h[2:3] in b" \t\r\n":
        return "pnm"
    return None


def _audio_mark(h: bytes) -> str | None:
    if h[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and h[8:12] == b"WAVE":
        return "wav"
    if h[:4] == b"riff" and h[4:12] == b"\x2e\x91\xcf\x11\xa5\xd6\x28\xdb":
        return "w64"
    if h[:4] == b"FORM" and h[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if h[:4] == b"FORM" and h[8:12] in (b"8SVX", b"16SV"):
        return "svx"
    for mark, fmt in _AUDIO_MARKS:
        if h.startswith(mark):
            return fmt
    if h[:3] == b"ID3" or (len(h) > 1 and h[0] == 0xFF and h[1] & 0xE6 in (0xE2, 0xE4, 0xE6)):
        return "mp3"  # an ID3 tag, or an MPEG audio frame header (layer bits set: never JPEG's FF D8)
    return None


#: libsndfile's formats that open with a fixed mark (HTK and MPC 2000 have none: their suffix decides).
_AUDIO_MARKS = ((b"fLaC", "flac"), (b"OggS", "ogg"), (b".snd", "au"), (b"dns.", "au"), (b"caff", "caf"),
                (b"NIST_1A", "nist"), (b"Creative Voice File", "voc"), (b"2BIT", "avr"), (b" paf", "paf"),
                (b"fap ", "paf"), (b"PVF1", "pvf"), (b"Extended Instrument:", "xi"), (b"\xf0\x7e", "sds"),
                *((m, "ircam") for m in (b"\x64\xa3\x01\x00", b"\x64\xa3\x02\x00", b"\x64\xa3\x03\x00",
                                         b"\x64\xa3\x04\x00", b"\x00\x01\xa3\x64", b"\x00\x02\xa3\x64",
                                         b"\x00\x03\xa3\x64", b"\x00\x04\xa3\x64")))


def _video_mark(h: bytes) -> str | None:
    if h[4:8] == b"ftyp":
        return "mp4"
    if h[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if h[:4] == b"RIFF" and h[8:12] == b"AVI ":
        return "avi"
    return None


def _gzip_inner(path: Path) -> str | None:
    """What a gzip file holds: a ``.nii.gz``, an ``.mgz``, ... (None for raw voxels such as a ``.BRIK.gz``)."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error):
        return None
    found = sniff_bytes(head)
    return None if found == "minc2?" else found


def _is_minc2(path: Path) -> bool:
    """An HDF5 file that is MINC-2 (it has a ``minc-2.0`` group): other HDF5 files are no volume."""
    if path.name.lower().endswith(".mnc"):
        return True
    try:
        import h5py
    except ImportError:
        return False
    try:
        with h5py.File(path, "r") as f:
            return "minc-2.0" in f
    except (OSError, ValueError):
        return False


def _suffix_family(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(VOLUME_NAMES):
        return "volume"
    ext = os.path.splitext(lower)[1]
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def family(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` holds: "image", "audio", "volume", "video", or None. Content first; the name for the
    raw data halves of a pair and where the content shows nothing (see the module docstring)."""
    path = Path(path)
    if path.name.lower().endswith(DATA_HALVES):
        return "volume"
    found = sniff(path)
    return FAMILY.get(found) if found is not None else _suffix_family(path.name)


def name_family(name: str) -> str | None:
    """What a file name says the file holds (no read): for listings, and for files that cannot be read."""
    return _suffix_family(name)
