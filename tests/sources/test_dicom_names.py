"""DICOM files named as real exports name them (``6154``, ``17106``, ``IM000001``: no ``.dcm``) are read as DICOM,
by the ``DICM`` mark at byte 128, in CSV tables and volume folders, with pydicom's values; and a folder of such
files is detected as volumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.trials.shipped import DICOM_UNNAMED, pydicom_file
from prebake.sources import detect
from prebake.sources.sniff import family, sniff

pydicom = pytest.importorskip("pydicom", reason="DICOM is read through pydicom: pip install pydicom")
from pydicom.pixels import apply_rescale  # noqa: E402


def _pydicom_values(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return np.asarray(apply_rescale(ds.pixel_array, ds))


@pytest.mark.parametrize("name", DICOM_UNNAMED)
def test_a_dicom_export_without_a_suffix_is_dicom_by_its_mark(name):
    path = pydicom_file(name)
    assert "." not in path.name and sniff(path) == "dicom" and family(path) == "volume"


def test_unnamed_exports_in_a_table_and_a_folder_equal_pydicom(tmp_path):
    for name in DICOM_UNNAMED:
        (tmp_path / "scans" / "x").mkdir(parents=True, exist_ok=True)
        shutil.copy(pydicom_file(name), tmp_path / "scans" / "x" / Path(name).name)
    (tmp_path / "t.csv").write_text("path,label\n" + "".join(f"{pydicom_file(n)},1\n" for n in DICOM_UNNAMED))
    assert detect(tmp_path / "scans")[""].kind == "volumes"  # the folder's kind, told by content
    for source in (detect(tmp_path / "t.csv")[""], detect(tmp_path / "scans")[""]):
        assert len(source.keys()) == len(DICOM_UNNAMED)
        for i, key in enumerate(source.keys()):
            name = next(n for n in DICOM_UNNAMED if key.endswith(Path(n).name))
            item = source.read(i)
            np.testing.assert_array_equal(item["image"][0, 0], _pydicom_values(pydicom_file(name)))


def test_a_dicom_named_like_an_image_is_still_dicom_in_a_table(tmp_path):
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ct.png")
    (tmp_path / "t.csv").write_text("path,label\nct.png,1\n")
    item = detect(tmp_path / "t.csv")[""].read(0)
    np.testing.assert_array_equal(item["image"][0, 0], _pydicom_values(pydicom_file("CT_small.dcm")))
