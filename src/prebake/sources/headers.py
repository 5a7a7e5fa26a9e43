"""An image's width and height from the first bytes of its file, without Pillow: PNG and JPEG.

A build of photos of every size lays their column out from each photo's size before the workers
start (bake/placed.py), so the sizes are read one file after another in the building process.
Pillow's ``Image.open`` parses a JPEG's markers in Python: 0.066 s for benchmarks/realdata.py's
2,400 photos (their files in the page cache); reading only the marker lengths, 0.014 s (0.018 s
through a file object per photo). Anything else (another format, a JPEG whose height comes later,
a damaged header) is None, and the caller asks Pillow. A wrong size is only a guess the build does
not use: the worker finds the item's real size and spills it.
"""

from __future__ import annotations

import os
import struct

_PNG = b"\x89PNG\r\n\x1a\n"
# start-of-frame markers: every JPEG coding process except the DHT/JPG/DAC markers that share the range
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0-7, SOI: markers without a segment
_MAX_SEGMENTS = 256  # a header that goes on longer is not one this reader needs to understand


def image_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's or a JPEG's header; None when this reader cannot tell."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:  # os.read, not open(): a file object per photo cost more than its reads (2,400 photos: 18 ms against 14)
        head = os.read(fd, _FIRST)
        if head.startswith(_PNG):
            return _png(head)
        if head[:2] == b"\xff\xd8":
            return _jpeg(_Bytes(fd, head))
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


_FIRST = 4096  # what one read takes from the file's start: a PNG's IHDR, most JPEGs' frame header


class _Bytes:
    """A window on the file's bytes for :func:`_jpeg`: the first read's, then a block read where the walk goes past
    it (a segment skipped is never read)."""

    def __init__(self, fd: int, head: bytes):
        self.fd, self.data, self.base, self.at = fd, head, 0, 2

    def read(self, n: int) -> bytes:
        start = self.at - self.base
        if start + n > len(self.data):
            self.data, self.base, start = os.pread(self.fd, max(n, _FIRST), self.at), self.at, 0
        out = self.data[start : start + n]
        self.at += len(out)
        return out

    def skip(self, n: int) -> None:
        self.at += n


def _png(head: bytes) -> tuple[int, int] | None:
    if head[12:16] != b"IHDR" or len(head) < 24:
        return None
    w, h = struct.unpack(">II", head[16:24])
    return (w, h) if w and h else None


def _jpeg(f: _Bytes) -> tuple[int, int] | None:
    for _ in range(_MAX_SEGMENTS):
        if f.read(1) != b"\xff":  # a marker, or something this reader does not know
            return None
        b = f.read(1)
        while b == b"\xff":  # fill bytes before the marker's code
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in _NO_LENGTH:
            continue
        if marker == 0xDA:  # start of scan, and no frame header before it
            return None
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if length < 2:
            return None
        if marker in _SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return None
            h, w = struct.unpack(">HH", frame[1:5])
            return (w, h) if w and h else None  # a height of 0 comes later (DNL): Pillow's to tell
        f.skip(length - 2)
    return None
