"""The geometry columns (affine, spacing, origin, orientation) of every volume, against the readers of the
field on the real files nibabel and pydicom ship: nibabel's ``img.affine`` and ``aff2axcodes``, pydicom's
ImagePositionPatient / ImageOrientationPatient / PixelSpacing / GridFrameOffsetVector, and MONAI's
``LoadImage`` where it is installed. Stacks that cannot share one affine are bad items that say why."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.geometry_files import (
    AXIAL,
    LPS_TO_RAS,
    Plane,
    axes_problem,
    geometry_problem,
    series_planes,
    write_enhanced,
    write_rtdose,
    write_series,
    write_slice,
)
from prebake.errors import BadItemError
from prebake.sources.volume_geometry import SLICE_TOLERANCE, axcodes_of
from prebake.sources.volume_readers import read_volume

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
from nibabel.orientations import aff2axcodes  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
DICOM_DATA = Path(get_testdata_file("CT_small.dcm")).parent
SERIES = DICOM_DATA / "dicomdirtests"
NIFTI = ["example4d.nii.gz", "anatomical.nii", "functional.nii", "standard.nii.gz", "example_nifti2.nii.gz",
         "reoriented_anat_moved.nii"]


def _planes_of(paths: list[Path]) -> list[Plane]:
    """Each file's slice as pydicom reads it, in order along the normal: the reference placement."""
    planes = []
    for p in paths:
        ds = pydicom.dcmread(p)
        pixels = np.asarray(pydicom.pixels.apply_rescale(ds.pixel_array, ds))
        planes.append(Plane(pixels, np.array([float(x) for x in ds.ImagePositionPatient]),
                            [float(x) for x in ds.ImageOrientationPatient],
                            tuple(float(x) for x in ds.PixelSpacing), p.name))
    normal = np.cross(np.array(planes[0].orientation[:3]), np.array(planes[0].orientation[3:]))
    return sorted(planes, key=lambda q: float(q.position @ normal))


@pytest.mark.parametrize("name", NIFTI)
def test_nifti_geometry_is_nibabels(name):
    img = nib.load(NIB_DATA / name)
    item = read_volume(NIB_DATA / name)
    np.testing.assert_array_equal(item["affine"], img.affine)
    np.testing.assert_allclose(item["spacing"], img.header.get_zooms()[:3], rtol=1e-6)
    assert item["orientation"] == "".join(aff2axcodes(img.affine))
    assert axes_problem(item) is None


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm"])
def test_a_dicom_slice_is_where_pydicom_says(name):
    path = Path(get_testdata_file(name))
    item = read_volume(path)
    assert geometry_problem(item, _planes_of([path])) is None
    assert item["orientation"] == "SPL"  # axial, stored (slice, row, column): Superior, Posterior, Left


def test_a_real_series_is_where_its_files_say():
    files = sorted((SERIES / "98892001" / "CT5N").iterdir())
    item = read_volume(SERIES / "98892001" / "CT5N")  # stored head to feet: sorted along the normal
    assert item["image"].shape == (1, 5, 16, 16)
    assert geometry_problem(item, _planes_of(files)) is None
    np.testing.assert_allclose(item["spacing"], [2.5, 0.488281, 0.488281])


def test_the_coordinate_convention_is_ras(tmp_path):
    """DICOM positions are LPS: (x, y, z) is stored (-x, -y, z); a NIfTI affine is RAS already."""
    plane = Plane(np.zeros((4, 3), np.int16), np.array([10.0, 20.0, 30.0]), AXIAL, (0.5, 0.7))
    item = read_volume(write_slice(tmp_path / "s.dcm", plane))
    np.testing.assert_allclose(item["origin"], [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(item["affine"][:3, 1:3], [[0, -0.7], [-0.5, 0], [0, 0]])  # rows go P, columns L
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4), np.int16), np.diag([1.0, 2.0, 3.0, 1.0])), tmp_path / "v.nii")
    assert read_volume(tmp_path / "v.nii")["orientation"] == "RAS"


def test_a_slice_keeps_its_normal_whatever_the_sign_of_its_spacing_tag(tmp_path):
    """The slice axis points along row x column (DICOM); a negative SpacingBetweenSlices flipped it before."""
    plane = Plane(np.zeros((4, 3), np.int16), np.array([1.0, 2.0, 3.0]), AXIAL, (0.5, 0.7))
    item = read_volume(write_slice(tmp_path / "s.dcm", plane, SpacingBetweenSlices=-2.5))
    assert item["orientation"] == "SPL" and item["spacing"][0] == 2.5


def test_a_non_finite_position_is_refused_naming_the_tag(tmp_path):
    plane = Plane(np.zeros((4, 3), np.int16), np.array([1.0, float("nan"), 3.0]), AXIAL, (0.5, 0.7))
    with pytest.raises(BadItemError, match=r"s.dcm: ImagePositionPatient is 1 nan 3, where 3 finite numbers belong"):
        read_volume(write_slice(tmp_path / "s.dcm", plane))


def test_an_orient_step_keeps_the_orientation_column_true(tmp_path):
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([-1.0, 2.0, 3.0, 1.0])),
             tmp_path / "v.nii")
    item = read_volume(tmp_path / "v.nii")
    assert item["orientation"] == "LAS"
    out = prebake.steps.Orient("PIR")(item)
    assert out["orientation"] == "PIR" == "".join(aff2axcodes(out["affine"]))


def test_axis_codes_are_nibabels_on_rotated_scaled_sheared_affines():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = np.eye(4)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        a[:3, :3] = q @ np.diag(rng.uniform(0.1, 5, 3)) @ (np.eye(3) + np.triu(rng.uniform(-0.5, 0.5, (3, 3)), 1))
        assert axcodes_of(a) == "".join(aff2axcodes(a)), a


# -- stacks that are not one volume ----------------------------------------------------------------

def test_a_scout_beside_the_series_is_refused_naming_the_orientations_and_files():
    """Before: stacked into one volume with a 374.8 mm slice step."""
    with pytest.raises(BadItemError) as e:
        read_volume(SERIES / "98892001" / "CT2N")
    assert e.value.reason.startswith("CT2N/ (series 4 'Scout'): the slices have ")
    assert "2 different ImageOrientationPatient values (0 -1 0 0 0 -1 in 6293; 1 0 0 0 0 -1 in 6924)" in e.value.reason


@pytest.mark.parametrize("series, shown", [
    ("98892003/MR700", "7 different ImageOrientationPatient values"),  # radial slices
    ("98892003/MR2", "different ImageOrientationPatient values"),
    ("98892003/MR1", "lie at the same position"),  # three series at one position
])
def test_real_folders_of_more_than_one_stack_are_refused(series, shown):
    with pytest.raises(BadItemError, match=re.escape(shown)):
        read_volume(SERIES / series)


def test_a_missing_slice_is_refused_with_the_gap():
    with pytest.raises(BadItemError) as e:
        read_volume(SERIES / "77654033" / "CT2")
    assert ("17106 and 17136 are 202.5 mm apart along the slice normal, the other neighbours 1.25 mm (more than 10% "
            "apart): a slice is missing") in e.value.reason


@pytest.mark.parametrize("jitter, kept", [(0.05, True), (0.15, False)])
def test_the_slice_tolerance_is_a_tenth_of_a_step(tmp_path, jitter, kept):
    rng = np.random.default_rng(3)
    planes = series_planes(5, rng, gap=2.0, orientation=AXIAL)
    planes[2].position = planes[2].position + np.array([0, 0, jitter * 2.0])
    write_series(tmp_path / "s", planes, rng)
    assert SLICE_TOLERANCE == 0.1
    if kept:
        assert geometry_problem(read_volume(tmp_path / "s"), planes, atol=0.05 * 2.0 + 1e-6) is None
    else:
        with pytest.raises(BadItemError, match="more than 10%"):
            read_volume(tmp_path / "s")


def test_two_series_interleaved_evenly_are_refused(tmp_path):
    rng = np.random.default_rng(4)
    planes = series_planes(4, rng, gap=2.0)
    paths = write_series(tmp_path / "s", planes[:2], rng) + write_series(tmp_path / "s", planes[2:], rng,
                                                                          SeriesInstanceUID="1.2.3.4")
    with pytest.raises(BadItemError, match=r"the files belong to 2 series \(SeriesInstanceUID .*1\.2\.3\.4 in"):
        read_volume(tmp_path / "s")
    assert len(paths) == 4


# -- multi-frame files -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_rle.dcm", "rtdose_expb.dcm"])
def test_an_rt_dose_grid_is_placed_by_its_frame_offsets_and_scaled_to_dose(name):
    """Before: frames 5 mm apart stored 1 mm apart, and the raw integers stored as the dose."""
    ds = pydicom.dcmread(get_testdata_file(name))
    item = read_volume(get_testdata_file(name))
    offsets = [float(x) for x in ds.GridFrameOffsetVector]
    start = np.array([float(x) for x in ds.ImagePositionPatient])
    dose = (ds.pixel_array * float(ds.DoseGridScaling)).astype(np.float32)
    planes = [Plane(dose[i], start + [0, 0, offsets[i]], [float(x) for x in ds.ImageOrientationPatient],
                    tuple(float(x) for x in ds.PixelSpacing)) for i in range(len(offsets))]
    assert item["image"].dtype == np.float32
    assert geometry_problem(item, planes) is None
    np.testing.assert_allclose(item["spacing"], [5.0, 10.0, 10.0])


def test_a_multi_frame_file_without_frame_positions_is_refused(tmp_path):
    write_rtdose(tmp_path / "d.dcm", None)
    with pytest.raises(BadItemError, match="d.dcm has 15 frames but no GridFrameOffsetVector and no per-frame "
                                           "PlanePositionSequence"):
        read_volume(tmp_path / "d.dcm")
    write_rtdose(tmp_path / "e.dcm", [7.0 + 3 * i for i in range(15)])
    with pytest.raises(BadItemError, match="GridFrameOffsetVector starts at 7, neither 0"):
        read_volume(tmp_path / "e.dcm")
    write_rtdose(tmp_path / "f.dcm", [0.0, 2.0] + [3.0 * i for i in range(2, 15)])
    with pytest.raises(BadItemError, match="frame 2 and frame 3 are 4 mm apart along the slice normal, the other "
                                           "neighbours 3 mm"):
        read_volume(tmp_path / "f.dcm")
    write_rtdose(tmp_path / "g.dcm", [2.5 * i for i in range(15)], DoseGridScaling=0)
    with pytest.raises(BadItemError, match="DoseGridScaling is"):
        read_volume(tmp_path / "g.dcm")


def test_an_enhanced_file_is_placed_by_its_per_frame_positions(tmp_path):
    rng = np.random.default_rng(5)
    planes = series_planes(4, rng, gap=1.5)
    write_enhanced(tmp_path / "e.dcm", [planes[i] for i in (2, 0, 3, 1)], slope=2.0, intercept=-1024.0)
    scaled = [Plane(p.pixels.astype(np.int32) * 2 - 1024, p.position, p.orientation, p.spacing) for p in planes]
    assert geometry_problem(read_volume(tmp_path / "e.dcm"), scaled) is None


def test_a_real_one_frame_enhanced_file_takes_its_functional_groups():
    ds = pydicom.dcmread(get_testdata_file("liver_1frame.dcm"))
    item = read_volume(get_testdata_file("liver_1frame.dcm"))
    first = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    np.testing.assert_allclose(item["origin"], LPS_TO_RAS @ [float(x) for x in first])
    np.testing.assert_allclose(item["spacing"][1:], [0.810547, 0.810547])


# -- in a build, and against MONAI -----------------------------------------------------------------

def test_a_volume_folder_keeps_the_series_and_says_why_the_others_are_not_volumes(tmp_path):
    for name, src in [("ct5n", "98892001/CT5N"), ("scout", "98892001/CT2N"), ("gap", "77654033/CT2"),
                      ("radial", "98892003/MR700")]:
        (tmp_path / "scans" / "a" / name).mkdir(parents=True)
        for f in (SERIES / src).iterdir():  # named .dcm: the folder is one of volumes by name alone
            shutil.copy(f, tmp_path / "scans" / "a" / name / f"{f.name}.dcm")
    cache = prebake.build(tmp_path / "scans", tmp_path / "c", workers=0, progress=False)
    item = read_volume(tmp_path / "scans" / "a" / "ct5n")
    assert len(cache) == 1 and cache.column("orientation")[0] == "SPL"
    for key in ("affine", "spacing", "origin"):
        np.testing.assert_array_equal(cache.column(key)[0], item[key])
    reasons = {s["key"].split("/")[-1]: s["reason"] for s in cache.manifest["skipped"]}
    assert "ImageOrientationPatient" in reasons["scout"] and "ImageOrientationPatient" in reasons["radial"]
    assert "a slice is missing" in reasons["gap"]


def _monai_agrees(path: Path, item: dict) -> None:
    """Every voxel corner of ours lies, in the world, on a voxel of MONAI's with the same value."""
    monai = pytest.importorskip("monai.transforms")
    reader = "NibabelReader" if path.name.endswith((".nii", ".nii.gz")) else "PydicomReader"
    img, meta = monai.LoadImage(image_only=False, reader=reader)(str(path))
    img, to_monai = np.asarray(img), np.linalg.inv(np.asarray(meta["affine"]))
    shape = item["image"].shape[1:]
    for idx in np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T:
        m = to_monai @ (item["affine"] @ [*idx, 1.0])
        assert np.allclose(m[:3], np.round(m[:3]), atol=1e-3), (idx, m)
        at = tuple(int(round(x)) for x in m[: img.ndim])
        assert np.isclose(img[at], item["image"][(0, *idx)]), (idx, at)


@pytest.mark.parametrize("path", [NIB_DATA / "anatomical.nii", NIB_DATA / "standard.nii.gz",
                                  NIB_DATA / "reoriented_anat_moved.nii", Path(get_testdata_file("CT_small.dcm")),
                                  Path(get_testdata_file("MR_small.dcm")), SERIES / "98892001" / "CT5N"],
                         ids=lambda p: p.name)
def test_monai_places_every_voxel_where_we_do(path):
    _monai_agrees(path, read_volume(path))
