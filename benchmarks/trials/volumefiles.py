"""Volume files whose headers say exactly what a test wants, valid or not: NIfTI, DICOM and .npy.

nibabel's and pydicom's writers fix what they can (a zero pixdim, a NaN spacing); these write
the header bytes as given, so the reader's checks meet what a broken scanner or converter wrote.
"""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

NAN, INF = float("nan"), float("inf")


def write_nifti(path: Path, shape: tuple[int, ...], *, dtype: Any = np.int16, pixdim: tuple[float, ...] = (2, 2, 2),
                qform: int = 1, sform: int = 0, srow: np.ndarray | None = None, data_bytes: int | None = None) -> Path:
    """A NIfTI-1 file whose header says exactly this, valid or not (nibabel's writer would fix it)."""
    import nibabel as nib

    h = nib.Nifti1Header()
    h["dim"][0] = len(shape)
    h["dim"][1 : 1 + len(shape)] = shape
    h.set_data_dtype(dtype)
    h["pixdim"][1 : 1 + len(pixdim)] = pixdim
    h["qform_code"], h["sform_code"], h["vox_offset"] = qform, sform, 352
    if srow is not None:
        h["srow_x"], h["srow_y"], h["srow_z"] = srow[0], srow[1], srow[2]
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize if data_bytes is None else data_bytes
    blob = h.binaryblock + b"\0" * 4 + np.arange(n, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob, 1) if path.name.endswith(".gz") else blob)
    return path


def write_dicom(path: Path, **header: Any) -> Path:
    """pydicom's CT_small.dcm (128 x 128 int16) with these header values."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(header.pop("_file", "CT_small.dcm")))
    for k, v in header.items():
        setattr(ds, k, v)
    ds.save_as(path)
    return path


def hostile_volume(d: Path, kind: str, rng: random.Random) -> tuple[Path, str]:
    """A volume file of ``kind`` and a fragment its bad-item reason must hold."""
    big = tuple(rng.randint(1100, 1400) for _ in range(3))
    bad = rng.choice([0.0, -rng.uniform(0.1, 3), NAN, INF])
    axis = rng.randrange(3)
    pixdim = tuple(bad if i == axis else 1.5 for i in range(3))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])[:3]
    if kind == "nan-affine":
        affine[rng.randrange(3), rng.randrange(4)] = rng.choice([NAN, INF, -INF])
    if kind == "singular-affine":
        affine[:, axis] = affine[:, (axis + 1) % 3] if rng.random() < 0.5 else 0.0
    made: dict[str, Callable[[], tuple[Path, str]]] = {
        "huge-nii": lambda: (write_nifti(d / "v.nii", big, data_bytes=8192), "over the limit"),
        "huge-nii-gz": lambda: (write_nifti(d / "v.nii.gz", big, data_bytes=8192), "over the limit"),
        "zero-axis": lambda: (write_nifti(d / "v.nii.gz", tuple(0 if i == axis else 5 for i in range(3))),
                              "zero-length axis"),
        "bad-pixdim": lambda: (write_nifti(d / "v.nii", (4, 5, 6), pixdim=pixdim, qform=rng.choice([0, 1])),
                               "pixdim"),
        "nan-affine": lambda: (write_nifti(d / "v.nii", (4, 5, 6), qform=0, sform=1, srow=affine), "affine"),
        "singular-affine": lambda: (write_nifti(d / "v.nii", (4, 5, 6), qform=0, sform=1, srow=affine),
                                    "singular"),
        "truncated-nii": lambda: (write_nifti(d / "v.nii", (40, 50, 60), data_bytes=1000), "truncated"),
        "huge-dicom": lambda: (write_dicom(d / "v.dcm", Rows=65535, Columns=65535, NumberOfFrames=1000),
                               "over the limit"),
        "huge-dicom-rle": lambda: (write_dicom(d / "v.dcm", _file="MR_small_RLE.dcm", Rows=65535, Columns=65535,
                                               NumberOfFrames=1000), "over the limit"),
        "zero-rows-dicom": lambda: (write_dicom(d / "v.dcm", Rows=0), "zero-length axis"),
        "zero-spacing-dicom": lambda: (write_dicom(d / "v.dcm", PixelSpacing=[bad, 0.66]), "PixelSpacing"),
        "collinear-dicom": lambda: (write_dicom(d / "v.dcm", ImageOrientationPatient=[1, 0, 0, 1, 0, 0]),
                                    "singular"),
        "huge-npy": lambda: (npy_header(d / "v.npy", big), "over the limit"),
        "zero-axis-npy": lambda: (npy_header(d / "v.npy", (4, 0, 6)), "zero-length axis"),
    }
    return made[kind]()


VOLUME_KINDS = ("huge-nii", "huge-nii-gz", "zero-axis", "bad-pixdim", "nan-affine", "singular-affine",
                "truncated-nii", "huge-dicom", "huge-dicom-rle", "zero-rows-dicom", "zero-spacing-dicom",
                "collinear-dicom", "huge-npy", "zero-axis-npy")


def npy_header(path: Path, shape: tuple[int, ...]) -> Path:
    """A .npy whose header declares ``shape`` int16, followed by 8 KB."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<i2", "fortran_order": False, "shape": shape})
    path.write_bytes(buf.getvalue() + b"\0" * 8192)  # the header writer writes the magic too
    return path
