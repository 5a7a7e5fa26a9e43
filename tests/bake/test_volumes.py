"""Volume sources: voxel values against nibabel and pydicom read directly, on generated files and on the
sample files those packages ship (a 4-D NIfTI, a big-endian NIfTI and DICOM, a CT with rescale)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import prebake
from prebake.errors import BadItemError
from prebake.sources import SourceOptions, detect
from prebake.sources.volume_readers import exact_dtype, read_volume
from prebake.synthetic_volumes import write_volume_table

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.pixels import apply_rescale  # noqa: E402

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"


def _nib_values(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


@pytest.mark.parametrize("name, stored", [("example4d.nii.gz", "int16"), ("anatomical.nii", "int16"),
                                          ("functional.nii", "float64"), ("standard.nii.gz", "uint8"),
                                          ("example_nifti2.nii.gz", "int16")])
def test_nibabel_sample_files_read_exactly(name, stored):
    path = NIB_DATA / name
    item = read_volume(path)
    ref = _nib_values(path)
    image = item["image"]
    assert image.dtype == np.dtype(stored) and image.dtype.isnative
    expected = ref[None] if ref.ndim == 3 else np.moveaxis(ref, -1, 0)  # 4-D: the 4th axis is the channels
    assert image.shape == expected.shape
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(item["affine"], nib.load(path).affine)
    np.testing.assert_allclose(item["spacing"], nib.load(path).header.get_zooms()[:3], rtol=1e-6)


def test_big_endian_nifti_is_stored_native():
    path = NIB_DATA / "anatomical.nii"
    assert nib.load(path).get_data_dtype().byteorder == ">"
    assert read_volume(path)["image"].dtype == np.dtype("<i2")


def _save_nifti(path: Path, data: np.ndarray, slope: float = 1.0, inter: float = 0.0) -> Path:
    img = nib.Nifti1Image(data, np.diag([0.7, 0.8, 2.5, 1.0]))
    img.header.set_slope_inter(slope, inter)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("dtype, slope, inter, expected", [
    ("int16", 1.0, 0.0, "int16"), ("uint8", 1.0, 0.0, "uint8"), ("float32", 1.0, 0.0, "float32"),
    (">i2", 1.0, 0.0, "int16"), ("int16", 1.0, -1024.0, "int16"), ("uint16", 1.0, -1024.0, "int16"),
    ("int16", 3.0, 0.0, "int16"), ("int16", 30.0, 0.0, "int32"), ("int16", 0.5, 0.25, "float32"),
    ("int16", 0.1, 0.0, "float64"),
])
def test_generated_nifti_values_and_smallest_exact_dtype(tmp_path, dtype, slope, inter, expected):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 200 if dtype == "uint8" else 3000, (5, 6, 7)).astype(dtype)
    path = _save_nifti(tmp_path / "v.nii.gz", data, slope, inter)
    item = read_volume(path)
    ref = _nib_values(path)
    assert item["image"].dtype == np.dtype(expected)
    np.testing.assert_array_equal(item["image"][0], ref)  # exact: the same numbers as nibabel's
    np.testing.assert_allclose(item["spacing"], [0.7, 0.8, 2.5])


def test_exact_dtype_keeps_unscaled_float_and_widens_only_when_needed():
    assert exact_dtype(np.array([1.0, 2.0], np.float32), np.float32).dtype == np.float32
    assert exact_dtype(np.array([-1024.0, 40000.0]), np.int16).dtype == np.int32
    assert exact_dtype(np.array([1.5, np.nan]), np.int16).dtype == np.float32


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "rtdose.dcm"])
def test_pydicom_sample_files_read_exactly(name):
    path = Path(get_testdata_file(name))
    ds = pydicom.dcmread(path)
    ref = np.asarray(apply_rescale(ds.pixel_array, ds))
    if "DoseGridScaling" in ds:  # an RT dose grid is read as the dose, float32
        ref = (ref * float(ds.DoseGridScaling)).astype(np.float32)
    image = read_volume(path)["image"]
    assert image.dtype.isnative and image.dtype.kind in ("f" if "DoseGridScaling" in ds else "iu")
    frames = ref if ref.ndim == 3 else ref[None]
    np.testing.assert_array_equal(image[0], frames)
    if name == "CT_small.dcm":  # RescaleIntercept -1024: integer values, kept as int16
        assert image.dtype == np.int16 and float(ds.RescaleIntercept) == -1024
        np.testing.assert_array_equal(image[0, 0], ds.pixel_array.astype(np.int32) - 1024)
    if name == "MR_small_bigendian.dcm":
        assert ds.pixel_array.dtype.byteorder == ">"
        np.testing.assert_array_equal(image, read_volume(get_testdata_file("MR_small.dcm"))["image"])


def _write_series(directory: Path, n: int = 5, gap: float = 2.5, shuffle: bool = True) -> list[np.ndarray]:
    """n slices of CT_small.dcm, each with its own pixels and position, written in shuffled order."""
    directory.mkdir(parents=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rng = np.random.default_rng(1)
    slices = []
    for k in (rng.permutation(n) if shuffle else range(n)):
        ds = base.copy()
        pixels = rng.integers(0, 2000, (int(ds.Rows), int(ds.Columns))).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        ds.ImagePositionPatient = [-158.1, -179.0, -75.7 + gap * int(k)]
        ds.InstanceNumber = int(k) + 1
        ds.save_as(directory / f"IM{int(k) * 7 % n:04d}", enforce_file_format=True)
        slices.append((int(k), pixels))
    return [p.astype(np.int32) - 1024 for _, p in sorted(slices, key=lambda t: t[0])]


def test_dicom_series_is_sorted_by_position_and_rescaled(tmp_path):
    expected = _write_series(tmp_path / "series")
    item = read_volume(tmp_path / "series")
    assert item["image"].shape == (1, 5, 128, 128) and item["image"].dtype == np.int16
    np.testing.assert_array_equal(item["image"][0], np.stack(expected))
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    np.testing.assert_allclose(item["spacing"], [2.5, *map(float, ds.PixelSpacing)], rtol=1e-6)
    np.testing.assert_allclose(item["origin"], [158.1, 179.0, -75.7], atol=1e-6)  # LPS -> RAS: x and y negated


def test_bad_volumes_are_clear_bad_items(tmp_path):
    good = _save_nifti(tmp_path / "v.nii.gz", np.zeros((8, 8, 8), np.int16))
    (tmp_path / "cut.nii.gz").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (tmp_path / "garbage.dcm").write_bytes(b"\x00" * 300)
    (tmp_path / "empty.nii").write_bytes(b"")
    for name, reason in [("cut.nii.gz", "NIfTI"), ("garbage.dcm", "not a readable DICOM"),
                         ("empty.nii", "empty file"), ("missing.nii", "file not found")]:
        with pytest.raises(BadItemError, match=reason):
            read_volume(tmp_path / name)
    _write_series(tmp_path / "mixed", n=3)
    other = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    other.save_as(tmp_path / "mixed" / "odd.dcm")
    with pytest.raises(BadItemError, match="different sizes|same position"):
        read_volume(tmp_path / "mixed")


def test_csv_of_nifti_paths_keeps_patient_ids_and_string_labels(tmp_path):
    csv = write_volume_table(tmp_path, patients=4)
    cache = prebake.build(csv, tmp_path / "c", [prebake.steps.CropOrPad((16, 16, 16))],
                          source_options=SourceOptions(keep_columns=("patient_id", "age")), workers=0, progress=False)
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    assert cache.classes == ["healthy", "lesion"]
    assert cache.column("patient_id").dtype == np.dtype("<U4")
    assert list(cache.column("patient_id")) == [r[1] for r in rows]
    assert list(cache.column("age")) == [int(r[2]) for r in rows] and cache.column("age").dtype == np.int64
    assert [cache.classes[v] for v in cache.targets] == [r[3] for r in rows]
    assert cache.column("image").dtype == np.int16 and cache.column("image").shape[1:] == (1, 16, 16, 16)
    assert {"spacing", "origin", "affine"} <= set(cache.columns)


def test_csv_volume_without_shape_options_is_exact(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 60
    for i in range(2):
        _save_nifti(tmp_path / f"v{i}.nii.gz", data + i)
    (tmp_path / "t.csv").write_text("path,label\nv0.nii.gz,0\nv1.nii.gz,1\n")
    cache = prebake.build(tmp_path / "t.csv", tmp_path / "c", workers=0, progress=False)
    for i in range(2):
        np.testing.assert_array_equal(cache[i]["image"][0], _nib_values(tmp_path / f"v{i}.nii.gz"))


def test_folder_of_class_subfolders_with_nifti_and_a_dicom_series(tmp_path):
    root = tmp_path / "scans"
    (root / "healthy").mkdir(parents=True)
    (root / "sick").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "healthy" / "a.dcm")
    _write_series(root / "sick" / "patient7", n=1)
    sources = detect(root)
    src = sources[""]
    assert src.kind == "volumes" and src.keys() == ["healthy/a.dcm", "sick/patient7"]
    assert src.read(1)["image"].shape == (1, 1, 128, 128) and src.read(1)["label"] == 1


def test_sixteen_bit_png_round_trip_is_exact(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "xray" / "a"
    root.mkdir(parents=True)
    images = [rng.integers(0, 65536, (9, 11)).astype(np.uint16) for _ in range(3)]
    for i, a in enumerate(images):
        Image.fromarray(a).save(root / f"{i}.png")
    Image.fromarray(images[0]).save(root / "t.tif")
    cache = prebake.build(tmp_path / "xray", tmp_path / "c", workers=0, progress=False)
    assert cache.column("image").dtype == np.uint16 and cache.column("image").shape[1:] == (1, 9, 11)
    for i, a in enumerate(images):
        np.testing.assert_array_equal(cache[i]["image"][0], a)
    np.testing.assert_array_equal(cache[3]["image"][0], images[0])  # the TIFF
    rgb = prebake.build(tmp_path / "xray", tmp_path / "rgb", [prebake.steps.ToRGB8()], workers=0, progress=False)
    assert rgb.column("image").dtype == np.uint8 and rgb.column("image").shape[1:] == (3, 9, 11)
    np.testing.assert_array_equal(rgb[0]["image"][1], (images[0] >> 8).astype(np.uint8))
