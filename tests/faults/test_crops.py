"""Issue 27, crops of images of many sizes: attacks on ``prebake.Crops``.

Bad input gets a ViewError naming the parameter, the value or the item, and the fix; an image of
zero extent is refused naming it; a channel count that varies per item is refused with the bake step
that fixes it; tiny images (1 x 1) and boxes at the very start or end of a column's values are
read inside their image. The trial at the end runs random sizes, channels, dtypes, output sizes,
ranges, ranks and resume points (``benchmarks/trials/crops.py``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import prebake
from benchmarks.trials.crops import BAD, bake, crops, reference, smooth, within
from prebake.errors import ViewError


@pytest.fixture
def cache(tmp_path):
    rng = np.random.default_rng(1)
    return bake(tmp_path / "c", [{"image": smooth(rng, h, w, (3,), "uint8"), "label": k}
                                 for k, (h, w) in enumerate([(9, 14), (30, 21), (5, 5)])], "c")


@pytest.mark.parametrize("kw, match", BAD)
def test_bad_parameters_are_view_errors_that_name_them(cache, kw, match):
    with pytest.raises(ViewError) as e:
        prebake.Crops(**{"cache": cache, "column": "image", **kw})
    assert match in str(e.value)


@pytest.mark.parametrize("kw, match", [
    ({"size": 0}, r"Crops\(size=0\): size is the side of the square crops, a whole number from 1 to 8192, e.g. "
                  r"size=224"),
    ({"scale": (0.9, 0.2)}, r"Crops\(scale=\(0.9, 0.2\)\): the range is reversed \(0.9 > 0.2\); give it low first, "
                            r"e.g. scale=\(0.08, 1.0\)"),
    ({"ratio": (0, 1)}, r"Crops\(ratio=\(0, 1\)\): ratio is a \(low, high\) pair of numbers above 0.0, e.g. "),
    ({"column": "label"}, r"column 'label' of .* has items of shape \[\] .*Crops cuts images of numbers, \(H, W\) or "
                          r"\(C, H, W\): one of \['image'\]"),
])
def test_messages_give_value_allowed_and_fix(cache, kw, match):
    with pytest.raises(ViewError, match=match):
        prebake.Crops(**{"cache": cache, "column": "image", **kw})


def test_zero_extent_images_are_refused_naming_them(tmp_path):
    items = [{"image": np.zeros((3, h, w), np.uint8), "label": k} for k, (h, w) in enumerate([(4, 5), (0, 5), (3, 2)])]
    cache = bake(tmp_path / "z", items, "z")
    with pytest.raises(ViewError, match=r"1 image\(s\) of 'image' have zero height or width \(item 1: \[0, 5\]\).*"
                                        r"leave them out with indices="):
        prebake.Crops(cache, "image", size=4)
    assert prebake.Crops(cache, "image", size=4, indices=[0, 2]).item.tolist() == [0, 2]


def test_grey_beside_colour_is_refused_with_the_step_that_fixes_it(tmp_path):
    items = [{"image": np.zeros(s, np.uint8), "label": k} for k, s in enumerate([(3, 4, 5), (1, 6, 5)])]
    cache = bake(tmp_path / "g", items, "g")
    with pytest.raises(ViewError, match=r"its channel count varies per item .*ToRGB8"):
        prebake.Crops(cache, "image", size=4)


def test_a_one_dimensional_or_ragged_row_column_is_refused(tmp_path):
    cache = prebake.write_arrays(tmp_path / "s", {"signal": [np.arange(5.0), np.arange(3.0)], "label": np.arange(2)})
    with pytest.raises(ViewError, match=r"Crops\(column='signal'\): .* has items of shape \[None\]"):
        prebake.Crops(cache, "signal", size=4)


def test_a_fixed_column_of_images_of_one_size_is_cropped_too(tmp_path):
    rng = np.random.default_rng(2)
    imgs = np.stack([smooth(rng, 12, 17, (3,), "uint8") for _ in range(4)])
    cache = prebake.write_arrays(tmp_path / "f", {"image": imgs, "label": np.arange(4)})
    view = prebake.Crops(cache, "image", size=9)
    batch = view[np.arange(4)]
    for j in range(4):
        assert not within(batch["image"][j], reference(imgs[j], batch["box"][j], 9), batch["box"][j], 9)


@pytest.mark.parametrize("preload", [None, "device"])
def test_tiny_images_at_both_ends_of_the_values_are_read_inside_them(tmp_path, preload):
    """Item 0 starts the values file and the last item ends it; 1 x 1 and 1 x 2 images are upscaled."""
    imgs = [np.full((2, 1, 1), 9, np.uint8), np.arange(2 * 5 * 7, dtype=np.uint8).reshape(2, 5, 7),
            np.array([[[3, 250]], [[7, 8]]], np.uint8)]
    cache = bake(tmp_path / "t", [{"image": im, "label": k} for k, im in enumerate(imgs)], "t")
    for train in (True, False):
        for b in prebake.Loader(prebake.Crops(cache, "image", size=5, train=train), 3, preload=preload):
            for j, i in enumerate(b["item"].tolist()):
                want = reference(imgs[i], b["box"][j].tolist(), 5)
                assert np.abs(b["image"][j].numpy().astype(float) - want).max() <= 0.5 + 1e-6, (i, b["box"][j])
            assert (b["image"][b["item"] == 0] == 9).all()


def test_crops_trials(tmp_path):
    row = crops(tmp_path, trials=30, seed=os.getpid() % 1000)
    assert row.failures == 0, row.examples
