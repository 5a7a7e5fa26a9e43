"""An outsider's attacks on ``prebake.Crops``: the dtypes, parameters and subsets a new user passes.

Each case is crops equal to the per-sample reference (numpy's box, torch's interpolate) or a ViewError
naming the parameter, the value and the fix; never torch's own exception, a warning of garbage casts,
or the same "random" box handed out twice for an item oversampled in ``indices=``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import prebake
from benchmarks.trials.crops import reference, smooth, within
from benchmarks.trials.crops_attacks import crops_attacks
from benchmarks.trials.patches import Volumes
from prebake.errors import ViewError

SCALE = 250  # uint16 images: the photos' 0..255 times this, up to 63,750


def _cache(tmp_path, dtype="uint8", sizes=((1, 1), (2, 50), (40, 1), (5, 7), (300, 20)), tag="c"):
    rng = np.random.default_rng(len(sizes))
    items = [{"image": (smooth(rng, h, w, (3,), "float64") * (SCALE if dtype == "uint16" else 1)).astype(dtype),
              "label": k} for k, (h, w) in enumerate(sizes)]
    return prebake.build(Volumes(items, tag), tmp_path / tag, workers=0, progress=False), items


def _check(batch, items, size, scale=1):
    """Each crop within the trial's tolerance of the reference (stated for 0..255: a wider range is scaled down)."""
    for j in range(len(batch["item"])):
        img, box = items[int(batch["item"][j])]["image"], np.asarray(batch["box"][j])
        got = np.asarray(batch["image"][j])
        assert got.dtype == img.dtype and not within(got / scale, reference(img, box, size) / scale, box, size)


@pytest.mark.parametrize("where", ["host", "ram", "device"])
@pytest.mark.parametrize("train", [True, False])
def test_uint16_images_are_cropped_in_uint16(tmp_path, where, train):
    cache, items = _cache(tmp_path, "uint16")
    view = prebake.Crops(cache, "image", 16, train=train)
    kw = {"host": {}, "ram": {"preload": "ram"}, "device": {"preload": "device", "device": "cpu"}}[where]
    batches = list(prebake.Loader(view, batch_size=5, **kw))
    assert sum(len(b["item"]) for b in batches) == 5
    for b in batches:
        _check(b, items, 16, SCALE)


def test_a_bool_column_is_refused_naming_the_fix(tmp_path):
    cache, _ = _cache(tmp_path, "bool")
    with pytest.raises(ViewError, match=r"Crops\(column='image'\): column 'image' .* holds bool .*resized by "
                                        r"interpolation.*uint8"):
        prebake.Crops(cache, "image", 16)


@pytest.mark.parametrize("seed", [2**64, 2**70 + 3])
def test_a_seed_past_64_bits_draws_its_own_boxes(tmp_path, seed):
    cache, items = _cache(tmp_path)
    view = prebake.Crops(cache, "image", 8, seed=seed)
    assert not np.array_equal(view.boxes()["box"], prebake.Crops(cache, "image", 8, seed=seed % 2**64).boxes()["box"])
    _check(view[np.arange(len(view))], items, 8)


def test_epochs_past_64_bits_are_drawn_and_bad_epochs_refused(tmp_path):
    cache, items = _cache(tmp_path)
    view = prebake.Crops(cache, "image", 8)
    loader = prebake.Loader(view, batch_size=2)
    loader.set_epoch(2**64 + 1)
    assert sum(len(b["item"]) for b in loader) == 5
    assert not np.array_equal(view.boxes(2**64)["box"], view.boxes(0)["box"])
    for epoch in (-1, 2.0):
        with pytest.raises(ViewError, match=rf"epoch={epoch} .*epoch must be a whole number"):
            view.box(np.arange(2), epoch)
        with pytest.raises(ViewError, match=rf"epoch={epoch} .*epoch must be a whole number"):
            view.boxes(epoch)


def test_extreme_ratio_ranges_fall_back_without_garbage_casts(tmp_path):
    cache, items = _cache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast": sides past int64
        view = prebake.Crops(cache, "image", 8, ratio=(1e-300, 1e300))
        boxes = view.boxes()["box"]
    h, w = view.dims[:, 0], view.dims[:, 1]
    assert (boxes[:, 2] >= 1).all() and (boxes[:, 2] <= h).all() and (boxes[:, 3] >= 1).all() and \
        (boxes[:, 3] <= w).all()
    _check(view[np.arange(len(view))], items, 8)


def test_a_column_named_twice_is_refused_as_a_repeat(tmp_path):
    cache, _ = _cache(tmp_path)
    with pytest.raises(ViewError, match=r"Crops\(columns=\['label', 'label'\]\): 'label' is named twice"):
        prebake.Crops(cache, "image", 8, columns=["label", "label"])


def test_a_repeated_item_in_indices_gets_new_boxes(tmp_path):
    cache, items = _cache(tmp_path, sizes=((60, 80), (70, 50)))
    view = prebake.Crops(cache, "image", 8, indices=[0, 1, 0, 0])
    boxes = view.boxes()["box"]
    assert len({tuple(b) for b in boxes[view.item == 0].tolist()}) == 3  # three draws, not one box three times
    plain = prebake.Crops(cache, "image", 8, indices=[0, 1])
    assert np.array_equal(plain.boxes()["box"], boxes[:2])  # first appearances keep the boxes they had
    _check(view[np.arange(len(view))], items, 8)


def test_the_trial_of_random_dtypes_sizes_ranges_seeds_and_repeats(tmp_path):
    row = crops_attacks(tmp_path, 30, seed=3)  # benchmarks/faults.py runs more
    assert row.failures == 0, row.examples
    assert row.trials > 100


def test_images_written_as_a_list_of_one_size_are_cropped(tmp_path):
    rng = np.random.default_rng(0)
    photos = [smooth(rng, 30, 40, (3,), "uint8") for _ in range(3)]  # a list column: ragged rows of (30, 40)
    cache = prebake.write_arrays(tmp_path / "p", {"image": photos})
    view = prebake.Crops(cache, "image", 8)
    _check(view[np.arange(3)], [{"image": p} for p in photos], 8)
    mixed = prebake.write_arrays(tmp_path / "m", {"image": [photos[0], photos[1][:1]]})  # colour, then grey
    with pytest.raises(ViewError, match=r"channel count varies per item \(item 0: 3, item 1: 1; grey beside colour\)"):
        prebake.Crops(mixed, "image", 8)
