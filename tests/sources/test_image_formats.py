"""Images as Pillow reads them: every format an image folder lists (animated GIF and multi-page TIFF: the first
frame, the others counted), named with or without a suffix; a file of another kind under an image's name is
refused naming what it is; 48-bit colour, which Pillow decodes at 8 bits, is counted."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.trials.shipped import reference, written_images
from prebake.errors import BadItemError
from prebake.sources import detect
from prebake.sources.images import decode_image
from prebake.sources.notes import take_notes
from tests.faults.test_formats import _png48


def test_every_written_format_is_listed_and_equals_pillows_first_frame(tmp_path):
    made = written_images(tmp_path / "img" / "a")
    source = detect(tmp_path / "img")[""]
    assert sorted(source.keys()) == sorted(f"a/{p.name}" for p in made)
    take_notes()
    for i, key in enumerate(source.keys()):
        got = source.read(i)["image"]
        np.testing.assert_array_equal(np.asarray(got), reference(tmp_path / "img" / key, "image")["image"])
    counted = {what: count for what, (count, _) in take_notes().items()}
    assert sum(c for w, c in counted.items() if "first frame" in w) == 2 + 1  # the GIF's 2 frames, the TIFF's page


def test_an_image_without_a_suffix_is_listed_by_its_content(tmp_path):
    (tmp_path / "img" / "a").mkdir(parents=True)
    Image.fromarray(np.full((4, 5, 3), 9, np.uint8)).save(tmp_path / "img" / "a" / "scan_0001", format="PNG")
    (tmp_path / "img" / "a" / "notes.txt").write_text("not an image")
    assert detect(tmp_path / "img")[""].keys() == ["a/scan_0001"]


def test_a_volume_named_like_an_image_is_refused_naming_its_content(tmp_path):
    nib = pytest.importorskip("nibabel")
    shutil.copy(Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii", tmp_path / "scan.png")
    with pytest.raises(BadItemError, match=r"its content is nifti1 \(a volume\)"):
        decode_image(tmp_path / "scan.png")


def test_48_bit_colour_is_counted_as_reduced(tmp_path):
    take_notes()
    image = decode_image(_png48(tmp_path / "deep.png"))
    assert np.asarray(image).dtype == np.uint8
    assert any("8 bits per channel" in w for w in take_notes())
