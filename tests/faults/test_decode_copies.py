"""Decoding an image copies it no more than it must, and keeps every pixel (benchmarks/trials/decode_copies.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.trials.decode_copies import reference, trial_decode_copies, write_image
from prebake.sources.images import decode_image
from prebake.steps.image import ToCHW


def test_decode_copies_trial(tmp_path: Path) -> None:
    row = trial_decode_copies(tmp_path, 60, seed=3)
    assert row.failures == 0, row.examples


def test_an_image_that_needs_no_turn_is_not_copied(tmp_path: Path) -> None:
    path = write_image(tmp_path / "upright.jpg", np.random.default_rng(0), "RGB", 1)
    decoded = decode_image(path)
    assert type(decoded) is not Image.Image  # the decoder's own image, not Image.copy()'s
    assert np.array_equal(ToCHW()({"image": decoded})["image"], reference(path, None))


def test_a_turned_image_is_turned_in_place(tmp_path: Path) -> None:
    for orientation in range(2, 9):
        path = write_image(tmp_path / f"turned{orientation}.jpg", np.random.default_rng(orientation), "RGB",
                           orientation)
        got = ToCHW()({"image": decode_image(path)})["image"]
        assert np.array_equal(got, reference(path, None)), orientation


def test_bands_of_rgb_and_rgba_equal_the_transposed_array() -> None:
    rng = np.random.default_rng(1)
    for mode in ("RGB", "RGBA"):
        for h, w in ((1, 1), (1, 9), (13, 1), (31, 17)):
            im = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
            got = ToCHW()({"image": im})["image"]
            want = np.asarray(im).transpose(2, 0, 1)
            assert got.shape == want.shape and np.array_equal(got, want) and got.flags.c_contiguous
            assert got.flags.writeable  # a later step may write into it, as into the copy it replaces
