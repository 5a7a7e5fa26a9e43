"""An outsider's attacks on the volume readers: multi-file volumes rebuilt incrementally, lying DICOM and NIfTI
headers, windows and fill values a volume's dtype cannot hold, stray files in a series directory.

Each case is the values a fresh read gives, or a bad item whose reason names the file and the fix; never stale
voxels, a raw Python exception, or a gigabyte allocated for an 81-byte file. The files are real: nibabel's and
pydicom's shipped test data, copied and edited in ``tmp_path``.
"""

from __future__ import annotations

import copy
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.shipped import nibabel_data, pydicom_file
from prebake.errors import BadItemError, OptionError
from prebake.sources.by_content import Readers
from prebake.sources.notes import take_notes
from prebake.sources.volume_formats import pair_files
from prebake.sources.volume_readers import read_volume

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

_AFNI = "example4d+orig"


def _series(directory: Path, n: int = 3) -> Path:
    """``n`` slices of pydicom's CT_small, 5 mm apart, named as scanners export them (no suffix)."""
    base = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    directory.mkdir(parents=True)
    for k in range(n):
        ds = copy.deepcopy(base)
        ds.ImagePositionPatient = [0, 0, 5.0 * k]
        ds.save_as(directory / f"IM{k}")
    return directory


def _multi_file_volumes(d: Path) -> list[Path]:
    """A NIfTI pair (.hdr + .img), a DICOM series directory, and nibabel's AFNI HEAD with its data named .BRIK.gz."""
    d.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Pair(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4)), d / "pair.img")
    _series(d / "ser")
    for suffix in (".HEAD", ".BRIK.gz"):
        shutil.copy(nibabel_data() / f"{_AFNI}{suffix}", d / f"{_AFNI}{suffix}")
    return [d / "pair.hdr", d / "ser", d / f"{_AFNI}.HEAD"]


def _edit_data_files(d: Path) -> None:
    """Change one voxel in the data half of each volume, leaving every path the table names untouched."""
    img = bytearray((d / "pair.img").read_bytes())
    img[0] = 99
    (d / "pair.img").write_bytes(bytes(img))
    ds = pydicom.dcmread(d / "ser" / "IM1")
    pixels = ds.pixel_array.copy()
    pixels[0, 0] = 1234
    ds.PixelData = pixels.tobytes()
    ds.save_as(d / "ser" / "IM1")
    raw = bytearray(gzip.decompress((d / f"{_AFNI}.BRIK.gz").read_bytes()))
    raw[0:2] = (4321).to_bytes(2, "little")
    (d / f"{_AFNI}.BRIK.gz").write_bytes(gzip.compress(bytes(raw)))


def _images(cache) -> list[np.ndarray]:
    return [np.asarray(cache[i]["image"]) for i in range(len(cache))]


def _build(source, out: Path, steps=(), **kw):
    return prebake.build(source, out, list(steps), workers=0, progress=False, **kw)


def _reasons(cache) -> dict[str, str]:
    return {s["key"]: s["reason"] for s in cache.manifest["skipped"]}


# -- 1. every file a volume is read from is in its identity --------------------------------------------------------

def test_the_data_half_named_brik_gz_belongs_to_its_head(tmp_path):
    _multi_file_volumes(tmp_path)
    assert [p.name for p in pair_files(tmp_path / f"{_AFNI}.HEAD")] == [f"{_AFNI}.HEAD", f"{_AFNI}.BRIK.gz"]
    assert [p.name for p in pair_files(tmp_path / "pair.img")] == ["pair.hdr", "pair.img"]


@pytest.mark.parametrize("content_hash", [False, True], ids=["metadata", "content-hash"])
def test_a_csv_rebuild_bakes_volumes_whose_other_files_changed(tmp_path, content_hash):
    rows = _multi_file_volumes(tmp_path / "d")
    table = tmp_path / "t.csv"
    table.write_text("path\n" + "".join(f"{p.relative_to(tmp_path).as_posix()}\n" for p in rows))
    before = _images(_build(table, tmp_path / "out", content_hash=content_hash))
    _edit_data_files(tmp_path / "d")
    again = _images(_build(table, tmp_path / "out", content_hash=content_hash))
    fresh = _images(_build(table, tmp_path / "fresh", content_hash=content_hash))
    for key, old, new, want in zip(rows, before, again, fresh):
        assert not np.array_equal(old, want), f"{key.name}: the edit changed no voxel, the test proves nothing"
        np.testing.assert_array_equal(new, want, err_msg=f"{key.name}: the rebuild kept stale voxels")


@pytest.mark.parametrize("content_hash", [False, True], ids=["metadata", "content-hash"])
def test_a_volume_folder_rebuild_bakes_volumes_whose_other_files_changed(tmp_path, content_hash):
    _multi_file_volumes(tmp_path / "root" / "a")
    before = _images(_build(tmp_path / "root", tmp_path / "out", kind="volumes", content_hash=content_hash))
    _edit_data_files(tmp_path / "root" / "a")
    again = _images(_build(tmp_path / "root", tmp_path / "out", kind="volumes", content_hash=content_hash))
    fresh = _images(_build(tmp_path / "root", tmp_path / "fresh", kind="volumes", content_hash=content_hash))
    assert len(fresh) == 3 and all(not np.array_equal(a, b) for a, b in zip(before, fresh))
    for new, want in zip(again, fresh):
        np.testing.assert_array_equal(new, want)


# -- 2. a DICOM whose pixels do not fit its header -----------------------------------------------------------------

def test_a_dicom_whose_rows_is_too_small_is_one_bad_item(tmp_path):
    base = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    base.save_as(tmp_path / "good0.dcm")
    base.save_as(tmp_path / "good1.dcm")
    wrong = copy.deepcopy(base)
    wrong.Rows = 64  # the 128 x 128 pixel data then decodes as two 64 x 128 "frames"
    wrong.save_as(tmp_path / "rows_wrong.dcm")
    (tmp_path / "t.csv").write_text("path\ngood0.dcm\nrows_wrong.dcm\ngood1.dcm\n")
    with pytest.warns(UserWarning):  # pydicom's own word on the excess frame
        cache = _build(tmp_path / "t.csv", tmp_path / "out")
    assert len(cache) == 2 and cache[0]["image"].shape == (1, 1, 128, 128)
    (reason,) = _reasons(cache).values()
    assert "rows_wrong.dcm" in reason and "(2, 64, 128)" in reason and "Rows 64 x Columns 128" in reason


# -- 3. a window outside an integer volume's dtype -----------------------------------------------------------------

@pytest.mark.parametrize("low, high, dtype", [(300, 400, "uint16"), (-1000, -500, "int16")])
def test_a_window_outside_a_uint8_volume_sets_it_to_the_nearest_bound(tmp_path, low, high, dtype):
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.uint8).reshape(3, 4, 5), np.eye(4)), tmp_path / "u8.nii")
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 30, np.eye(4)), tmp_path / "i16.nii")
    (tmp_path / "t.csv").write_text("path\nu8.nii\ni16.nii\n")
    cache = _build(tmp_path / "t.csv", tmp_path / "out", [prebake.steps.Window(low, high)])
    assert len(cache) == 2 and not cache.manifest["skipped"]
    nearest = low if low > 255 else high
    assert (cache[0]["image"] == nearest).all()
    assert cache.manifest["columns"]["image"]["dtype"].lstrip("<|") in ("i2", "u2", "i4")  # holds it exactly
    assert any("window" in n["what"] and n["items"] == 1 for n in cache.manifest["notes"])


def test_a_window_inside_the_dtype_keeps_it():
    image = np.arange(60, dtype=np.uint8).reshape(1, 3, 4, 5)
    out = prebake.steps.Window(-1000, 20.5)({"image": image})["image"]
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 20


# -- 4. a series slice without Rows --------------------------------------------------------------------------------

def test_a_series_slice_without_rows_is_named(tmp_path):
    series = _series(tmp_path / "ser")
    ds = pydicom.dcmread(series / "IM1")
    del ds.Rows
    ds.save_as(series / "IM1")
    with pytest.raises(BadItemError, match=r"IM1 has no Rows in its header"):
        read_volume(series)


def test_pydicoms_series_without_pixel_data_is_named():
    series = pydicom_file("dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000")
    with pytest.raises(BadItemError, match=r"IM000000 has no Rows, Columns, PixelData"):
        read_volume(series)


# -- 5. a tiny gzip file declaring a huge volume -------------------------------------------------------------------

def test_a_tiny_nii_gz_declaring_a_gigabyte_is_refused_from_its_header(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((500, 500, 500))
    header.set_data_dtype("float64")
    header.set_sform(np.eye(4), 1)
    with gzip.open(tmp_path / "huge.nii.gz", "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 400)
    with pytest.raises(BadItemError, match=r"huge.nii.gz declares 1,000,000,352 bytes .* 1032:1"):
        read_volume(tmp_path / "huge.nii.gz")


def test_a_tiny_mgz_declaring_more_than_it_can_inflate_to_is_refused(tmp_path):
    nib.save(nib.MGHImage(np.zeros((200, 200, 200), np.float32), np.eye(4)), tmp_path / "big.mgh")
    (tmp_path / "big.mgz").write_bytes(gzip.compress((tmp_path / "big.mgh").read_bytes()[:2048]))
    with pytest.raises(BadItemError, match=r"big.mgz declares 32,000,000 bytes .* 1032:1"):
        read_volume(tmp_path / "big.mgz")


# -- 6. a NIfTI whose name lies about its compression --------------------------------------------------------------

def test_a_nifti_is_read_by_its_content_whatever_its_name_says_of_gzip(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "a.nii.gz")
    shutil.copy(tmp_path / "a.nii.gz", tmp_path / "gzipped.nii")
    (tmp_path / "plain.nii.gz").write_bytes(gzip.decompress((tmp_path / "a.nii.gz").read_bytes()))
    for name in ("gzipped.nii", "plain.nii.gz"):
        np.testing.assert_array_equal(read_volume(tmp_path / name)["image"], data[None])


# -- 7. stray files in a series directory --------------------------------------------------------------------------

def test_files_that_are_not_dicom_are_left_out_of_a_series_and_noted(tmp_path):
    series = _series(tmp_path / "ser")
    (series / "README.txt").write_text("exported by the scanner\n")
    (series / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(600))
    take_notes()
    item = read_volume(series)
    assert item["image"].shape == (1, 3, 128, 128)
    (what, (count, items)), = take_notes().items()
    assert count == 2 and items == 1 and "README.txt" in what and "Thumbs.db" in what


def test_a_damaged_dicom_in_a_series_still_refuses_it(tmp_path):
    series = _series(tmp_path / "ser")
    (series / "IM9").write_bytes((series / "IM0").read_bytes()[:200])  # the DICM mark, then cut off
    with pytest.raises(BadItemError, match="IM9"):
        read_volume(series)


# -- 8. a fill value the volume's dtype cannot hold ----------------------------------------------------------------

def test_a_nan_fill_beyond_float32_is_refused_naming_the_dtype(tmp_path):
    data = np.ones((3, 4, 5), np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "f32.nii")
    nib.save(nib.Nifti1Image(data.astype(np.float64), np.eye(4)), tmp_path / "f64.nii")
    with pytest.raises(BadItemError, match=r"nan_fill=1e\+300.* float32 voxels"):
        read_volume(tmp_path / "f32.nii", nan_fill=1e300)
    assert read_volume(tmp_path / "f64.nii", nan_fill=1e300)["image"][0, 0, 0, 0] == 1e300
    assert read_volume(tmp_path / "f32.nii", nan_fill=-7.5)["image"][0, 0, 0, 0] == -7.5


def test_a_nan_fill_that_is_not_finite_is_refused_as_an_option():
    with pytest.raises(OptionError, match="nan_fill=inf"):
        Readers(nan_fill=float("inf"))
