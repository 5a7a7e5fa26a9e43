"""MONAI's sampled crops as prebake.Patches, with the real MONAI: a Compose whose remainder starts with
RandCropByPosNegLabeld or RandSpatialCropSamplesd bakes its prefix and FgBgIndices, and to_patches cuts the
same kind of patches, every one a crop of its baked item, the rest of the remainder on the patch batches."""

from __future__ import annotations

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")
pytest.importorskip("monai")
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]

import monai.transforms as mt  # noqa: E402

import prebake  # noqa: E402
from benchmarks.trials.patches import crop  # noqa: E402
from prebake.errors import OptionError  # noqa: E402
from prebake.integrations.monai import DataList, split, to_device_ops, to_patches  # noqa: E402
from prebake.steps import FgBgIndices  # noqa: E402

KEYS = ["image", "label"]
SHAPES = [(14, 12, 10), (9, 16, 11), (5, 7, 12), (12, 12, 12)]  # one smaller than the patch on an axis


def _volumes(root):
    rng, data = np.random.default_rng(4), []
    for i, shape in enumerate(SHAPES):
        image = rng.integers(-1000, 1000, shape).astype(np.int16)
        z, y, x = np.indices(shape)
        label = (((z - shape[0] // 2) ** 2 + (y - 3) ** 2 + (x - shape[2] // 3) ** 2) < 6).astype(np.uint8)
        for name, arr in (("image", image), ("label", label)):
            nib.save(nib.Nifti1Image(arr, np.eye(4)), root / f"{name}{i}.nii.gz")
        data.append({"image": str(root / f"image{i}.nii.gz"), "label": str(root / f"label{i}.nii.gz")})
    return data


def _load():
    return [mt.LoadImaged(KEYS, image_only=True), mt.EnsureChannelFirstd(KEYS)]


def _bake(tmp_path, crop_transform, *extra):
    prefix, rest = split(mt.Compose(_load() + [crop_transform, *extra]))
    cache = prebake.build(DataList(_volumes(tmp_path)), tmp_path / "c", steps=[prefix, FgBgIndices("label")],
                          workers=0, progress=False)
    return cache, rest


def test_pos_neg_crops_become_balanced_patches_and_the_rest_runs_on_their_batches(tmp_path):
    cache, rest = _bake(tmp_path, mt.RandCropByPosNegLabeld(KEYS, "label", (6, 6, 6), pos=3, neg=1, num_samples=4),
                        mt.RandFlipd(KEYS, prob=0.5, spatial_axis=0), mt.RandScaleIntensityd("image", 0.1, prob=0.5))
    view, left = to_patches(rest, cache)
    assert (view.sampler, view.per_item, view.size, view.pos_fraction) == ("balanced", 4, (6, 6, 6), 0.75)
    assert [type(t).__name__ for t in left] == ["RandFlipd", "RandScaleIntensityd"]
    device, missing = to_device_ops(left)
    assert missing == []
    batch = view[np.arange(len(view))]
    for j, i in enumerate(batch["item"].tolist()):
        start = np.asarray(batch["start"][j])
        assert np.array_equal(np.asarray(batch["image"][j]), crop(cache[i]["image"], start, (6, 6, 6), 0))
        assert np.array_equal(np.asarray(batch["label"][j]), crop(cache[i]["label"], start, (6, 6, 6), 0))
    out = next(iter(prebake.Loader(view, 8, transform=device, seed=2)))
    assert tuple(out["image"].shape) == (8, 1, 6, 6, 6) and tuple(out["label"].shape) == (8, 1, 6, 6, 6)


def test_spatial_crop_samples_become_uniform_patches(tmp_path):
    cache, rest = _bake(tmp_path, mt.RandSpatialCropSamplesd(KEYS, (4, 5, 6), num_samples=3, random_size=False))
    view, left = to_patches(rest, cache, seed=7)
    assert (view.sampler, view.per_item, view.size, left) == ("uniform", 3, (4, 5, 6), [])
    assert len(view) == 3 * len(SHAPES)


@pytest.mark.parametrize("remainder, match", [
    ([mt.RandFlipd(KEYS, prob=0.5, spatial_axis=0)], "holds no RandCropByPosNegLabeld"),
    ([mt.RandRotate90d(KEYS, prob=0.5), mt.RandSpatialCropSamplesd(KEYS, 4, 2, random_size=False)],
     "RandRotate90d comes before the crop"),
    ([mt.RandSpatialCropSamplesd(KEYS, 4, 2, random_size=True)], "random_size=True"),
    ([mt.RandCropByPosNegLabeld(KEYS, "label", 4, image_key="image")], "image_key='image'"),
    ([mt.RandCropByPosNegLabeld(KEYS, "label", (-1, 4, 4))], "-1 means the whole axis"),
])
def test_crops_patches_cannot_express_are_refused_naming_them(tmp_path, remainder, match):
    cache = prebake.write_arrays(tmp_path / "c", {"x": np.arange(2)})
    with pytest.raises(OptionError, match=match):
        to_patches(remainder, cache)
