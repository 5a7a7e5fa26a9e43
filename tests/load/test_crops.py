"""prebake.Crops: crops of images of many sizes, against a per-sample reference, under the Loader's guarantees.

Every crop is compared with the numpy crop of its box resized by torch's ``interpolate(bilinear,
antialias=True)`` (tolerances in benchmarks/trials/crops.py); the training boxes with torchvision's
``get_params`` loop fed the same random numbers; epochs, resume and DDP ranks as tests/load/test_patches.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import prebake
from benchmarks.trials.crops import bake, get_params, images, reference, within
from prebake.errors import ResumeError
from prebake.load.crop_resize import CropBatch

SIZE = 37  # odd, and between the images' sizes: some boxes are upscaled, some shrunk by factors 1 to 3


@pytest.fixture(scope="module", params=[(3,), ()], ids=["rgb", "grey"])
def items(request):
    return images(np.random.default_rng(5), 9, request.param, "uint8", small=12, large=130)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, items):
    return bake(tmp_path_factory.mktemp("crops") / "c", items, f"crops-test-{items[0]['image'].ndim}")


def _check(batch, items, size=SIZE):
    for j, i in enumerate(batch["item"].tolist()):
        box = batch["box"][j].tolist()
        got = np.asarray(batch["image"][j])
        assert got.shape == (*items[i]["image"].shape[:-2], size, size) and got.dtype == np.uint8
        assert not within(got, reference(items[i]["image"], box, size), box, size), (i, box)
        assert int(batch["label"][j]) == items[i]["label"]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("preload", [None, "ram", "device"])
def test_every_crop_is_the_reference_within_tolerance(cache, items, train, preload):
    view = prebake.Crops(cache, "image", size=SIZE, train=train)
    batches = list(prebake.Loader(view, 4, seed=3, preload=preload))
    for b in batches:
        assert b["image"].dtype == torch.uint8
        _check(b, items)
    assert sorted(i for b in batches for i in b["item"].tolist()) == list(range(len(items)))


def test_upscaled_boxes_are_interpolates_own_pixels(cache, items):
    """Every box no larger than the output: the same sample points as interpolate, off by rounding only."""
    view = prebake.Crops(cache, "image", size=131, scale=(0.1, 1.0))
    batch = view[np.arange(len(view))]
    for j, i in enumerate(batch["item"].tolist()):
        want = reference(items[i]["image"], batch["box"][j], 131)
        assert np.abs(batch["image"][j].astype(np.float64) - want).max() <= 0.5 + 1e-3


def test_float_images_stay_float_and_match(tmp_path):
    items = images(np.random.default_rng(6), 4, (3,), "float32", small=5, large=20)
    cache = bake(tmp_path / "f", items, "float")
    batch = prebake.Crops(cache, "image", size=23)[np.arange(4)]
    assert batch["image"].dtype == np.float32
    for j in range(4):
        want = reference(items[j]["image"], batch["box"][j], 23)
        assert np.abs(batch["image"][j] - want).max() < 1e-3


def test_train_boxes_are_torchvisions_get_params():
    """The vectorised draw against torchvision's loop as written there, on the same random numbers,
    over images as thin as 1 x 60 (the ratio fallback) and ranges as narrow as one value."""
    from prebake.load.crop_boxes import train_boxes
    rng = np.random.default_rng(0)
    dims = np.concatenate([rng.integers(1, 300, (300, 2)), [[1, 60], [60, 1], [1, 1], [2, 900]]])
    for scale, ratio in [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.9, 1.0), (2.0, 5.0)), ((0.5, 0.5), (1.0, 1.0))]:
        got = train_boxes(dims, scale, ratio, 7, 2, np.arange(len(dims)))
        want = [get_params(int(h), int(w), scale, ratio, 7, 2, i) for i, (h, w) in enumerate(dims)]
        assert got.tolist() == [list(b) for b in want]
        assert (got[:, 2:] >= 1).all() and (got[:, :2] + got[:, 2:] <= dims).all() and (got[:, :2] >= 0).all()


def test_eval_is_resize_of_the_shorter_side_then_centre_crop(tmp_path):
    """The eval box is what Resize(round(size / 0.875)) + CenterCrop(size) keeps: the same pixels within the
    downscale tolerance, compared with that pipeline run on the whole image."""
    items = images(np.random.default_rng(8), 3, (3,), "uint8", small=40, large=90)  # waves well above 2 px out
    cache = bake(tmp_path / "e", items, "eval")
    batch = prebake.Crops(cache, "image", size=32, train=False)[np.arange(3)]
    for j, item in enumerate(items):
        img = torch.from_numpy(item["image"]).float()[None]
        h, w = img.shape[-2:]
        short = round(32 / 0.875)
        rh, rw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        whole = F.interpolate(img, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = int(round((rh - 32) / 2.0)), int(round((rw - 32) / 2.0))
        want = whole[:, top:top + 32, left:left + 32].numpy()
        side = round(min(h, w) * 32 / short)
        assert batch["box"][j].tolist() == [(h - side) // 2, (w - side) // 2, side, side]
        assert np.abs(batch["image"][j].astype(np.float64) - want).mean() < 3.0


def test_epochs_reproduce_and_differ(cache):
    view = prebake.Crops(cache, "image", size=SIZE)
    a = [b["box"] for b in prebake.Loader(view, 4, seed=1)]
    b = [b["box"] for b in prebake.Loader(prebake.Crops(prebake.open(cache.path), "image", size=SIZE), 4, seed=1)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(view.boxes(0)["box"], view.boxes(1)["box"])
    assert not np.array_equal(view.boxes(0)["box"], prebake.Crops(cache, "image", size=SIZE, seed=9).boxes(0)["box"])
    still = prebake.Crops(cache, "image", size=SIZE, train=False)
    assert np.array_equal(still.boxes(0)["box"], still.boxes(5)["box"])


def test_resume_mid_epoch_reads_the_rest_of_the_same_crops(cache):
    loader = prebake.Loader(prebake.Crops(cache, "image", size=SIZE), 2, seed=2)
    loader.set_epoch(3)
    whole = list(loader)
    for k in range(len(whole)):
        loader.set_epoch(3)
        it = iter(loader)
        for _ in range(k):
            next(it)
        state = loader.state_dict()
        resumed = prebake.Loader(prebake.Crops(prebake.open(cache.path), "image", size=SIZE), 2, seed=2)
        resumed.load_state_dict(state)
        rest = list(resumed)
        assert len(rest) == len(whole) - k
        assert all(torch.equal(x["image"], y["image"]) and torch.equal(x["box"], y["box"])
                   for x, y in zip(rest, whole[k:]))
    with pytest.raises(ResumeError, match="saved over"):
        prebake.Loader(prebake.Crops(cache, "image", size=SIZE, seed=5), 2, seed=2).load_state_dict(state)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_read_each_item_once_per_epoch(cache, world):
    view = prebake.Crops(cache, "image", size=SIZE, indices=np.array([0, 2, 3, 5, 8]))
    single = {i: s for b in prebake.Loader(view, 2, seed=4) for i, s in zip(b["item"].tolist(), b["box"].tolist())}
    for epoch in range(2):
        seen = []
        for rank in range(world):
            loader = prebake.Loader(view, 2, seed=4, rank=rank, world_size=world)
            loader.set_epoch(epoch)
            seen += [(i, s) for b in loader for i, s in zip(b["item"].tolist(), b["box"].tolist())]
        keys = [i for i, _ in seen]
        assert sorted(keys) == [0, 2, 3, 5, 8]
        if epoch == 0:  # the box of an item does not depend on the rank that reads it
            assert dict(seen) == single


def test_one_gather_and_one_resize_per_batch_from_a_few_ints_a_sample(cache):
    view = prebake.Crops(cache, "image", size=SIZE)
    plan = view.plan(np.arange(6))
    boxed = [t for t in plan.takes if t.boxes is not None]
    assert [t.column for t in boxed] == ["image"] and isinstance(boxed[0].boxes, CropBatch)
    assert boxed[0].boxes.box.shape == (6, 4) and boxed[0].boxes.offset.shape == (6,)
    assert [t.column for t in plan.takes if t.boxes is None] == ["label"]
    assert set(plan.extra) == {"item", "box"}


def test_convert_turns_the_crops_into_floats(cache, items):
    plain = list(prebake.Loader(prebake.Crops(cache, "image", size=SIZE), 4, seed=1))
    floats = list(prebake.Loader(prebake.Crops(cache, "image", size=SIZE), 4, seed=1,
                                 convert={"image": torch.float32}))
    assert all(f["image"].dtype == torch.float32 and torch.equal(f["image"], p["image"].float())
               for f, p in zip(floats, plain))


@pytest.mark.parametrize("fy, fx", [(2, 3), (4, 1), (5, 5)])
def test_whole_factor_blocks_average_only_the_pixels_inside_each_box(fy, fx):
    """The area averaging before the resize: each block's mean over its pixels inside the box, the last,
    partial block too (pixels past the box, another image's or padding, never enter it)."""
    from prebake.load.crop_resize import _average
    rng = np.random.default_rng(fy * 10 + fx)
    hw = np.array([[4 * fy - 1, 3 * fx], [2 * fy, 3 * fx - 1], [1, 1]])  # partial last blocks, a 1 x 1 box
    got = rng.integers(0, 256, (3, 2, 4 * fy, 3 * fx), dtype=np.uint8)
    out = _average(torch.from_numpy(got), hw, fy, fx).numpy()
    assert out.shape == (3, 2, 4, 3)
    for b, (h, w) in enumerate(hw.tolist()):
        for k in range(-(-h // fy)):
            for q in range(-(-w // fx)):
                block = got[b, :, k * fy:min((k + 1) * fy, h), q * fx:min((q + 1) * fx, w)]
                assert np.allclose(out[b, :, k, q], block.reshape(2, -1).mean(1), atol=1e-4), (b, k, q)
