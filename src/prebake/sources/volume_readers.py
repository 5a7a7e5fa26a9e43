"""Read one volume (NIfTI, DICOM series or file, ``.npy``) at full bit depth, with its geometry.

A volume item is::

    {"image":   (C, D, H, W) array, the voxels as the file holds them,
     "spacing": float64 (3,)   voxel size along the three spatial axes (mm),
     "origin":  float64 (3,)   world position of voxel (0, 0, 0) (RAS+ mm, nibabel's convention),
     "affine":  float64 (4, 4) voxel index -> world (RAS+ mm)}

so nothing the header said about the geometry is lost, and the bake-time transforms
(:mod:`prebake.steps.volume`) can reorient and resample it.

Axes. The three spatial axes are the file's voxel axes, in the file's order:

- NIfTI: nibabel's array axes ``(i, j, k)``; a 4-D file's fourth axis (time, echoes,
  modalities) becomes the channels. This is MONAI's channel-first layout too.
- DICOM series: ``(slice, row, column)``, slices sorted along the slice normal
  (``ImageOrientationPatient`` x ``ImagePositionPatient``); a single file is one slice
  or, multi-frame, one slice per frame; colour samples become channels.
- ``.npy``: a 3-D array is ``(D, H, W)`` with one channel, a 4-D one is ``(C, D, H, W)``;
  the geometry is unknown, so the spacing is 1 and the affine the identity.

Values. With no volume options the voxels are exactly nibabel's
(``np.asanyarray(img.dataobj)``, scaling applied) or pydicom's (``pixel_array`` with
RescaleSlope/RescaleIntercept applied) values, in native byte order, in the smallest
dtype that holds them exactly: unscaled data keeps its stored dtype (``int16`` stays
``int16``, big-endian ``>i2`` becomes ``<i2``); scaled data whose values are all integers
gets the stored dtype when it holds them, else the smallest of int16, int32, int64 (a CT
with intercept -1024 stays int16); other scaled data is float32 when float32 holds every
value exactly, else float64.

Every failure is a :class:`~prebake.errors.BadItemError` with the reason (a missing file,
a truncated ``.nii.gz``, slices of different shapes, a compressed DICOM without its
decoder), so a build records the item and goes on.

Headers are checked before any voxel is read: a zero-length axis, or more voxels than
``max_voxels`` (default :data:`DEFAULT_MAX_VOXELS`; an 8 KB header can declare 1200^3
voxels, 3.3 GB to allocate), is a bad item, and so is geometry that places the voxels
nowhere: a NaN, infinite or singular affine, a NIfTI pixdim that is zero, negative or NaN
where the affine is made from it (no sform), a DICOM PixelSpacing that is not > 0. nibabel and pydicom are optional
(``pip install 'prebake[medical]'``) and imported on first use.
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadItemError, SourceError
from .volume_header import (
    DEFAULT_MAX_VOXELS,
    check_affine,
    check_dicom_declared,
    check_nifti_header,
    check_npy_header,
    header_as_written,
)

#: File name endings read as volumes (lower case). A directory is a DICOM series.
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".npy")
_NIFTI = (".nii", ".nii.gz")
_INSTALL = "pip install 'prebake[medical]'"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_volume_path(path: str | os.PathLike[str]) -> bool:
    """True for a name ending in one of :data:`VOLUME_SUFFIXES` (a DICOM series directory is checked by the reader)."""
    return os.fspath(path).lower().rstrip("/").endswith(VOLUME_SUFFIXES)


def require(module: str) -> Any:
    """Import ``module`` (nibabel, pydicom, scipy), or a SourceError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SourceError(f"reading volumes needs {module}, which is not installed: {_INSTALL}") from None


def libraries_for(paths: list[str]) -> None:
    """Fail before any work when the volumes among ``paths`` need a library that is missing."""
    lower = [p.lower().rstrip("/") for p in paths]
    if any(p.endswith(_NIFTI) for p in lower):
        require("nibabel")
    if any(p.endswith(".dcm") or not p.endswith(VOLUME_SUFFIXES) for p in lower):  # files, series directories
        require("pydicom")


def read_volume(path: str | os.PathLike[str], max_voxels: int = DEFAULT_MAX_VOXELS) -> dict[str, Any]:
    """The volume item at ``path`` (see the module docstring); raises BadItemError with the reason."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return read_dicom_series(path, max_voxels)
    if not path.exists():
        raise BadItemError("file not found")
    if path.stat().st_size == 0:
        raise BadItemError("empty file (0 bytes)")
    if name.endswith(_NIFTI):
        return read_nifti(path, max_voxels)
    if name.endswith(".npy"):
        return read_npy_volume(path, max_voxels)
    return read_dicom_file(path, max_voxels)


def volume_item(image: np.ndarray, affine: np.ndarray, name: str = "the volume",
                fix: str = "fix the header's geometry") -> dict[str, Any]:
    """The item dict of a ``(C, D, H, W)`` image with its voxel -> world ``affine``, checked (:func:`check_affine`)."""
    affine = check_affine(affine, name, fix)
    return {"image": np.ascontiguousarray(image), "spacing": spacing_of(affine),
            "origin": affine[:3, 3].copy(), "affine": affine}


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes: the lengths of the affine's three axis columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


# -- values ---------------------------------------------------------------------------------------

_WIDER_INTS = (np.int16, np.int32, np.int64)


def exact_dtype(values: np.ndarray, stored: np.dtype) -> np.ndarray:
    """``values`` in the smallest dtype that holds them exactly (see the module docstring), native order."""
    stored = np.dtype(stored).newbyteorder("=")
    if values.dtype.kind != "f" or values.dtype.newbyteorder("=") == stored:  # not scaled: as stored
        return values.astype(values.dtype.newbyteorder("="), copy=False)
    finite = bool(np.isfinite(values).all())
    if finite and values.size and np.array_equal(values, np.round(values)):
        lo, hi = values.min(), values.max()
        fits = [t for t in ((stored,) if stored.kind in "iu" else ()) + _WIDER_INTS
                if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max]
        if fits:
            return values.astype(fits[0])
    if values.dtype.itemsize > 4 and np.array_equal(values.astype(np.float32), values, equal_nan=True):
        return values.astype(np.float32)
    return values.astype(values.dtype.newbyteorder("="), copy=False)


def _channels_first(a: np.ndarray, where: str) -> np.ndarray:
    """3-D -> (1, i, j, k); 4-D (i, j, k, t) -> (t, i, j, k); 2-D -> (1, i, j, 1)."""
    while a.ndim > 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return a[None, :, :, None]
    if a.ndim == 3:
        return a[None]
    if a.ndim == 4:
        return np.moveaxis(a, -1, 0)
    raise BadItemError(f"{where} has {a.ndim} dimensions {a.shape}; volumes have 3 (or 4: channels last)")


# -- NIfTI ----------------------------------------------------------------------------------------

def read_nifti(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> dict[str, Any]:
    nib = require("nibabel")
    try:
        with np.errstate(invalid="ignore"):  # a NaN pixdim: refused below, with its reason
            img = nib.load(path)
        header = header_as_written(img, path)
    except Exception as e:  # noqa: BLE001 - nibabel raises ImageFileError, OSError, zlib.error, ValueError
        raise BadItemError(f"cannot read NIfTI: {type(e).__name__}: {e}") from None
    check_nifti_header(header, path, max_voxels)
    try:
        values = np.asanyarray(img.dataobj)
        stored = img.get_data_dtype()
    except EOFError as e:
        raise BadItemError(f"truncated NIfTI file: {e}") from None
    except Exception as e:  # noqa: BLE001 - nibabel raises ImageFileError, OSError, zlib.error, ValueError
        raise BadItemError(f"cannot read NIfTI: {type(e).__name__}: {e}") from None
    if getattr(img, "affine", None) is None:  # CIFTI-2: grayordinates, not a voxel grid
        raise BadItemError(f"{path.name} is a {type(img).__name__}, whose values lie on no voxel grid (it has no "
                           "affine): not a volume; leave the file out")
    return volume_item(_channels_first(exact_dtype(values, stored), "the NIfTI image"), img.affine, path.name,
                       "fix the header's sform (or qform and pixdim)")


# -- .npy -----------------------------------------------------------------------------------------

def read_npy_volume(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> dict[str, Any]:
    try:
        check_npy_header(path, max_voxels)
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise BadItemError(f"cannot read .npy without pickle: {e}") from None
    if a.ndim not in (3, 4) or a.dtype.kind not in "biuf":
        raise BadItemError(f".npy volume has shape {a.shape} and dtype {a.dtype}; expected a numeric "
                           "(D, H, W) or (C, D, H, W) array")
    image = a[None] if a.ndim == 3 else a
    return volume_item(image.astype(image.dtype.newbyteorder("="), copy=False), np.eye(4))


# -- DICOM ----------------------------------------------------------------------------------------

_DICM_AT = 128


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm`` name, or the ``DICM`` magic after the 128-byte preamble."""
    if path.name.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(_DICM_AT)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def is_series_dir(path: Path) -> bool:
    """A directory that directly holds DICOM slice files."""
    try:
        return any(is_dicom_file(p) for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return False


def _dcmread(path: Path) -> Any:
    pydicom = require("pydicom")
    try:
        return pydicom.dcmread(path)
    except Exception as e:  # noqa: BLE001 - InvalidDicomError, EOFError, struct errors on garbage
        raise BadItemError(f"{path.name} is not a readable DICOM file: {type(e).__name__}: {e}") from None


def _rescaled_pixels(ds: Any, name: str) -> np.ndarray:
    """``pixel_array`` with RescaleSlope/RescaleIntercept applied, in the smallest exact dtype."""
    try:
        raw = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - missing decoders, short pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        hint = f" (transfer syntax {syntax.name})" if syntax is not None else ""
        raise BadItemError(f"{name}: cannot decode the pixel data{hint}: {e}") from None
    try:
        from pydicom.pixels import apply_rescale
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut as apply_rescale
    return exact_dtype(np.asarray(apply_rescale(raw, ds)), raw.dtype)


def _frames_first(a: np.ndarray, ds: Any) -> np.ndarray:
    """pixel_array -> (C, frames, rows, cols)."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if samples > 1:
        a = a if frames > 1 else a[None]  # (frames, rows, cols, samples)
        return np.moveaxis(a, -1, 0)
    return (a if frames > 1 else a[None])[None]


def _orientation(ds: Any) -> tuple[np.ndarray, np.ndarray] | None:
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    v = np.array([float(x) for x in iop])
    return v[:3], v[3:]


def _pixel_spacing(ds: Any, name: str) -> tuple[float, float]:
    tag = "PixelSpacing" if ds.get("PixelSpacing") else "ImagerPixelSpacing"
    ps = ds.get(tag)
    if ps is None or len(ps) != 2:
        return 1.0, 1.0
    dy, dx = float(ps[0]), float(ps[1])
    if not (math.isfinite(dy) and math.isfinite(dx) and dy > 0 and dx > 0):
        raise BadItemError(f"{name}: {tag} is {dy:g} {dx:g}, but pixel spacings are numbers > 0 mm; fix the "
                           "header, or leave the file out")
    return dy, dx


_DICOM_FIX = "fix the header's ImageOrientationPatient, ImagePositionPatient and PixelSpacing"


def _affine(ds: Any, slice_step: np.ndarray | None, name: str) -> np.ndarray:
    """Index (slice, row, col) -> RAS+ mm, from the first slice's header (LPS in DICOM)."""
    dy, dx = _pixel_spacing(ds, name)  # PixelSpacing is (between rows, between columns)
    orient = _orientation(ds)
    row_dir, col_dir = orient if orient is not None else (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    normal = np.cross(row_dir, col_dir)
    if slice_step is None:
        thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        slice_step = normal * float(thickness)
    ipp = ds.get("ImagePositionPatient")
    origin = np.array([float(x) for x in ipp]) if ipp is not None and len(ipp) == 3 else np.zeros(3)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = slice_step, col_dir * dy, row_dir * dx, origin
    return _LPS_TO_RAS @ lps


def read_dicom_file(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> dict[str, Any]:
    ds = _dcmread(path)
    check_dicom_declared(ds, path.name, max_voxels)
    affine = _affine(ds, None, path.name)
    image = _frames_first(_rescaled_pixels(ds, path.name), ds)
    return volume_item(image, affine, path.name, _DICOM_FIX)


def dicom_files(directory: Path) -> list[Path]:
    """The files of a series directory: visible regular files, DICOMDIR left out."""
    try:
        return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
                      and p.name.upper() != "DICOMDIR")
    except OSError as e:
        raise BadItemError(f"cannot list the series directory: {e.strerror or e}") from None


def read_dicom_series(directory: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> dict[str, Any]:
    """A directory of slices: sorted along the slice normal, stacked into (C, slices, rows, cols)."""
    files = dicom_files(directory)
    if not files:
        raise BadItemError("empty directory: a DICOM series directory holds one file per slice")
    slices = [_dcmread(f) for f in files]
    orient = _orientation(slices[0])
    if orient is None or any(s.get("ImagePositionPatient") is None for s in slices):
        raise BadItemError(f"{files[0].name} has no ImageOrientationPatient/ImagePositionPatient, so the slices "
                           "cannot be ordered; give each slice file its own CSV row instead")
    normal = np.cross(*orient)
    positions = np.array([[float(x) for x in s.ImagePositionPatient] for s in slices])
    order = np.argsort(positions @ normal, kind="stable")
    slices, positions = [slices[i] for i in order], positions[order]
    _check_series(slices, files, positions, normal)
    check_dicom_declared(slices[0], f"{directory.name}/ ({len(slices)} slices)", max_voxels, len(slices))
    step = (positions[-1] - positions[0]) / (len(slices) - 1) if len(slices) > 1 else None
    affine = _affine(slices[0], step, directory.name + "/")
    pixels = [_rescaled_pixels(s, f.name) for s, f in zip(slices, (files[i] for i in order))]
    dtype = np.result_type(*pixels)
    image = np.stack([_frames_first(p, s)[:, 0] for p, s in zip(pixels, slices)], axis=1).astype(dtype)
    return volume_item(image, affine, directory.name + "/", _DICOM_FIX)


def _check_series(slices: list[Any], files: list[Path], positions: np.ndarray, normal: np.ndarray) -> None:
    shapes = {(int(s.Rows), int(s.Columns)) for s in slices}
    if len(shapes) > 1:
        raise BadItemError(f"the slices have different sizes {sorted(shapes)}: not one series")
    if any(int(s.get("NumberOfFrames", 1) or 1) > 1 for s in slices):
        raise BadItemError("a series directory of multi-frame files; give each file its own CSV row")
    gaps = np.diff(positions @ normal)
    if len(gaps) and np.min(gaps) <= 1e-6 * max(1.0, float(np.max(np.abs(gaps)))):
        raise BadItemError(f"{len(slices)} slices but two lie at the same position: the directory holds more "
                           "than one series (or echo); give each series its own directory")
    if len(gaps) > 1 and (gaps.max() - gaps.min()) > 0.01 * gaps.mean():
        raise BadItemError(f"uneven slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm): slices are missing "
                           "from the series")


def identity_files(path: Path) -> list[Path]:
    """The files whose size and mtime stand for a volume's input: the file, or a series' slices."""
    if path.is_dir():
        try:
            return dicom_files(path)
        except BadItemError:
            return [path]
    return [path]
