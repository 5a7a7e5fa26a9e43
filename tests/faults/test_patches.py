"""Issue 27, patches of volumes of different shapes: attacks on ``prebake.Patches`` and ``FgBgIndices``.

Bad input gets a ViewError naming the parameter, the value or the item, and the fix; a box at the
very start or end of a column's values is padded, never read from the neighbouring memory; an item
without the drawn class takes the documented uniform fallback, counted. The trial at the end runs
random shapes, sizes, samplers, subsets, ranks and resume points (``benchmarks/trials/patches.py``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import prebake
from benchmarks.trials.patches import Volumes, crop, patches
from prebake.errors import OptionError, ViewError
from prebake.steps import FgBgIndices


def _cache(tmp_path, shapes, classes=(0, 1), label_shapes=None, tag="c"):
    rng = np.random.default_rng(len(shapes))
    items = []
    for k, dims in enumerate(shapes):
        lab = np.zeros((1, *(label_shapes[k] if label_shapes else dims)), np.uint8)
        lab.reshape(-1)[: max(1, lab.size // 5) if k % 2 == 0 else 0] = 1
        items.append({"image": rng.integers(-99, 99, (1, *dims)).astype(np.int16), "label_map": lab, "label": k})
    steps = [FgBgIndices("label_map", classes)] if classes else []
    return prebake.build(Volumes(items, tag), tmp_path / tag, steps=steps, workers=0, progress=False), items


def test_a_patch_larger_than_every_volume_without_padding_is_refused(tmp_path):
    cache, _ = _cache(tmp_path, [(4, 5, 6), (6, 3, 7)])
    with pytest.raises(ViewError, match=r"size=\[8, 8, 8\], pad=False\): the patch is larger than every item of "
                                        r"'image' \(the largest is \[6, 5, 7\]\); pass pad=True"):
        prebake.Patches(cache, "image", (8, 8, 8), pad=False)
    with pytest.raises(ViewError, match=r"1 of 2 items of 'image' are smaller than the patch \(item 1: \[6, 3, 7\]\)"):
        prebake.Patches(cache, "image", (4, 4, 4), pad=False)
    assert len(prebake.Patches(cache, "image", (4, 4, 4), pad=False, indices=[0])) == 4


def test_a_label_column_of_another_shape_is_refused_naming_the_item(tmp_path):
    cache, _ = _cache(tmp_path, [(4, 5, 6), (6, 3, 7)], label_shapes=[(4, 5, 6), (6, 3, 6)])
    with pytest.raises(ViewError, match=r"Patches\(label='label_map'\): column 'label_map' .* item 1 is \[6, 3, 6\] "
                                        r"where 'image' is \[6, 3, 7\]"):
        prebake.Patches(cache, "image", (2, 2, 2), sampler="balanced", label="label_map")
    assert "label_map" not in prebake.Patches(cache, "image", (2, 2, 2)).columns  # left out, not cut wrongly


def test_a_class_that_was_not_baked_names_the_step_to_bake_it(tmp_path):
    cache, _ = _cache(tmp_path, [(4, 5, 6), (6, 3, 7)])
    with pytest.raises(ViewError, match=r"class 3 of 'label_map' was not baked .*FgBgIndices\(label='label_map', "
                                        r"classes=\(0, 1, 3\)\)"):
        prebake.Patches(cache, "image", (2, 2, 2), sampler="balanced", label="label_map", weights={3: 1.0})
    bare, _ = _cache(tmp_path, [(4, 5, 6)], classes=(), tag="bare")
    with pytest.raises(ViewError, match=r"no label_map_runs_<class> columns.*steps=\[\.\.\., "
                                        r"prebake.steps.FgBgIndices\(label='label_map'"):
        prebake.Patches(bare, "image", (2, 2, 2), sampler="balanced", label="label_map")
    with pytest.raises(ViewError, match="needs label="):
        prebake.Patches(cache, "image", (2, 2, 2), sampler="balanced")


def test_an_item_without_foreground_falls_back_to_a_uniform_box_counted(tmp_path):
    cache, items = _cache(tmp_path, [(9, 9, 9), (9, 8, 7), (7, 9, 8)])  # item 1 has no foreground
    view = prebake.Patches(cache, "image", (3, 3, 3), 40, sampler="balanced", label="label_map", pos_fraction=1.0)
    stats = view.stats(2)
    assert stats["fallback"] == 40 and stats["fallback_items"] == [1] and stats["patches"] == 120
    batch = view[np.arange(len(view))]
    fg = batch["label_map"].reshape(len(view), -1).max(axis=1)
    assert fg[batch["item"] != 1].all() and not fg[batch["item"] == 1].any()


def test_zero_extent_items_are_refused_naming_them(tmp_path):
    cache, _ = _cache(tmp_path, [(4, 5, 6), (0, 5, 6), (3, 2, 6)], classes=())
    with pytest.raises(ViewError, match=r"1 item\(s\) of 'image' have an axis of zero extent \(item 1: spatial "
                                        r"shape \[0, 5, 6\]\).*items \[1\]; leave them out with indices="):
        prebake.Patches(cache, "image", (2, 2, 2))
    assert set(prebake.Patches(cache, "image", (2, 2, 2), indices=[0, 2]).item.tolist()) == {0, 2}


@pytest.mark.parametrize("kw, match", [
    ({"size": 8}, r"size=8\): size is the patch's extent .* 1 to 4 whole numbers"),
    ({"size": (2, 0, 2)}, r"size=\(2, 0, 2\)"),
    ({"sampler": "random"}, r"sampler='random'\): sampler must be one of"),
    ({"sampler": "grid", "per_item": 3}, r"per_item=3, sampler='grid'\)"),
    ({"overlap": 1.0, "sampler": "grid"}, r"overlap=1.0\): overlap is the fraction"),
    ({"pad_value": -1}, r"pad_value=-1\): -1 for column 'label_map', which holds uint8"),
    ({"pad_value": {"image": 0.5}}, r"0.5 for column 'image', which holds int16"),
    ({"pos_fraction": 0.5}, r"pos_fraction=0.5\) is a parameter of sampler='balanced'"),
    ({"sampler": "balanced", "label": "label_map", "pos_fraction": 2}, r"pos_fraction=2\): pos_fraction is"),
    ({"sampler": "balanced", "label": "label_map", "weights": {1: -1}}, r"weights=\{1: -1\}\): weights must map"),
    ({"sampler": "balanced", "label": "label_map", "weights": {1: 1}, "pos_fraction": 0.5}, "give one of them"),
    ({"column": "label"}, r"column 'label' .* which hold no box; Patches cuts arrays of numbers"),
    ({"column": "label_map_runs_1", "size": (2,)}, r"column 'label_map_runs_1'"),
    ({"columns": ["image", "label_map_runs_0"]}, r"Patches\(columns='label_map_runs_0'\)"),
    ({"label": "nope"}, r"label='nope'\): label must name a column"),
])
def test_bad_parameters_are_view_errors_that_name_them(tmp_path, kw, match):
    cache, _ = _cache(tmp_path, [(4, 5, 6), (6, 3, 7)])
    args = {"cache": cache, "column": "image", "size": (2, 2, 2), **kw}
    with pytest.raises(ViewError, match=match):
        prebake.Patches(**args)


def test_fgbg_indices_refuses_bad_parameters_and_labels():
    for bad in [(), (0, 0), (-1,), ("a",), (1.5,), 1, "01", (True,)]:
        with pytest.raises(OptionError, match=r"FgBgIndices\(classes="):
            FgBgIndices("label_map", bad)
    with pytest.raises(OptionError, match=r"FgBgIndices\(label=5\)"):
        FgBgIndices(5)
    with pytest.raises(prebake.BadItemError, match="holds float32 values that are not all whole numbers"):
        FgBgIndices()({"label_map": np.full((1, 2, 2, 2), 0.5, np.float32)})
    with pytest.raises(prebake.BadItemError, match="holds float64 values that are not all whole numbers"):
        FgBgIndices()({"label_map": np.array([[[0.0, np.nan]]])})
    whole = FgBgIndices()({"label_map": np.array([[[0.0, 1.0, 1.0]]], np.float32)})  # MONAI's LoadImaged's labels
    assert whole["label_map_runs_1"].tolist() == [[1, 2]]
    with pytest.raises(prebake.BadItemError, match="2 channels"):
        FgBgIndices()({"label_map": np.zeros((2, 2, 2, 2), np.uint8)})


@pytest.mark.parametrize("preload", [None, "device"])
def test_boxes_at_the_ends_of_the_values_are_padded_not_read_from_beyond(tmp_path, preload):
    """Item 0 starts the values file and the last item ends it: an x-padded box there would start its runs
    before the first element or end them past the last; it reads by element instead, padded."""
    cache, items = _cache(tmp_path, [(3, 2, 2), (5, 5, 5), (2, 3, 2)], classes=())
    view = prebake.Patches(cache, "image", (4, 4, 4), sampler="grid", pad_value={"image": -7})
    for b in prebake.Loader(view, 2, shuffle=False, preload=preload):
        for j, i in enumerate(b["item"].tolist()):
            want = crop(items[i]["image"], np.asarray(b["start"][j]), (4, 4, 4), -7)
            assert torch.equal(b["image"][j], torch.from_numpy(want)), i


def test_patches_trials(tmp_path):
    row = patches(tmp_path, trials=8, seed=os.getpid() % 1000)
    assert row.failures == 0, row.examples
