"""prebake.Patches: patches of volumes of different shapes, against numpy crops, under the Loader's guarantees.

Every patch is compared with a numpy crop of its item (padded with the pad value outside the
volume); the balanced sampler's boxes are checked against the baked class voxels; epochs,
resume, DDP ranks and subsets run as tests/load/test_epochs.py runs them over the other views.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import prebake
from benchmarks.trials.patches import Volumes, bake, crop, volumes
from prebake.augment import GaussianNoise3d, IntensityWindow, RandomFlip3d, RandomIntensity, RandomRotate90
from prebake.errors import ResumeError
from prebake.load.patches import stitch
from prebake.steps import FgBgIndices
from prebake.steps.indices import class_runs

SIZE = (6, 5, 7)


@pytest.fixture(scope="module")
def items():
    return volumes(np.random.default_rng(4), 9, 3, (1,), "int16", small=3, large=13)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, items):
    return bake(tmp_path_factory.mktemp("patches") / "c", items, "patches-test")


def _view(cache, sampler="uniform", **kw):
    if sampler == "balanced":
        kw.setdefault("label", "label_map")
    return prebake.Patches(cache, "image", SIZE, sampler=sampler, pad_value={"image": -1024}, **kw)


def _check(batch, items, fill=-1024):
    for j, i in enumerate(batch["item"].tolist()):
        start = np.asarray(batch["start"][j])
        assert np.array_equal(np.asarray(batch["image"][j]), crop(items[i]["image"], start, SIZE, fill)), (i, start)
        assert np.array_equal(np.asarray(batch["label_map"][j]), crop(items[i]["label_map"], start, SIZE, 0))
        assert np.array_equal(np.asarray(batch["weight"][j]), crop(items[i]["weight"], start, SIZE, 0))
        assert int(batch["label"][j]) == items[i]["label"]


@pytest.mark.parametrize("sampler", ["uniform", "balanced", "grid"])
@pytest.mark.parametrize("preload", [None, "ram", "device"])
def test_every_patch_is_the_numpy_crop_of_its_item(cache, items, sampler, preload):
    view = _view(cache, sampler)
    batches = list(prebake.Loader(view, 5, seed=3, preload=preload))
    for b in batches:
        assert b["image"].shape[1:] == (1, *SIZE) and b["image"].dtype == torch.int16
        _check(b, items)
    assert sum(len(b["item"]) for b in batches) == len(view)


def test_small_volumes_are_padded_and_marked_never_wrapped(cache, items):
    view = _view(cache, "uniform", per_item=8)
    batch = view[np.arange(len(view))]
    dims = np.array([items[i]["weight"].shape for i in batch["item"]])
    outside = (batch["start"] < 0) | (batch["start"] + np.array(SIZE) > dims)
    assert np.array_equal(batch["padded"], outside.any(axis=1)) and batch["padded"].any() and not batch["padded"].all()
    assert not (outside & (dims >= np.array(SIZE))).any()  # an axis that holds the patch is never left
    _check(batch, items)
    assert (batch["image"][batch["padded"]] == -1024).any()


def test_slices_of_one_size_fixed_columns_and_other_shapes(tmp_path):
    rng = np.random.default_rng(0)
    vols = [{"image": rng.integers(0, 9, (4 + i, 5, 6)).astype(np.int16),
             "other": np.zeros((2 + i, 3, 3), np.uint8), "label": i} for i in range(3)]
    cache = prebake.build(vols, tmp_path / "c", workers=0, progress=False)
    assert not cache.specs["image"].shaped  # only the slice count varies: a ragged column of rows, cut alike
    view = prebake.Patches(cache, "image", (5, 4, 4), pad_value=-1)
    assert view.columns == ["label", "image"]  # 'other' has other extents: a box does not cut it
    batch = view[np.arange(len(view))]
    for j, i in enumerate(batch["item"].tolist()):
        assert np.array_equal(batch["image"][j], crop(vols[i]["image"], batch["start"][j], (5, 4, 4), -1))
        assert batch["label"][j] == i
    with pytest.raises(prebake.ViewError, match="'other'.*item 0 is \\[2, 3, 3\\] where 'image' is \\[4, 5, 6\\]"):
        prebake.Patches(cache, "image", (2, 2, 2), columns=["image", "other"])


def test_balanced_boxes_are_centred_on_voxels_of_the_drawn_class(tmp_path):
    """Volumes wide enough that no box is shifted: the box's centre is the voxel drawn, exactly."""
    dims, fg = (30, 30, 30), [(10, 11, 12), (20, 18, 15), (14, 14, 14)]
    label = np.zeros((1, *dims), np.uint8)
    for z, y, x in fg:
        label[0, z, y, x] = 1
    label[0, 5, 5, 5] = 2
    items = [{"image": np.zeros((1, *dims), np.int16), "label_map": label}] * 2
    cache = prebake.build(items, tmp_path / "c", steps=[FgBgIndices("label_map", (0, 1, 2))], workers=0,
                          progress=False)
    size = np.array((4, 4, 4))
    view = prebake.Patches(cache, "image", tuple(size), 600, sampler="balanced", label="label_map", pos_fraction=1.0)
    centres = view.boxes(0)["start"] + size // 2
    got = [tuple(c) for c in centres.tolist()]
    share = {v: got.count(v) / len(got) for v in set(got)}
    assert set(share) <= {*fg, (5, 5, 5)} and len(share) == 4
    assert abs(share[(5, 5, 5)] - 0.25) < 0.06  # uniform over the 4 foreground voxels of classes 1 and 2
    view = prebake.Patches(cache, "image", tuple(size), 100, sampler="balanced", label="label_map", weights={2: 1})
    assert {tuple(c) for c in (view.boxes(3)["start"] + size // 2).tolist()} == {(5, 5, 5)}
    view = prebake.Patches(cache, "image", tuple(size), 200, sampler="balanced", label="label_map", pos_fraction=0.0)
    centres = view.boxes(0)["start"] + size // 2
    assert not {tuple(c) for c in centres.tolist()} & {*fg, (5, 5, 5)} and len({tuple(c) for c in centres}) > 150


def test_pos_fraction_is_the_share_of_foreground_patches(tmp_path):
    """One foreground voxel in a large volume: a uniform box rarely holds it, a positive one always does."""
    label = np.zeros((1, 40, 40, 40), np.uint8)
    label[0, 20, 20, 20] = 1
    cache = prebake.build([{"image": np.zeros_like(label, np.int16), "label_map": label}] * 4, tmp_path / "c",
                          steps=[FgBgIndices("label_map")], workers=0, progress=False)
    view = prebake.Patches(cache, "image", (3, 3, 3), 500, sampler="balanced", label="label_map", pos_fraction=0.3)
    fg = view[np.arange(len(view))]["label_map"].reshape(len(view), -1).max(axis=1)
    assert 0.26 < fg.mean() < 0.34  # 2,000 patches: 0.3 within 4 standard deviations
    assert view.stats(0)["fallback"] == 0


def test_an_item_without_the_class_falls_back_to_uniform_boxes_counted(cache, items, caplog):
    lacking = [i for i, it in enumerate(items) if not (it["label_map"] == 2).any()]
    assert lacking
    with caplog.at_level("WARNING", logger="prebake"):
        view = _view(cache, "balanced", weights={2: 1.0}, per_item=3)
    assert f"{len(lacking)} of {len(items)} items have no voxel of class 2" in caplog.text
    stats = view.stats(0)
    assert stats["fallback"] == 3 * len(lacking) and stats["fallback_items"] == lacking
    _check(view[np.arange(len(view))], items)


def test_fgbg_indices_are_the_voxels_of_each_class(cache, items):
    for i, it in enumerate(items):
        flat = it["label_map"].reshape(-1)
        for c in (0, 1, 2):
            runs = cache[i][f"label_map_runs_{c}"]
            got = np.concatenate([np.arange(s, s + n) for s, n in runs]) if len(runs) else np.zeros(0, int)
            assert np.array_equal(got, np.flatnonzero(flat == c))
    assert class_runs(np.array([1, 1, 0, 1]), 1).tolist() == [[0, 2], [3, 1]]


def test_fgbg_indices_enter_the_fingerprint(tmp_path, items):
    first = bake(tmp_path / "c", items[:2], "fp")
    again = prebake.build(Volumes(items[:2], "fp"), tmp_path / "c", steps=[FgBgIndices("label_map", (0, 1))],
                          workers=0, progress=False)
    assert "label_map_runs_2" in first.columns and "label_map_runs_2" not in again.columns


@pytest.mark.parametrize("sampler", ["uniform", "balanced", "grid"])
def test_epochs_reproduce_and_differ(cache, sampler):
    view = _view(cache, sampler)
    a = [b["start"] for b in prebake.Loader(view, 4, seed=1)]
    b = [b["start"] for b in prebake.Loader(_view(prebake.open(cache.path), sampler), 4, seed=1)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    if sampler != "grid":
        assert not np.array_equal(view.boxes(0)["start"], view.boxes(1)["start"])
        assert not np.array_equal(view.boxes(0)["start"], _view(cache, sampler, seed=9).boxes(0)["start"])


@pytest.mark.parametrize("sampler", ["uniform", "balanced"])
def test_resume_mid_epoch_reads_the_rest_of_the_same_patches(cache, sampler):
    view = _view(cache, sampler)
    loader = prebake.Loader(view, 4, seed=2)
    loader.set_epoch(3)
    whole = list(loader)
    for k in range(len(whole)):
        loader.set_epoch(3)
        it = iter(loader)
        for _ in range(k):
            next(it)
        state = loader.state_dict()
        resumed = prebake.Loader(_view(prebake.open(cache.path), sampler), 4, seed=2)
        resumed.load_state_dict(state)
        rest = list(resumed)
        assert len(rest) == len(whole) - k
        assert all(torch.equal(x["image"], y["image"]) and torch.equal(x["start"], y["start"])
                   for x, y in zip(rest, whole[k:]))
    with pytest.raises(ResumeError, match="saved over"):
        prebake.Loader(_view(cache, sampler, seed=5), 4, seed=2).load_state_dict(state)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("sampler", ["uniform", "grid"])
def test_ranks_read_each_item_and_draw_once_per_epoch(cache, world, sampler):
    view = _view(cache, sampler, indices=np.array([0, 2, 3, 5, 8]))
    single = {(i, d): s for b in prebake.Loader(view, 3, seed=4) for i, d, s in
              zip(b["item"].tolist(), b["draw"].tolist(), b["start"].tolist())}
    for epoch in range(2):
        seen = []
        for rank in range(world):
            loader = prebake.Loader(view, 3, seed=4, rank=rank, world_size=world)
            loader.set_epoch(epoch)
            for b in loader:
                seen += [((i, d), s) for i, d, s in zip(b["item"].tolist(), b["draw"].tolist(), b["start"].tolist())]
        keys = [k for k, _ in seen]
        assert sorted(keys) == sorted(zip(view.item.tolist(), view.draw.tolist())) and len(set(keys)) == len(keys)
        assert {i for i, _ in keys} == {0, 2, 3, 5, 8}
        if epoch == 0:  # the box of an (item, draw) does not depend on the rank that reads it
            assert dict(seen) == single


def test_grid_tiles_cover_every_voxel_and_stitch_back(cache, items):
    view = _view(cache, "grid", overlap=0.5)
    stitcher, done = view.stitcher(), {}
    for b in prebake.Loader(view, 4, shuffle=False):
        for i in stitcher.add(b["image"].float(), b["item"], b["start"]):
            done[i] = stitcher.pop(i)
    assert sorted(done) == list(range(len(items)))
    for i, vol in done.items():
        assert torch.equal(vol, torch.from_numpy(items[i]["image"]).float())


def test_stitch_is_the_mean_over_overlapping_tiles():
    starts = np.array([[0, 0], [0, 2], [-1, 3]])
    pred = torch.tensor([1.0, 2.0, 6.0]).view(3, 1, 1, 1).expand(3, 1, 3, 3)
    got = stitch(pred, starts, (2, 6))[0]
    want = np.zeros((2, 6))
    count = np.zeros((2, 6))
    for (z, y), v in zip(starts.tolist(), [1.0, 2.0, 6.0]):
        zs, ys = slice(max(z, 0), z + 3), slice(max(y, 0), y + 3)
        want[zs, ys] += v
        count[zs, ys] += 1
    assert np.allclose(got.numpy(), want / count)


def test_one_gather_per_column_from_the_boxes(cache):
    view = _view(cache, "uniform")
    plan = view.plan(np.arange(12))
    assert [t.column for t in plan.takes] == view.columns
    boxed = [t for t in plan.takes if t.boxes is not None]
    assert [t.column for t in boxed] == ["image", "label_map", "weight"]
    assert all(t.boxes.start.shape == (12, 3) and t.boxes.offset.shape == (12,) for t in boxed)  # a few ints a sample


def test_convert_windows_the_gathered_patches_and_the_pad(cache, items):
    window = IntensityWindow(-1000, 1000)
    view = _view(cache, "uniform", per_item=6)
    plain = list(prebake.Loader(view, 8, seed=1))
    converted = list(prebake.Loader(view, 8, seed=1, convert={"image": window}))
    for a, b in zip(plain, converted):
        assert b["image"].dtype == torch.float32
        assert torch.allclose(b["image"], window(a["image"].float()), atol=1e-6)
        assert torch.equal(b["label_map"], a["label_map"])


def test_3d_augment_ops_run_on_patch_batches(cache):
    view = prebake.Patches(cache, "image", (4, 6, 6), sampler="balanced", label="label_map")
    batch = next(iter(prebake.Loader(view, 6, seed=1)))
    image, label = batch["image"], batch["label_map"]
    g = torch.Generator().manual_seed(0)
    for op in (RandomFlip3d(p=1.0), RandomRotate90(p=1.0, axes=(1, 2))):
        out, params = op(image, generator=g, return_params=True)
        assert out.shape == image.shape and out.dtype == torch.int16
        assert torch.equal(op(image, params=params), out)  # the same boxes, the same transform for the label
        lab = op(label, params=params)
        assert torch.equal((lab > 0).sum(dim=(1, 2, 3, 4)), (label > 0).sum(dim=(1, 2, 3, 4)))
    flipped = RandomFlip3d(p=1.0, axes=(2,))(image, generator=g)
    assert torch.equal(flipped, torch.flip(image, dims=[4]))
    x = IntensityWindow(-1000, 1000)(image)
    for op in (RandomIntensity(p=1.0), GaussianNoise3d(p=1.0)):
        y = op(x, generator=g)
        assert y.shape == x.shape and y.dtype == torch.float32 and not torch.equal(y, x)
