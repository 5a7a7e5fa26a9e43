"""Every volume format nibabel reads, on the files nibabel ships (MGZ, MINC-1, MINC-2, PAR/REC, AFNI, ECAT, NIfTI)
and on Analyze / SPM / NIfTI-pair / MGH files nibabel writes here: the values and affine prebake stores equal
nibabel's, in a volume folder, in a CSV table and renamed without a suffix; what is no volume is refused, naming
the file and why."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.trials.shipped import NIBABEL_READABLE, NIBABEL_REFUSED, copy_as, reference, written_volumes
from prebake.errors import BadItemError
from prebake.sources import SourceOptions, detect
from prebake.sources.volume_readers import read_volume

nib = pytest.importorskip("nibabel", reason="the volume formats are read through nibabel: pip install nibabel")
DATA = Path(nib.__file__).parent / "tests" / "data"


def _same(item: dict, ref: dict) -> None:
    assert item["image"].dtype.isnative
    np.testing.assert_array_equal(item["image"], ref["image"])
    np.testing.assert_allclose(item["affine"], ref["affine"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NIBABEL_READABLE)
def test_each_shipped_volume_equals_nibabel(name):
    _same(read_volume(DATA / name), reference(DATA / name, "volume"))


@pytest.mark.parametrize("name", [n for n in NIBABEL_READABLE if not n.endswith((".PAR", ".HEAD"))])
def test_a_single_file_format_renamed_without_its_suffix_is_read_by_content(tmp_path, name):
    copy = copy_as(DATA / name, tmp_path / "scan")
    _same(read_volume(copy), reference(DATA / name, "volume"))


def test_the_data_half_of_a_pair_reads_as_its_header(tmp_path):
    for header, data in (("phantom_varscale.PAR", "phantom_varscale.REC"), ("scaled+tlrc.HEAD", "scaled+tlrc.BRIK"),
                         ("example4d+orig.HEAD", "example4d+orig.BRIK.gz")):
        _same(read_volume(DATA / data), reference(DATA / header, "volume"))


def test_written_analyze_spm_nifti_pair_and_mgh_equal_nibabel(tmp_path):
    for path, _ in written_volumes(tmp_path):
        _same(read_volume(path), reference(path, "volume"))


def test_every_readable_format_in_one_csv_and_one_folder(tmp_path):
    names = ["test.mgz", "minc1_1_scale.mnc", "minc2_4d.mnc", "phantom_varscale.PAR", "scaled+tlrc.HEAD", "tinypet.v"]
    for k, name in enumerate(names):
        copy_as(DATA / name, tmp_path / "scans" / f"c{k % 2}" / name)
    written = [p.name for p, _ in written_volumes(tmp_path / "scans" / "c0")]
    (tmp_path / "t.csv").write_text("path,label\n" + "".join(f"{p.relative_to(tmp_path)},0\n"
                                                            for p in sorted((tmp_path / "scans").rglob("*"))
                                                            if p.name in names + written))
    table, folder = detect(tmp_path / "t.csv")[""], detect(tmp_path / "scans")[""]
    assert sorted(k.split("/")[-1] for k in folder.keys()) == sorted(names + written)
    for source in (table, folder):
        for i, key in enumerate(source.keys()):
            path = tmp_path / "scans" / key if source is folder else tmp_path / key.split(": ", 1)[1]
            original = DATA / path.name if path.name in names else path
            _same(source.read(i), reference(original, "volume"))


@pytest.mark.parametrize("name, why", sorted(NIBABEL_REFUSED.items()))
def test_what_is_no_readable_volume_is_a_bad_item_that_says_why(name, why):
    with pytest.raises(BadItemError, match=why.replace(".", r"\.")):
        read_volume(DATA / name)


def test_nan_fill_fills_the_registration_background_of_nibabels_file(tmp_path):
    path = DATA / "resampled_anat_moved.nii"
    values = np.asanyarray(nib.load(path).dataobj)
    table = tmp_path / "t.csv"
    table.write_text(f"path,label\n{path},1\n")
    item = detect(table, options=SourceOptions(nan_fill=0.0))[""].read(0)
    np.testing.assert_array_equal(item["image"][0], np.nan_to_num(values, nan=0.0))


def test_a_volume_folder_lists_a_pair_once_and_a_lone_half_to_refuse_it(tmp_path):
    shutil.copy(DATA / "phantom_varscale.PAR", tmp_path / "p.PAR")
    (tmp_path / "a").mkdir()
    for f in ("phantom_varscale.PAR", "phantom_varscale.REC", "phantom_EPI_asc_CLEAR_2_1.REC"):
        shutil.copy(DATA / f, tmp_path / "a" / f)
    source = detect(tmp_path, kind="volumes")[""]
    assert source.keys() == ["a/phantom_EPI_asc_CLEAR_2_1.REC", "a/phantom_varscale.PAR"]
    with pytest.raises(BadItemError, match=r"phantom_EPI_asc_CLEAR_2_1\.PAR is missing"):
        source.read(0)
    _same(source.read(1), reference(DATA / "phantom_varscale.PAR", "volume"))
