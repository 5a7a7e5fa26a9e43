"""An outsider's attacks on ``prebake.Patches``, its ``Stitcher`` and ``to_patches``: what a new user passes.

Each case is a correct result (checked against a numpy crop) or a PrebakeError naming the parameter, the
value and the fix; never numpy's or torch's own exception, a silent wrong value or an item seen twice.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import prebake
from benchmarks.trials.patches import Volumes, crop
from benchmarks.trials.patches_attacks import patches_attacks
from prebake.errors import BadItemError, OptionError, ViewError
from prebake.load.patches import stitch
from prebake.steps import FgBgIndices


def _cache(tmp_path, shapes, dtype="int16", tag="c", lead=(1,)):
    rng = np.random.default_rng(len(shapes))
    items = []
    for k, dims in enumerate(shapes):
        lab = np.zeros((1, *dims), np.uint8)
        lab.reshape(-1)[::3] = 1
        items.append({"image": (rng.random((*lead, *dims)) * 60000).astype(dtype), "label_map": lab, "label": k})
    cache = prebake.build(Volumes(items, tag), tmp_path / tag, steps=[FgBgIndices("label_map")], workers=0,
                          progress=False)
    return cache, items


def _same_as_numpy(batch, items, size, fill=0):
    return all(np.array_equal(np.asarray(batch["image"][j]), crop(items[int(batch["item"][j])]["image"],
                                                                  np.asarray(batch["start"][j]), size, fill))
               for j in range(len(batch["item"])))


@pytest.mark.parametrize("seed", [2**64, 2**64 + 5, 2**70])
def test_a_seed_past_64_bits_draws_boxes_of_its_own(tmp_path, seed):
    cache, items = _cache(tmp_path, [(6, 7, 8), (9, 5, 7)])
    view = prebake.Patches(cache, "image", (3, 3, 3), 8, seed=seed)
    low = prebake.Patches(cache, "image", (3, 3, 3), 8, seed=seed % 2**64)
    assert not np.array_equal(view.boxes()["start"], low.boxes()["start"])  # not folded onto a small seed
    assert _same_as_numpy(view[np.arange(len(view))], items, view.size)


def test_epochs_past_64_bits_are_drawn_and_a_loader_reads_them(tmp_path):
    cache, items = _cache(tmp_path, [(6, 7, 8), (9, 5, 7)])
    view = prebake.Patches(cache, "image", (3, 3, 3), 4)
    assert not np.array_equal(view.boxes(2**64)["start"], view.boxes(0)["start"])
    view.set_epoch(2**64 + 1)
    assert _same_as_numpy(view[np.arange(len(view))], items, view.size)
    loader = prebake.Loader(view, batch_size=3)
    loader.set_epoch(2**65)
    assert sum(len(b["item"]) for b in loader) == len(view)


@pytest.mark.parametrize("call", ["starts", "boxes", "stats"])
def test_a_negative_or_fractional_epoch_asked_of_the_boxes_is_refused(tmp_path, call):
    cache, _ = _cache(tmp_path, [(6, 7, 8)])
    view = prebake.Patches(cache, "image", (3, 3, 3), 2)
    for epoch in (-1, 1.5):
        with pytest.raises(ViewError, match=rf"epoch={epoch} .*epoch must be a whole number"):
            view.starts(np.arange(2), epoch) if call == "starts" else getattr(view, call)(epoch)


def test_a_patch_too_large_to_allocate_is_refused_when_the_view_is_made(tmp_path):
    cache, _ = _cache(tmp_path, [(6, 7, 8)])
    with pytest.raises(ViewError, match=r"size=\[10000, 10000, 10000\]\): a patch of 1,000,000,000,000 elements .*"
                                        r"at most 2,147,483,648.*smaller size"):
        prebake.Patches(cache, "image", (10_000, 10_000, 10_000))


def test_a_patch_count_too_large_to_index_is_refused(tmp_path):
    cache, _ = _cache(tmp_path, [(6, 7, 8), (9, 5, 7)])
    with pytest.raises(ViewError, match=r"per_item=2000000000\): 2 items x 2000000000 draws are 4,000,000,000 "
                                        r"patches an epoch.*at most 2,147,483,648"):
        prebake.Patches(cache, "image", (3, 3, 3), 2_000_000_000)


def test_a_column_named_twice_is_refused_as_a_repeat(tmp_path):
    cache, _ = _cache(tmp_path, [(6, 7, 8)])
    with pytest.raises(ViewError, match=r"Patches\(columns=\['image', 'image'\]\): 'image' is named twice"):
        prebake.Patches(cache, "image", (3, 3, 3), columns=["image", "image"])


def test_huge_class_weights_keep_their_proportions(tmp_path):
    cache, items = _cache(tmp_path, [(6, 7, 8), (9, 5, 7)])
    kw = dict(sampler="balanced", label="label_map")
    huge = prebake.Patches(cache, "image", (3, 3, 3), 200, weights={0: 1e308, 1: 1e308}, **kw)
    small = prebake.Patches(cache, "image", (3, 3, 3), 200, weights={0: 1.0, 1: 1.0}, **kw)
    assert np.array_equal(huge.boxes()["start"], small.boxes()["start"])
    only = prebake.Patches(cache, "image", (1, 1, 1), 200, weights={0: 1e-320, 1: 1e308}, **kw)
    batch = only[np.arange(len(only))]
    assert (batch["label_map"] == 1).all()  # every 1-voxel patch on class 1: the weight of class 0 is nothing


def test_a_repeated_item_in_indices_draws_new_boxes_and_each_patch_once(tmp_path):
    cache, items = _cache(tmp_path, [(9, 9, 9), (9, 8, 7)])
    view = prebake.Patches(cache, "image", (2, 2, 2), 3, indices=[0, 1, 0])
    pairs = list(zip(view.item.tolist(), view.draw.tolist()))
    assert len(set(pairs)) == len(pairs) == 9 and sorted(view.draw[view.item == 0].tolist()) == [0, 1, 2, 3, 4, 5]
    starts = view.boxes()["start"][view.item == 0]
    assert len({tuple(s) for s in starts.tolist()}) > 3  # the repeat oversamples: new boxes, not the same three
    plain = prebake.Patches(cache, "image", (2, 2, 2), 3, indices=[0, 1])  # without repeats: the boxes as before
    assert np.array_equal(plain.boxes()["start"], view.boxes()["start"][:6])
    seen = [(int(i), int(d)) for r in range(2)
            for b in prebake.Loader(view, batch_size=2, rank=r, world_size=2) for i, d in zip(b["item"], b["draw"])]
    assert sorted(seen) == sorted(pairs)


def test_a_grid_over_a_repeated_item_is_refused(tmp_path):
    cache, _ = _cache(tmp_path, [(9, 9, 9), (9, 8, 7)])
    with pytest.raises(ViewError, match=r"sampler='grid'.*indices= holds item 0 2 times.*np.unique\(indices\)"):
        prebake.Patches(cache, "image", (4, 4, 4), sampler="grid", indices=[0, 1, 0])


@pytest.mark.parametrize("where", ["host", "ram", "device"])
def test_uint16_volumes_are_padded_on_every_path(tmp_path, where):
    cache, items = _cache(tmp_path, [(3, 4, 5), (1, 6, 2)], dtype="uint16")
    view = prebake.Patches(cache, "image", (4, 4, 4), 3, pad_value={"image": 65535})
    kw = {"host": {}, "ram": {"preload": "ram"}, "device": {"preload": "device", "device": "cpu"}}[where]
    got = list(prebake.Loader(view, batch_size=4, **kw))
    assert all(_same_as_numpy(b, items, view.size, 65535) for b in got) and sum(len(b["item"]) for b in got) == 6


# -- Stitcher ------------------------------------------------------------------------------------


def _grid(tmp_path, overlap=0.5):
    cache, items = _cache(tmp_path, [(5, 6, 7), (3, 4, 2)])
    grid = prebake.Patches(cache, "image", (4, 4, 4), sampler="grid", overlap=overlap)
    return grid, grid[np.arange(len(grid))], items


def test_float16_predictions_are_summed_in_float32(tmp_path):
    grid, b, _ = _grid(tmp_path)
    s = grid.stitcher()
    done = s.add(torch.full(b["image"].shape, 60000.0, dtype=torch.float16), b["item"], b["start"])
    for i in done:
        got = s.pop(i)
        assert got.dtype == torch.float16 and torch.equal(got, torch.full_like(got, 60000.0))


def test_starts_of_the_wrong_shape_or_kind_are_refused(tmp_path):
    grid, b, _ = _grid(tmp_path)
    pred = torch.zeros(b["image"].shape)
    with pytest.raises(ViewError, match=r"Stitcher.add\(start of shape \(\d+, 2\)\): expected \(\d+, 3\)"):
        grid.stitcher().add(pred, b["item"], b["start"][:, :2])
    with pytest.raises(ViewError, match=r"Stitcher.add\(start of shape \(\d+, 3\)\): expected \(\d+, 3\)"):
        grid.stitcher().add(pred, b["item"], b["start"][:-1])
    with pytest.raises(ViewError, match=r"Stitcher.add\(item=.*float64.*whole numbers"):
        grid.stitcher().add(pred[:1], np.array([0.7]), b["start"][:1])
    with pytest.raises(ViewError, match=r"Stitcher.add\(start=.*float64.*whole numbers"):
        grid.stitcher().add(pred[:1], b["item"][:1], b["start"][:1] + 0.5)


def test_predictions_of_another_channel_count_are_refused(tmp_path):
    grid, b, _ = _grid(tmp_path)
    s = grid.stitcher()
    s.add(torch.zeros(2, 2, 4, 4, 4), b["item"][:2], b["start"][:2])
    with pytest.raises(ViewError, match=r"Stitcher.add: pred has 3 channels, item 0's volume 2"):
        s.add(torch.zeros(2, 3, 4, 4, 4), b["item"][2:4], b["start"][2:4])
    with pytest.raises(ViewError, match=r"Stitcher.add: pred has 3 channels, item 0's volume 2"):
        grid.stitcher(channels=2).add(torch.zeros(2, 3, 4, 4, 4), b["item"][:2], b["start"][:2])


def test_a_tile_added_twice_or_outside_its_volume_is_refused(tmp_path):
    grid, b, _ = _grid(tmp_path)
    s = grid.stitcher()
    s.add(torch.zeros(b["image"].shape), b["item"], b["start"])
    with pytest.raises(ViewError, match=r"Stitcher.add: the tile of item 0 at start \[0, 0, 0\] was added before"):
        s.add(torch.zeros(1, 1, 4, 4, 4), b["item"][:1], b["start"][:1])
    with pytest.raises(ViewError, match=r"Stitcher.add: the tile of item 0 at start \[100, 0, 0\] lies wholly "
                                        r"outside its volume \[5, 6, 7\]"):
        grid.stitcher().add(torch.zeros(1, 1, 4, 4, 4), b["item"][:1], np.array([[100, 0, 0]]))


def test_popping_an_item_before_all_its_tiles_arrived_is_refused(tmp_path):
    grid, b, items = _grid(tmp_path)
    s = grid.stitcher()
    s.add(torch.as_tensor(b["image"][:2]).float(), b["item"][:2], b["start"][:2])
    n = int((grid.item == 0).sum())
    with pytest.raises(ViewError, match=rf"Stitcher.pop\(0\): 2 of item 0's {n} tiles have arrived"):
        s.pop(0)
    s.add(torch.as_tensor(b["image"][2:]).float(), b["item"][2:], b["start"][2:])
    assert torch.equal(s.pop(0), torch.as_tensor(items[0]["image"]).float())


def test_stitch_refuses_voxels_no_tile_covers_and_bad_dims():
    with pytest.raises(ViewError, match=r"stitch: 88 voxels of the volume \[5, 6, 7\] are covered by no tile"):
        stitch(torch.ones(2, 1, 4, 4, 4), np.array([[0, 0, 0], [1, 2, 3]]), (5, 6, 7))
    with pytest.raises(ViewError, match=r"stitch\(dims=\(5, 6, -1\)\): dims must be whole numbers >= 1"):
        stitch(torch.zeros(2, 1, 4, 4, 4), np.zeros((2, 3), np.int64), (5, 6, -1))
    with pytest.raises(ViewError, match=r"stitch: no tile \(pred of shape \(0, 1, 4, 4, 4\)\)"):
        stitch(torch.zeros(0, 1, 4, 4, 4), np.zeros((0, 3), np.int64), (5, 6, 7))


# -- to_patches ----------------------------------------------------------------------------------


def test_to_patches_takes_a_lone_transform_and_names_the_right_fix(tmp_path):
    mt = pytest.importorskip("monai.transforms")
    from prebake.integrations.monai import to_patches
    cache, _ = _cache(tmp_path, [(6, 7, 8)])
    crop_t = mt.RandCropByPosNegLabeld(keys=["image", "label_map"], label_key="label_map", spatial_size=(2, 2, 2),
                                       pos=1, neg=1, num_samples=3)
    view, rest = to_patches(crop_t, cache)
    assert view.sampler == "balanced" and view.per_item == 3 and rest == []
    fixed = mt.RandSpatialCropSamplesd(keys=["image"], roi_size=(2, 2, 2), num_samples=2, random_size=False,
                                       random_center=False)
    with pytest.raises(OptionError, match=r"random_center=False\): .*give random_size=False, random_center=True"):
        to_patches([fixed], cache)


def test_the_trial_of_random_dtypes_extents_seeds_epochs_and_repeats(tmp_path):
    row = patches_attacks(tmp_path, 12, seed=3)  # benchmarks/faults.py runs more
    assert row.failures == 0, row.examples
    assert row.trials > 100


def test_a_stitcher_of_bad_channels_or_device_is_refused_when_made(tmp_path):
    grid, _, _ = _grid(tmp_path)
    for channels in (0, -1, 2.5, True, "2"):
        with pytest.raises(ViewError, match=r"channels=.* channels must be a whole number \(int\) >= 1|channels=.* is "
                                            r"below 1"):
            grid.stitcher(channels=channels)
    with pytest.raises(OptionError, match=r"device='nope' is not a device"):
        grid.stitcher(device="nope")


def test_fgbgindices_called_on_an_item_without_its_label_names_the_column():
    with pytest.raises(BadItemError, match=r"FgBgIndices\(label='label_map'\): the item has no 'label_map' column "
                                           r"\(it has \['image'\]\); pass the label-map column's name"):
        FgBgIndices("label_map")({"image": np.zeros((1, 2, 2, 2), np.int16)})


def test_a_view_at_a_negative_epoch_is_refused(tmp_path):
    cache, _ = _cache(tmp_path, [(6, 7, 8)])
    photos = prebake.build(Volumes([{"image": np.zeros((3, h, 6), np.uint8)} for h in (5, 9)], "p"), tmp_path / "p",
                           workers=0, progress=False)
    for view in (prebake.Patches(cache, "image", (3, 3, 3), 2), prebake.Crops(photos, "image", 4)):
        with pytest.raises(ViewError, match=r"epoch=-1 is below 0; epoch must be a whole number >= 0"):
            view.at_epoch(-1)[0]


def test_volumes_written_as_a_list_are_told_the_size_that_cuts_them(tmp_path):
    rng = np.random.default_rng(0)
    vols = [rng.integers(0, 99, (1, 4, 5, 6)).astype(np.int16) for _ in range(3)]  # a list: rows of (4, 5, 6)
    cache = prebake.write_arrays(tmp_path / "w", {"image": vols})
    with pytest.raises(ViewError, match=r"'image' has shape \[None, 4, 5, 6\]: a ragged column of rows, whose axis 0 "
                                        r"\(its row count\) may differ per item.*e.g. size=\(1, 2, 2, 2\)"):
        prebake.Patches(cache, "image", (2, 2, 2))
    view = prebake.Patches(cache, "image", (1, 2, 2, 2), 2)  # the size the message gives
    assert _same_as_numpy(view[np.arange(len(view))], [{"image": v} for v in vols], view.size)


@pytest.mark.parametrize("how", ["drop_last", "rank 0 of 2"])
def test_a_partial_pass_leaves_its_items_pending_and_says_which(tmp_path, how):
    """A grid read with drop_last or on one DDP rank hands the Stitcher part of the tiles: pending() names the
    items add() never returned, with their counts (nothing said so before)."""
    from benchmarks.trials.patches import bake, volumes

    items = volumes(np.random.default_rng(7), 5, 3, (1,), "int16", small=4, large=9)
    view = prebake.Patches(bake(tmp_path / "c", items, "pending"), "image", (4, 4, 4), sampler="grid")
    kw = {"drop_last": True} if how == "drop_last" else {"rank": 0, "world_size": 2}
    stitcher, done = view.stitcher(), set()
    for b in prebake.Loader(view, 3, shuffle=False, **kw):
        done |= set(stitcher.add(b["image"].float(), b["item"], b["start"]))
    tiles = np.bincount(view.item, minlength=len(items))
    pending = stitcher.pending()
    assert pending and set(pending).isdisjoint(done)
    for i, (arrived, expected) in pending.items():
        assert 0 < arrived < expected == tiles[i]
    with pytest.raises(ViewError, match="tiles have arrived"):
        stitcher.pop(next(iter(pending)))
    full = view.stitcher()
    for b in prebake.Loader(view, 3, shuffle=False):
        full.add(b["image"].float(), b["item"], b["start"])
    assert full.pending() == {}


def test_a_class_no_integer_label_map_holds_is_refused():
    with pytest.raises(OptionError, match=r"FgBgIndices\(classes=.*2\*\*64 - 1"):  # before: accepted, empty runs
        FgBgIndices("label_map", classes=(0, 2**70))
    step = FgBgIndices("label_map", classes=(0, 2**64 - 1))  # the largest a uint64 label map holds
    label = np.array([[0, 2**64 - 1]], np.uint64)
    assert step({"label_map": label})[f"label_map_runs_{2**64 - 1}"].tolist() == [[1, 1]]
