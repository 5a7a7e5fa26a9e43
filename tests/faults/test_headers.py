"""Image sizes read from PNG and JPEG headers without Pillow (sources/headers.py): the same as Pillow's on the files
scikit-image ships and on JPEGs of every coding Pillow writes; None, never an exception or a wrong size, for
hostile headers; and an image folder's guessed sizes equal the decoded items'."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prebake.sources.headers import image_size


def _shipped() -> list[Path]:
    """The PNGs and JPEGs scikit-image ships in its wheel (none when it is not installed: an optional package)."""
    try:
        import skimage
    except ImportError:
        return []
    return sorted(p for p in (Path(skimage.__file__).parent / "data").iterdir()
                  if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


@pytest.mark.skipif(not _shipped(), reason="scikit-image is not installed: its sample images are skipped")
def test_the_size_of_every_shipped_image_is_pillows() -> None:
    for path in _shipped():
        with Image.open(path) as im:
            assert image_size(str(path)) == im.size, path.name


def _jpegs(d: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the header keeps the stored size, and so does the count of values
    exif[0x010E] = "x" * 20000  # a long APP1 segment before the frame header
    out = []
    for name, im, kw in [("plain", rgb, {}), ("progressive", rgb, {"progressive": True}),
                         ("optimized", rgb, {"optimize": True}), ("grey", rgb.convert("L"), {}),
                         ("cmyk", rgb.convert("CMYK"), {}), ("restarts", rgb, {"restart_marker_blocks": 1}),
                         ("exif", rgb, {"exif": exif}), ("subsampled", rgb, {"subsampling": 2, "quality": 30})]:
        out.append(d / f"{name}.jpg")
        im.save(out[-1], "JPEG", **kw)
    return out


def test_jpegs_of_every_coding_pillow_writes(tmp_path: Path) -> None:
    for path in _jpegs(tmp_path):
        with Image.open(path) as im:
            assert image_size(str(path)) == im.size, path.name


def _hostile(d: Path) -> dict[str, bytes]:
    buf = io.BytesIO()
    Image.new("RGB", (30, 20)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    png = io.BytesIO()
    Image.new("RGB", (30, 20)).save(png, "PNG")
    sof = jpeg.index(b"\xff\xc0")
    return {
        "empty": b"",
        "soi only": b"\xff\xd8",
        "fill forever": b"\xff\xd8" + b"\xff" * 5000,
        "cut in the frame header": jpeg[: sof + 6],
        "segment longer than the file": b"\xff\xd8\xff\xe1\xff\xff" + b"\0" * 10,
        "segment length 0": b"\xff\xd8\xff\xe1\x00\x00" + jpeg[2:],
        "garbage between segments": b"\xff\xd8\x00\x01" + jpeg[2:],
        "scan before any frame": b"\xff\xd8\xff\xda\x00\x02",
        "height 0 (DNL)": jpeg[: sof + 5] + b"\x00\x00" + jpeg[sof + 7:],
        "endless segments": b"\xff\xd8" + b"\xff\xe2\x00\x02" * 10000,
        "longest segments past the limit": b"\xff\xd8" + (b"\xff\xe2\xff\xff" + b"\0" * 65533) * 257 + jpeg[2:],
        "png cut": png.getvalue()[:20],
        "png width 0": png.getvalue()[:16] + b"\0\0\0\0" + png.getvalue()[20:],
        "png without IHDR": png.getvalue()[:12] + b"XXXX" + png.getvalue()[16:],
        "gif": b"GIF89a" + b"\0" * 40,
    }


def test_a_hostile_header_is_none_never_an_error_or_a_size(tmp_path: Path) -> None:
    for name, data in _hostile(tmp_path).items():
        path = tmp_path / "f.bin"
        path.write_bytes(data)
        assert image_size(str(path)) is None, name
    assert image_size(str(tmp_path / "missing.jpg")) is None
    assert image_size(str(tmp_path)) is None  # a directory


def test_an_image_folders_guesses_are_its_items_sizes(tmp_path: Path) -> None:
    import prebake
    from prebake.sources.folder import ImageFolderSource

    (tmp_path / "j").mkdir()
    rng = np.random.default_rng(1)
    pngs = []
    for k, mode in enumerate(("RGB", "RGBA", "L", "P")):  # what the folder converts to RGB: 3 x w x h each
        pngs.append(tmp_path / "j" / f"{mode}.png")
        Image.fromarray(rng.integers(0, 256, (20 + k, 31 - k, 3), dtype=np.uint8)).convert(mode).save(pngs[-1])
    for k, path in enumerate([*_shipped()[:6], *pngs, *_jpegs(tmp_path / "j")]):
        (tmp_path / "photos" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / f"c{k % 2}" / f"{k}{path.suffix}").write_bytes(path.read_bytes())
    source = ImageFolderSource(tmp_path / "photos")
    guesses = source.predicted_sizes("image")
    cache = prebake.build(str(tmp_path / "photos"), tmp_path / "out", workers=0, progress=False)
    assert guesses is not None and len(cache) == len(guesses)
    by_key = dict(zip(source.keys(), guesses.tolist()))
    for i, key in enumerate(cache.source_keys or ()):
        assert cache[i]["image"].size == by_key[key], key
