"""MONAI pipelines as bake steps, with the real MONAI on nibabel's shipped NIfTI volumes: a Compose split at its
first random transform as PersistentDataset splits it, the prefix baked to PersistentDataset's values as plain
columns, its parameters in the fingerprint, the remainder on the device or per item, and the guide's code."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")
monai = pytest.importorskip("monai")  # one import for the module (~7 s)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]

import monai.transforms as mt  # noqa: E402
import torch  # noqa: E402

import prebake  # noqa: E402
from benchmarks.trials.monai import LABELS, compare, data_list, nibabel_data, persistent_values  # noqa: E402
from prebake.errors import OptionError  # noqa: E402
from prebake.integrations.monai import DataList, MonaiDataset, split, to_device_ops  # noqa: E402

SLOW = os.environ.get("PREBAKE_SLOW_INTEGRATIONS") == "1"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "monai.md"
K = "image"


def prefix(pixdim=(3.0, 3.0, 3.0), size=12, keys=(K,)):
    keys = list(keys)
    return [mt.LoadImaged(keys, image_only=True), mt.EnsureChannelFirstd(keys),
            mt.Orientationd(keys, axcodes="RAS", labels=LABELS), mt.Spacingd(keys, pixdim=pixdim),
            mt.ScaleIntensityRanged(K, a_min=0, a_max=100, b_min=0.0, b_max=1.0, clip=True),
            mt.CropForegroundd(keys, source_key=K), mt.ResizeWithPadOrCropd(keys, spatial_size=size)]


def remainder(keys=(K,)):
    keys = list(keys)
    return [mt.RandFlipd(keys, prob=0.5, spatial_axis=0), mt.RandRotate90d(keys, prob=0.5, spatial_axes=(1, 2)),
            mt.RandScaleIntensityd(K, factors=0.1, prob=0.5), mt.RandGaussianNoised(K, prob=0.5, std=0.05)]


THREE_D = ("anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii")


def test_import_prebake_never_imports_monai():
    code = ("import sys, prebake, prebake.steps, prebake.integrations.monai\n"
            "prebake.steps.compile_steps([prebake.steps.Resize(8), lambda item: item])\n"
            "print('monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_prefix_equals_persistent_dataset(tmp_path):
    """LoadImaged .. ResizeWithPadOrCropd baked in 2 workers: PersistentDataset's arrays, dtypes and affines."""
    data = data_list(THREE_D)
    cache = prebake.build(DataList(data), tmp_path / "c", steps=mt.Compose(prefix() + remainder()), workers=2,
                          progress=False)
    assert len(cache) == 3 and not cache.manifest["skipped"]
    assert compare(cache, persistent_values(data, prefix(), tmp_path / "persistent")) == []
    row = cache[0]
    assert row["image"].shape == (1, 12, 12, 12) and row["image"].dtype == np.float32
    assert np.allclose(row["spacing"], 3.0) and row["affine"].shape == (4, 4)
    assert np.array_equal(row["image_original_affine"], np.diag([-2.0, 2.0, 2.0, 1.0]) + _origin(32, -40, -16))
    assert row["image_spatial_shape"].tolist() == [33, 41, 25] and row["case"] == 0


def _origin(*xyz):
    m = np.zeros((4, 4))
    m[:3, 3] = xyz
    return m


def test_image_and_label_keys_keep_their_geometry(tmp_path):
    """A label volume beside the image: both resampled together, each with its own geometry columns."""
    import nibabel

    src = nibabel.load(nibabel_data() / "anatomical.nii")
    seg = nibabel.Nifti1Image((np.asarray(src.dataobj) > 50).astype(np.uint8), src.affine)
    nibabel.save(seg, tmp_path / "seg.nii.gz")
    data = [{"image": str(nibabel_data() / "anatomical.nii"), "label": str(tmp_path / "seg.nii.gz")}]
    steps = prefix(keys=(K, "label"))
    cache = prebake.build(DataList(data), tmp_path / "c", steps=steps, workers=0, progress=False)
    expected = mt.Compose(prefix(keys=(K, "label")))(dict(data[0]))
    row = cache[0]
    for key, affine in ((K, "affine"), ("label", "label_affine")):
        assert np.array_equal(row[key], np.asarray(expected[key])), key
        assert np.array_equal(row[affine], expected[key].affine.numpy()), key
    assert {"label_spacing", "label_origin", "label_original_affine", "label_spatial_shape"} <= set(cache.columns)


def test_no_pickle_in_the_cache(tmp_path):
    """Plain .npy columns and the manifest: every file loads with allow_pickle=False, no MetaTensor inside."""
    cache = prebake.build(DataList(data_list(THREE_D[:2])), tmp_path / "c", steps=prefix(), workers=0,
                          progress=False)
    for path in sorted(cache.path.iterdir()):
        if path.suffix == ".npy":
            assert np.load(path, allow_pickle=False).dtype != object
        else:  # the manifest and prebake's other text files: neither a pickle nor a torch.save zip
            assert path.suffix in (".json", ".log") and path.read_bytes()[:2] not in (b"\x80\x04", b"PK"), path


def test_info_names_the_transforms_not_their_attributes(tmp_path, capsys):
    from prebake.cli import main

    cache = prebake.build(DataList(data_list(THREE_D[:1])), tmp_path / "c", steps=prefix(), workers=0, progress=False)
    main(["info", str(cache.path)])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("transforms"))
    assert "MonaiTransforms(LoadImaged, EnsureChannelFirstd, Orientationd, Spacingd," in line and len(line) < 200


def test_a_transform_is_described_the_same_after_it_ran():
    """LoadImaged's readers keep the last file names they read: call state, not a parameter, so not described."""
    from prebake.steps.monai import describe_transform

    transforms = prefix() + [mt.NormalizeIntensityd(K), mt.Zoomd(K, zoom=0.8), mt.Lambdad(K, func=lambda x: x)]
    before = [describe_transform(t) for t in transforms]
    mt.Compose(transforms)(data_list(THREE_D[:1])[0])
    assert [describe_transform(t) for t in transforms] == before


def test_changed_pixdim_rebuilds_naming_it(tmp_path):
    data, out = DataList(data_list(THREE_D[:2])), tmp_path / "c"
    prebake.build(data, out, steps=mt.Compose(prefix()), workers=0, progress=False)
    again = prebake.build(data, out, steps=mt.Compose(prefix()), workers=0, progress=False)  # new objects
    assert again.build_report.action == "up to date"
    changed = prebake.build(data, out, steps=mt.Compose(prefix(pixdim=(2.5, 3.0, 3.0))), workers=0, progress=False)
    assert changed.build_report.action == "rebuilt"
    assert changed.build_report.reasons == [
        "transform MonaiTransforms: transforms[3:Spacingd].spacing_transform.pixdim[0] 3.0 -> 2.5"]
    assert np.allclose(changed[0]["spacing"], (2.5, 3.0, 3.0))


def test_a_lambda_s_code_is_in_the_fingerprint(tmp_path):
    """MONAI's own transform hash falls back to class names; prebake's covers a Lambdad's code."""
    data, out = DataList(data_list(THREE_D[:1])), tmp_path / "c"
    prebake.build(data, out, steps=prefix() + [mt.Lambdad(K, func=lambda x: x * 2)], workers=0, progress=False)
    cache = prebake.build(data, out, steps=prefix() + [mt.Lambdad(K, func=lambda x: x * 3)], workers=0,
                          progress=False)
    assert cache.build_report.action == "rebuilt"
    assert re.search(r"transforms\[7:Lambdad\]\.func\[0\]\.function\.code", cache.build_report.reasons[0])
    assert cache[0]["image"].max() == 3.0


def test_an_edited_data_list_and_a_changed_file_rebuild(tmp_path):
    import shutil

    for name in THREE_D[:2]:
        shutil.copy(nibabel_data() / name, tmp_path / name)
    data = [{"image": str(tmp_path / name)} for name in THREE_D[:2]]
    out = tmp_path / "c"
    prebake.build(DataList(data), out, steps=prefix(), workers=0, progress=False)
    report = prebake.build(DataList(data[:1]), out, steps=prefix(), workers=0, progress=False).build_report
    assert report.action == "rebuilt" and len(prebake.open(out)) == 1
    path = tmp_path / THREE_D[0]
    path.write_bytes(path.read_bytes()[:-2] + b"\x00\x07")  # one voxel changed
    report = prebake.build(DataList(data[:1]), out, steps=prefix(), workers=0, progress=False).build_report
    assert report.action == "rebuilt" and THREE_D[0] in " ".join(report.reasons)


def test_the_remainder_is_logged_and_in_the_build_report(tmp_path, caplog):
    rest = remainder()
    compose = mt.Compose(prefix() + rest + [mt.EnsureTyped(K)])
    with caplog.at_level(logging.INFO, logger="prebake"):
        cache = prebake.build(DataList(data_list(THREE_D[:1])), tmp_path / "c", steps=compose, workers=0,
                              progress=False)
    assert list(cache.build_report.remainder.transforms) == rest + [compose.transforms[-1]]
    text = caplog.text
    assert "baking the MONAI transforms MonaiTransforms(LoadImaged, EnsureChannelFirstd, Orientationd" in text
    assert "RandFlipd, RandRotate90d, RandScaleIntensityd, RandGaussianNoised, EnsureTyped" in text


def test_split_follows_persistent_dataset():
    """Flattened first (nested Composes inlined); the prefix ends at the first Randomizable or non-Transform."""
    inner = mt.Compose(prefix()[2:4])
    step, rest = split(mt.Compose([*prefix()[:2], inner, mt.RandFlipd(K, prob=1.0), mt.Spacingd(K, pixdim=2)]))
    assert [type(t).__name__ for t in step.transforms] == ["LoadImaged", "EnsureChannelFirstd", "Orientationd",
                                                           "Spacingd"]
    assert [type(t).__name__ for t in rest.transforms] == ["RandFlipd", "Spacingd"]
    step, rest = split(mt.Compose([*prefix()[:2], lambda d: d, mt.Spacingd(K, pixdim=2)]))  # a plain function
    assert len(step.transforms) == 2 and len(rest.transforms) == 2
    step, rest = split([mt.RandFlipd(K, prob=1.0)] + prefix())
    assert step is None and len(rest.transforms) == 8
    step, rest = split(prefix())
    assert rest is None and str(step).startswith("MonaiTransforms(LoadImaged")
    one_of = mt.OneOf([mt.Flipd(K, 0), mt.Flipd(K, 1)])  # random by MONAI's rule
    assert split([*prefix()[:2], one_of])[1].transforms == (one_of,)
    with pytest.raises(OptionError, match=r"split takes .*\[1\] Resize"):
        split([mt.LoadImaged(K), prebake.steps.Resize(8)])


def test_split_does_not_reseed_the_user_s_random_transforms():
    rest = remainder()
    compose = mt.Compose(prefix() + rest)
    before = [t.R.get_state()[1].copy() for t in rest]
    split(compose)
    assert all(np.array_equal(b, t.R.get_state()[1]) for b, t in zip(before, rest))


def test_monai_steps_mixed_with_prebake_steps(tmp_path):
    """A function of yours between MONAI transforms: arrays and affines go back into MetaTensors for the next run."""
    seen = []

    def note(item):
        seen.append(sorted(item))
        return item

    steps = [*prefix()[:3], note, *prefix()[3:]]
    data = data_list(THREE_D[:2])
    cache = prebake.build(DataList(data), tmp_path / "c", steps=steps, workers=0, progress=False)
    assert compare(cache, persistent_values(data, prefix(), tmp_path / "p")) == []
    assert {"image", "affine", "spacing", "origin", "image_original_affine"} <= set(seen[0])
    with pytest.raises(OptionError, match=r"steps\[3\] \(Window\(.*\)\) comes after MONAI's random RandFlipd.*"
                                          r"put Window.* before RandFlipd"):
        prebake.build(DataList(data), tmp_path / "d", steps=[*prefix()[:2], mt.RandFlipd(K, prob=1.0),
                                                               prebake.steps.Window(0, 10)], progress=False)


def test_monai_transforms_refuses_random_ones():
    with pytest.raises(OptionError, match=r"transforms\[1\] \(RandFlipd\) is random.*split\(compose\)"):
        prebake.steps.MonaiTransforms([mt.LoadImaged(K), mt.RandFlipd(K, prob=1.0)])
    with pytest.raises(OptionError, match="non-empty list"):
        prebake.steps.MonaiTransforms([])
    with pytest.raises(OptionError, match=r"meta takes a tuple"):
        prebake.steps.MonaiTransforms([mt.LoadImaged(K)], meta="affine")


def test_a_missing_key_is_refused_before_any_work(tmp_path):
    with pytest.raises(OptionError, match=r"needs a 'image' column, but the items of .* have \['scan'\]"):
        prebake.build(DataList([{"scan": "a.nii"}]), tmp_path / "c", steps=prefix(), progress=False)


def test_to_device_ops_maps_what_has_an_equivalent():
    from prebake import augment

    ops, missing = to_device_ops(mt.Compose([
        mt.RandFlipd(K, prob=0.3, spatial_axis=1), mt.RandRotate90d(K, prob=0.2, spatial_axes=(1, 2)),
        mt.RandScaleIntensityd(K, factors=0.1, prob=0.4), mt.RandShiftIntensityd(K, offsets=(-0.1, 0.2), prob=0.5),
        mt.RandGaussianNoised(K, prob=0.1, std=0.05), mt.RandSpatialCropd(K, roi_size=(8, 8, 8), random_size=False),
        mt.ScaleIntensityRanged(K, 0, 100, 0.0, 1.0, clip=True), mt.EnsureTyped(K),
        mt.RandCropByPosNegLabeld([K, "label"], label_key="label", spatial_size=8),
        mt.RandFlipd(K, prob=0.5), mt.RandRotate90d(K, prob=0.5, max_k=1), mt.RandAffined(K, prob=0.5)]))
    got = [(type(op).__name__, keys) for keys, op in zip(ops.keys, ops.ops)]
    assert got == [("RandomFlip3d", (K,)), ("RandomRotate90", (K,)), ("RandomIntensity", (K,)),
                   ("RandomIntensity", (K,)), ("GaussianNoise3d", (K,)), ("RandomCrop3d", (K,)),
                   ("IntensityWindow", (K,))]
    flip, rot, scale, shift, noise, crop, window = ops.ops
    assert flip.axes == (1,) and flip.p == 0.3 and rot.axes == (1, 2) and rot.p == 0.2
    assert scale.scale == (0.9, 1.1) and scale.shift == (0.0, 0.0) and shift.shift == (-0.1, 0.2)
    assert noise.std == (0.0, 0.05) and crop.size == (8, 8, 8) and isinstance(window, augment.IntensityWindow)
    assert [m.split(":")[0] for m in missing] == ["RandCropByPosNegLabeld", "RandFlipd", "RandRotate90d",
                                                  "RandAffined"]
    assert "to_patches(remainder, cache)" in missing[0] and "one coin per axis" in missing[1]
    assert "max_k=1" in missing[2] and "no batched device op" in missing[3]


def test_one_axis_flips_of_one_probability_become_one_op():
    """RandFlipd on each axis (MONAI's usual chain) is one RandomFlip3d, a coin per axis: one gather, not three."""
    ops, _ = to_device_ops([*(mt.RandFlipd(K, prob=0.5, spatial_axis=a) for a in range(3)),
                            mt.RandFlipd(K, prob=0.2, spatial_axis=0), mt.RandFlipd("label", prob=0.2, spatial_axis=1)])
    assert [(op.axes, op.p, keys) for keys, op in zip(ops.keys, ops.ops)] == [
        ((0, 1, 2), 0.5, (K,)), ((0,), 0.2, (K,)), ((1,), 0.2, ("label",))]


def test_device_ops_move_an_image_and_its_label_together():
    ops, missing = to_device_ops([mt.RandFlipd([K, "label"], prob=0.5, spatial_axis=0),
                                  mt.RandRotate90d([K, "label"], prob=0.5, spatial_axes=(1, 2))])
    x = torch.arange(8 * 5 * 6 * 6, dtype=torch.float32).reshape(8, 1, 5, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = ops({K: x, "label": x.to(torch.int16)}, generator=g)
    assert not missing and torch.equal(out[K].to(torch.int16), out["label"]) and not torch.equal(out[K], x)


def test_the_loader_runs_the_remainder_on_batches(tmp_path):
    cache = prebake.build(DataList(data_list(THREE_D)), tmp_path / "c", steps=mt.Compose(prefix() + remainder()),
                          workers=0, progress=False)
    ops, missing = to_device_ops(cache.build_report.remainder)
    assert missing == [] and len(ops.ops) == 4
    batches = list(prebake.Loader(cache, 2, transform=ops, seed=0))
    assert [tuple(b[K].shape) for b in batches] == [(2, 1, 12, 12, 12), (1, 1, 12, 12, 12)]


def test_monai_dataset_equals_persistent_dataset_with_the_remainder(tmp_path):
    """The per-item path: the cache's items as MetaTensors through the remainder, seeded as MONAI seeds it."""
    from monai.data import PersistentDataset

    data = data_list(THREE_D)
    crop = mt.RandCropByPosNegLabeld(K, label_key=K, spatial_size=4, num_samples=2)
    compose = mt.Compose(prefix() + remainder() + [crop])
    cache = prebake.build(DataList(data), tmp_path / "c", steps=compose, workers=0, progress=False)
    ours = MonaiDataset(cache, cache.build_report.remainder)
    theirs = PersistentDataset(data, mt.Compose(prefix() + remainder() + [crop]), cache_dir=tmp_path / "p")
    ours.transform.set_random_state(seed=7)
    mine = [ours[i] for i in range(3)]
    theirs.transform.set_random_state(seed=7)
    want = [theirs[i] for i in range(3)]
    for a, b in zip(mine, want):
        assert len(a) == len(b) == 2
        for x, y in zip(a, b):
            assert torch.equal(x[K].as_tensor(), y[K].as_tensor())
            assert torch.equal(x[K].affine, y[K].affine)


def test_the_guide_runs(tmp_path, monkeypatch):
    """docs/guides/monai.md: its python blocks, in order, in one namespace, in a fresh directory."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "guide"}
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), namespace)  # noqa: S102 - our own documentation


@pytest.mark.skipif(not SLOW, reason="PREBAKE_SLOW_INTEGRATIONS=1 (make integrations): a second MONAI import")
def test_the_fingerprint_is_the_same_in_another_process(tmp_path):
    """A new process (another hash seed) describes the same pipeline byte for byte: an up-to-date cache stays so."""
    code = ("import json, sys, warnings; warnings.filterwarnings('ignore')\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "from tests.integrations.test_monai import prefix\n"
            "from prebake.steps import compile_steps\n"
            "print(json.dumps(compile_steps(prefix()).describe(), sort_keys=True))")
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, check=True, env=env)
    here = json.dumps(prebake.steps.compile_steps(prefix()).describe(), sort_keys=True)
    assert out.stdout.strip() == here


@pytest.mark.skipif(not SLOW, reason="PREBAKE_SLOW_INTEGRATIONS=1 (make integrations): bigger 4-D volumes")
@pytest.mark.parametrize("name", ["functional.nii", "example4d.nii.gz", "example_nifti2.nii.gz"])
def test_four_d_volumes_equal_persistent_dataset(tmp_path, name):
    """4-D NIfTI: EnsureChannelFirstd puts time first; one volume per cache, CropForegroundd's own shape kept."""
    data = data_list((name,))
    steps = prefix()[:-1]
    cache = prebake.build(DataList(data), tmp_path / "c", steps=steps, workers=0, progress=False)
    assert compare(cache, persistent_values(data, prefix()[:-1], tmp_path / "p")) == []
