"""Bake-time volume transforms, each against a reference (scipy, nibabel or a hand computation) with the
tolerance stated, and against MONAI's Orientation / Spacing / ScaleIntensityRange / ResizeWithPadOrCrop
on the same volume when monai is installed."""

from __future__ import annotations

import numpy as np
import pytest

import prebake
from prebake.errors import OptionError
from prebake.settings import build_kwargs
from prebake.sources.volume_readers import volume_item
from prebake.steps import CropOrPad, Orient, Spacing, Window

nib = pytest.importorskip("nibabel")
ndimage = pytest.importorskip("scipy.ndimage")


def _item(shape=(1, 9, 8, 7), affine=None, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    data = (rng.normal(0, 100, shape) if dtype != np.int16 else rng.integers(-1000, 2000, shape)).astype(dtype)
    if affine is None:
        affine = np.array([[-1.2, 0, 0, 10], [0, 0.9, 0, -5], [0, 0, 2.0, 3], [0, 0, 0, 1]])
    return volume_item(data, affine)


def _world(affine, idx):
    return (affine @ np.r_[idx, 1.0])[:3]


def test_reorient_keeps_every_voxel_at_its_world_position():
    item = _item(affine=np.array([[0, 0, -2.0, 5], [1.5, 0, 0, 1], [0, -1.0, 0, 2], [0, 0, 0, 1]]))
    before = {k: v.copy() for k, v in item.items()}
    out = Orient("RAS")(dict(item))
    assert nib.aff2axcodes(out["affine"]) == ("R", "A", "S")
    assert out["image"].shape == (1, 7, 9, 8)  # axes permuted
    rng = np.random.default_rng(1)
    old_inv = np.linalg.inv(before["affine"])
    for _ in range(50):
        new_idx = [int(rng.integers(0, n)) for n in out["image"].shape[1:]]
        old_idx = np.rint(old_inv @ np.r_[_world(out["affine"], new_idx), 1.0])[:3].astype(int)
        assert out["image"][(0, *new_idx)] == before["image"][(0, *old_idx)]  # exact: flips and swaps only


def test_resample_matches_scipy_map_coordinates():
    item = _item(affine=np.diag([0.8, 1.3, 2.0, 1.0]))
    src = item["image"][0].copy()
    out = Spacing((1.0, 1.0, 1.0))(dict(item))
    ratio = np.array([1.0, 1.0, 1.0]) / [0.8, 1.3, 2.0]
    shape = tuple(int(v) for v in np.round((np.array(src.shape) - 1) / ratio) + 1)
    assert out["image"].shape[1:] == shape
    coords = np.stack(np.meshgrid(*(np.arange(n) * r for n, r in zip(shape, ratio)), indexing="ij"))
    ref = ndimage.map_coordinates(src, coords, order=1, mode="nearest")
    np.testing.assert_allclose(out["image"][0], ref, rtol=0, atol=1e-9)  # float64: the same arithmetic
    np.testing.assert_allclose(out["spacing"], [1, 1, 1])
    np.testing.assert_allclose(out["origin"], item["origin"])  # voxel (0, 0, 0) stays put


def test_resample_float32_matches_scipy_affine_transform():
    item = _item(dtype=np.float32, affine=np.diag([0.8, 1.3, 2.0, 1.0]))
    src = item["image"][0].astype(np.float64)
    out = Spacing((1.1, 1.0, 1.7))(dict(item))
    ratio = np.array([1.1, 1.0, 1.7]) / [0.8, 1.3, 2.0]
    ref = ndimage.affine_transform(src, ratio, output_shape=out["image"].shape[1:], order=1, mode="nearest")
    assert out["image"].dtype == np.float32
    np.testing.assert_allclose(out["image"][0], ref, rtol=0, atol=1e-4 * float(np.ptp(src)))


def test_resample_int16_is_rounded_within_half_a_unit():
    item = _item(dtype=np.int16, affine=np.diag([0.7, 0.7, 1.1, 1.0]))
    as_float = _item(dtype=np.int16, affine=np.diag([0.7, 0.7, 1.1, 1.0]))
    as_float["image"] = as_float["image"].astype(np.float64)
    out = Spacing((1.5, 1.5, 1.5))(item)
    ref = Spacing((1.5, 1.5, 1.5))(as_float)
    assert out["image"].dtype == np.int16  # interpolated in float32, which holds int16 exactly
    assert np.abs(out["image"] - ref["image"]).max() <= 0.5 + 1e-3


def test_window_clips_in_the_dtype_and_scales_to_float32():
    item = _item(dtype=np.int16)
    x = item["image"].copy()
    clipped = Window(-500, 800)(dict(item))["image"]
    assert clipped.dtype == np.int16 and np.array_equal(clipped, np.clip(x, -500, 800))
    scaled = Window(-500, 800, (0.0, 1.0))(dict(item))["image"]
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, (np.clip(x, -500, 800) + 500) / 1300, atol=1e-7)


@pytest.mark.parametrize("shape", [(5, 8, 10), (12, 3, 7)])
def test_crop_or_pad_is_centred_and_moves_the_origin(shape):
    item = _item()
    src = item["image"]
    out = CropOrPad(shape, value=-7.0)(dict(item))
    assert out["image"].shape == (1, *shape)
    # output voxel 0 along each axis is input voxel `start` of that axis (hand computation)
    starts = [n // 2 - s // 2 if n > s else -((s - n) // 2) for n, s in zip(src.shape[1:], shape)]
    np.testing.assert_allclose(out["origin"], _world(item["affine"], starts))
    lo = [max(n // 2 - s // 2, 0) if n > s else 0 for n, s in zip(src.shape[1:], shape)]
    pad = [(s - n) // 2 if s > n else 0 for n, s in zip(src.shape[1:], shape)]
    sizes = [min(n, s) for n, s in zip(src.shape[1:], shape)]
    inner = src[0, lo[0]:lo[0] + sizes[0], lo[1]:lo[1] + sizes[1], lo[2]:lo[2] + sizes[2]]
    np.testing.assert_array_equal(out["image"][0, pad[0]:pad[0] + sizes[0], pad[1]:pad[1] + sizes[1],
                                               pad[2]:pad[2] + sizes[2]], inner)
    assert (out["image"] == -7.0).sum() == np.prod(shape) - inner.size


def test_bad_volume_options_fail_before_any_work(tmp_path, capsys):
    for make, match in [(lambda: Orient("RAX"), r"Orient\(axcodes='RAX'\): axcodes takes three axis codes"),
                        (lambda: Spacing((1, 0, 1)), r"Spacing\(spacing=\(1, 0, 1\)\): spacing takes three voxel"),
                        (lambda: Window(5, 1), r"Window\(high=1\): high takes a finite number above low \(5\)"),
                        (lambda: build_kwargs({"scale_to": [0, 1]}), "`scale_to` maps the `window` range"),
                        (lambda: CropOrPad((4, 4, 2.5)), r"CropOrPad\(shape=\(4, 4, 2.5\)\): shape takes three")]:
        with pytest.raises(OptionError, match=match):
            make()
    from prebake.synthetic import write_image_folder

    photos = write_image_folder(tmp_path / "p", per_class=1)
    with pytest.raises(OptionError, match=r"Spacing\(spacing=\(1.0, 1.0, 1.0\).*needs a 'image' and 'affine' column"):
        prebake.build(photos, tmp_path / "c", [Spacing((1, 1, 1))])
    from prebake.cli import main

    assert main(["build", str(photos), str(tmp_path / "c"), "--spacing", "1", "1", "1"]) == 2
    assert "--spacing needs a 'image' and 'affine' column" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_the_parameters_are_in_the_fingerprint(tmp_path):
    from prebake.synthetic_volumes import write_volume_table

    csv = write_volume_table(tmp_path, patients=2, scans_per_patient=(1, 1))
    options = prebake.SourceOptions(label_columns=("diagnosis",))
    prebake.build(csv, tmp_path / "c", [Orient("RAS"), Spacing((1.5, 1.5, 1.5)), CropOrPad((12, 12, 12))],
                  source_options=options, workers=0, progress=False)
    from prebake.bake.build import BuildOptions, build_one, resolve_sources
    from prebake.steps import compile_steps

    src = resolve_sources(csv, options=options)[""]
    steps = compile_steps([Orient("RAS"), Spacing((2.0, 1.5, 1.5)), CropOrPad((12, 12, 12))])
    report = build_one(src, tmp_path / "c", BuildOptions(pipeline=steps, workers=0))
    assert report.action == "rebuilt" and any("Spacing" in r and "2.0" in r for r in report.reasons)


# -- MONAI, on the same volume ---------------------------------------------------------------------

def _monai():
    try:
        import monai.transforms as mt
        from monai.data import MetaTensor
    except ImportError:
        pytest.skip("monai is not installed (pip install -c constraints.txt monai): the MONAI comparison is skipped")
    return mt, MetaTensor


def _meta(item, MetaTensor):
    import torch

    return MetaTensor(torch.as_tensor(item["image"].astype(np.float32)), affine=torch.as_tensor(item["affine"]))


def test_against_monai_orientation_exactly():
    mt, MetaTensor = _monai()
    item = _item(affine=np.array([[0, 0, -2.0, 5], [1.5, 0, 0, 1], [0, -1.0, 0, 2], [0, 0, 0, 1]]))
    ref = mt.Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(_meta(item, MetaTensor))
    out = Orient("RAS")(dict(item))
    np.testing.assert_array_equal(out["image"].astype(np.float32), ref.numpy())
    np.testing.assert_allclose(out["affine"], ref.affine.numpy(), atol=1e-6)


def test_against_monai_spacing_within_1e_4_of_the_range():
    mt, MetaTensor = _monai()
    item = _item(shape=(1, 20, 17, 11), affine=np.diag([0.8, 1.3, 2.0, 1.0]) + np.r_[0, 0, 0, 0.0] * 0)
    item["affine"][:3, 3] = [4.0, -3.0, 7.0]
    item["origin"] = item["affine"][:3, 3].copy()
    ref = mt.Spacing(pixdim=(1.1, 1.0, 1.5), mode="bilinear", padding_mode="border")(_meta(item, MetaTensor))
    out = Spacing((1.1, 1.0, 1.5))(dict(item))
    assert out["image"].shape == tuple(ref.shape)
    value_range = float(np.ptp(item["image"]))
    assert np.abs(out["image"] - ref.numpy()).max() <= 1e-4 * value_range
    np.testing.assert_allclose(out["affine"], ref.affine.numpy(), atol=1e-5)


def test_against_monai_scale_intensity_range_and_resize_with_pad_or_crop():
    mt, MetaTensor = _monai()
    item = _item(dtype=np.int16, shape=(1, 13, 8, 10))
    ref = mt.ScaleIntensityRange(-500, 800, 0.0, 1.0, clip=True)(_meta(item, MetaTensor))
    ref = mt.ResizeWithPadOrCrop((10, 11, 6))(ref)
    out = CropOrPad((10, 11, 6), 0.0)(Window(-500, 800, (0.0, 1.0))(dict(item)))
    assert out["image"].shape == tuple(ref.shape)
    np.testing.assert_allclose(out["image"], ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(out["affine"], ref.affine.numpy(), atol=1e-6)
