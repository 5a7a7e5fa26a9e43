"""A clip of frame images with a 16-bit greyscale frame: skipped with a reason that names the frame and the fix,
never stored as garbage (it became a (T, 64, 1, 64) uint8 array of cut values) and never a TypeError (with
``frame_size``); the other clips are kept."""

from __future__ import annotations

import numpy as np
import pytest

import prebake
from prebake.sources import SourceOptions

pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")


def _clip(root, name: str, deep: bool) -> None:
    folder = root / name / "frames"
    folder.mkdir(parents=True)
    for k in range(3):
        if deep and k == 1:
            Image.fromarray((np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80)).save(folder / f"{k}.png")
        else:
            Image.fromarray(np.full((24, 32, 3), 40 * k, np.uint8)).save(folder / f"{k}.png")


@pytest.mark.parametrize("frame_size", [None, 16])
def test_a_16_bit_grey_frame_is_a_bad_item_naming_the_frame(tmp_path, frame_size):
    root = tmp_path / "clips"
    _clip(root, "good", deep=False)
    _clip(root, "deep", deep=True)
    cache = prebake.build(root, tmp_path / "cache", workers=0, progress=False, kind="video",
                          source_options=SourceOptions(frame_size=frame_size, fps=25))
    reasons = {s["key"]: s["reason"] for s in cache.manifest["skipped"]}
    assert list(reasons) == ["deep"] and len(cache) == 1
    assert "frame 1.png is 16-bit greyscale (uint16, 32x24)" in reasons["deep"]
    assert "8-bit" in reasons["deep"] and "imagefolder" in reasons["deep"]
    side = frame_size or 24
    assert cache[0]["frames"].shape == (3, 3, side, frame_size or 32) and cache[0]["frames"].dtype == np.uint8
