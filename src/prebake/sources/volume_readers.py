"""Read one volume (NIfTI, DICOM series or file, ``.npy``) at full bit depth, with its geometry.

A volume item is::

    {"image":       (C, D, H, W) array, the voxels as the file holds them,
     "spacing":     float64 (3,)   voxel size along the three spatial axes (mm),
     "origin":      float64 (3,)   world position of voxel (0, 0, 0) (RAS+ mm, nibabel's convention),
     "affine":      float64 (4, 4) voxel index -> world (RAS+ mm),
     "orientation": str            the world direction of each voxel axis, e.g. "RAS" (nibabel's aff2axcodes)}

so nothing the header said about the geometry is lost, and the bake-time transforms
(:mod:`prebake.steps.volume`) can reorient and resample it. The coordinate convention (RAS+; DICOM's
LPS converted), how DICOM slices and frames are placed and what is refused: :mod:`.volume_geometry`.

Axes. The three spatial axes are the file's voxel axes, in the file's order:

- NIfTI: nibabel's array axes ``(i, j, k)``; a 4-D file's fourth axis (time, echoes,
  modalities) becomes the channels. This is MONAI's channel-first layout too.
- DICOM series: ``(slice, row, column)``, slices sorted along the slice normal
  (``ImageOrientationPatient`` x ``ImagePositionPatient``); a single file is one slice
  or, multi-frame, one slice per frame, sorted along the normal by the frames' own positions
  (per-frame functional groups or GridFrameOffsetVector); colour samples become channels.
- ``.npy``: a 3-D array is ``(D, H, W)`` with one channel, a 4-D one is ``(C, D, H, W)``;
  the geometry is unknown, so the spacing is 1 and the affine the identity.

Values. With no volume options the voxels are exactly nibabel's
(``np.asanyarray(img.dataobj)``, scaling applied) or pydicom's (``pixel_array`` with
RescaleSlope/RescaleIntercept applied; an enhanced file's per-frame or shared
PixelValueTransformationSequence likewise) values, in native byte order, in the smallest
dtype that holds them exactly: unscaled data keeps its stored dtype (``int16`` stays
``int16``, big-endian ``>i2`` becomes ``<i2``); scaled data whose values are all integers
gets the stored dtype when it holds them, else the smallest of int16, int32, int64 (a CT
with intercept -1024 stays int16); other scaled data is float32 when float32 holds every
value exactly, else float64. An RT dose grid's DoseGridScaling is applied: its voxels are the dose in
DoseUnits (Gy, or relative), float32 (the nearest float32 of stored x scaling: a relative error below
6e-8, far under any dose calculation's), as GDCM and SimpleITK read it.

Every failure is a :class:`~prebake.errors.BadItemError` with the reason (a missing file,
a truncated ``.nii.gz``, slices of different shapes, a compressed DICOM without its
decoder), so a build records the item and goes on.

Headers are checked before any voxel is read: a zero-length axis, or more voxels than
``max_voxels`` (default :data:`DEFAULT_MAX_VOXELS`; an 8 KB header can declare 1200^3
voxels, 3.3 GB to allocate), is a bad item, and so is geometry that places the voxels
nowhere: a NaN, infinite or singular affine, a NIfTI pixdim that is zero, negative or NaN
where the affine is made from it (no sform), a DICOM PixelSpacing that is not > 0; a gzip file declaring more bytes
than deflate can expand it to (1032:1, :func:`.volume_header.check_inflatable`) is refused from its header too.
After decoding, DICOM pixels whose shape is not the header's Rows x Columns (x NumberOfFrames) are refused.
In a series directory, a file that is not DICOM (no ``DICM`` mark, no ``.dcm`` name, unreadable by
pydicom: a README.txt, a Thumbs.db) is left out and counted in the build's notes. nibabel and pydicom are optional
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
from .notes import note
from .volume_formats import finite, named_for_nibabel, pair_files, read_nibabel, volume_reader
from .volume_geometry import (  # spacing_of: re-exported, the steps import it from here
    DICOM_FIX,
    file_geometry,
    frame_planes,
    group_value,
    stack_affine,
    volume_item,
)
from .volume_geometry import spacing_of as spacing_of
from .volume_header import (
    DEFAULT_MAX_VOXELS,
    check_dicom_declared,
    check_nifti_header,
    check_npy_header,
    header_as_written,
)

#: File name endings read as volumes (lower case). A directory is a DICOM series.
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".npy")
_NIFTI = (".nii", ".nii.gz")
_INSTALL = "pip install 'prebake[medical]'"


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


def read_volume(path: str | os.PathLike[str], max_voxels: int = DEFAULT_MAX_VOXELS,
                nan_fill: float | None = None) -> dict[str, Any]:
    """The volume item at ``path`` (see the module docstring); raises BadItemError with the reason.

    The reader is chosen by the file's content, then its name (:func:`.volume_formats.volume_reader`); NaN
    voxels are refused, or filled with ``nan_fill`` (:func:`.volume_formats.finite`)."""
    path = Path(path)
    if path.is_dir():
        return finite(read_dicom_series(path, max_voxels), nan_fill)
    if not path.exists():
        raise BadItemError("file not found")
    if path.stat().st_size == 0:
        raise BadItemError("empty file (0 bytes)")
    return finite(_read_file(path, max_voxels, volume_reader(path)), nan_fill)


def _read_file(path: Path, max_voxels: int, reader: str) -> dict[str, Any]:
    if reader == "npy":
        return read_npy_volume(path, max_voxels)
    if reader == "dicom":
        return read_dicom_file(path, max_voxels)
    with named_for_nibabel(path, reader) as named:  # a link with the suffix nibabel needs, if the name lacks it
        if reader in ("nifti", "nifti1", "nifti2"):
            return read_nifti(named, max_voxels, path.name)
        values, stored, affine = read_nibabel(named, path.name, max_voxels, reader)
    return volume_item(exact_dtype(values, stored), affine, path.name, "fix the header's geometry")


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

def read_nifti(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS, name: str | None = None) -> dict[str, Any]:
    """A NIfTI file at ``path`` (``name``: the file's own name, for messages, when ``path`` is a link named for
    nibabel)."""
    nib = require("nibabel")
    name = name or path.name
    try:
        with np.errstate(invalid="ignore"):  # a NaN pixdim: refused below, with its reason
            img = nib.load(path)
        header = header_as_written(img, path)
    except Exception as e:  # noqa: BLE001 - nibabel raises ImageFileError, OSError, zlib.error, ValueError
        raise BadItemError(f"cannot read NIfTI: {type(e).__name__}: {e}") from None
    check_nifti_header(header, path, max_voxels, name)
    try:
        values = np.asanyarray(img.dataobj)
        stored = img.get_data_dtype()
    except EOFError as e:
        raise BadItemError(f"truncated NIfTI file: {e}") from None
    except Exception as e:  # noqa: BLE001 - nibabel raises ImageFileError, OSError, zlib.error, ValueError
        raise BadItemError(f"cannot read NIfTI: {type(e).__name__}: {e}") from None
    if getattr(img, "affine", None) is None:  # CIFTI-2: grayordinates, not a voxel grid
        raise BadItemError(f"{name} is a {type(img).__name__}, whose values lie on no voxel grid (it has no "
                           "affine): not a volume; leave the file out")
    return volume_item(_channels_first(exact_dtype(values, stored), "the NIfTI image"), img.affine, name,
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
    """``pixel_array`` with the modality rescale (or an enhanced file's per-frame one) and an RT dose grid's
    DoseGridScaling applied, in the smallest exact dtype (the dose: float32)."""
    try:
        raw = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - missing decoders, short pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        hint = f" (transfer syntax {syntax.name})" if syntax is not None else ""
        raise BadItemError(f"{name}: cannot decode the pixel data{hint}: {e}") from None
    _check_pixel_shape(ds, raw, name)
    try:
        from pydicom.pixels import apply_rescale
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut as apply_rescale  # type: ignore[no-redef]
    per_frame = _frame_rescale(ds, raw, name)
    values = per_frame if per_frame is not None else np.asarray(apply_rescale(raw, ds))
    scaling = ds.get("DoseGridScaling")
    if scaling is None or scaling == "":
        return exact_dtype(values, raw.dtype)
    try:
        dose = float(scaling)
    except (TypeError, ValueError):
        dose = math.nan
    if not (math.isfinite(dose) and dose > 0):
        raise BadItemError(f"{name}: DoseGridScaling is {scaling!r}, but it is a number > 0 (the dose of one "
                           "stored unit); fix the header, or leave the file out")
    return (values.astype(np.float64) * dose).astype(np.float32)


def _check_pixel_shape(ds: Any, raw: np.ndarray, name: str) -> None:
    """The decoded pixels hold what the header declares: a Rows too small makes pydicom return the surplus as extra
    "frames", which would stack into an item of the wrong rank."""
    frames, samples = _frames(ds, name), int(ds.get("SamplesPerPixel", 1) or 1)
    declared = (*((frames,) if frames > 1 else ()), int(ds.Rows), int(ds.Columns), *((samples,) if samples > 1 else ()))
    if raw.shape != declared:
        said = f"Rows {int(ds.Rows)} x Columns {int(ds.Columns)}"
        said += (f" x NumberOfFrames {frames}" if frames > 1 else "") + (f" x SamplesPerPixel {samples}" if samples > 1
                                                                          else "")
        raise BadItemError(f"{name}: its pixel data decodes to shape {raw.shape}, but the header declares {said} "
                           f"{declared}: the header's size is wrong (or the pixel data belongs to another image); "
                           "fix Rows/Columns/NumberOfFrames, or leave the file out")


def _frame_rescale(ds: Any, raw: np.ndarray, name: str) -> np.ndarray | None:
    """An enhanced file's PixelValueTransformationSequence applied frame by frame (None: it has none)."""
    if "RescaleSlope" in ds or int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return None
    frames = _frames(ds, name)
    pairs = [(group_value(ds, i, "PixelValueTransformationSequence", "RescaleSlope"),
              group_value(ds, i, "PixelValueTransformationSequence", "RescaleIntercept")) for i in range(frames)]
    if all(s is None and b is None for s, b in pairs):
        return None
    try:
        slope = np.array([1.0 if s is None else float(s) for s, _ in pairs])
        intercept = np.array([0.0 if b is None else float(b) for _, b in pairs])
    except (TypeError, ValueError):
        raise BadItemError(f"{name}: a RescaleSlope or RescaleIntercept of its functional groups is not a number; "
                           "fix the header, or leave the file out") from None
    shape = (frames, 1, 1) if frames > 1 else ()
    return raw.astype(np.float64) * slope.reshape(shape) + intercept.reshape(shape)


def _frames(ds: Any, name: str) -> int:
    value = ds.get("NumberOfFrames")
    try:
        return 1 if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        raise BadItemError(f"{name}: NumberOfFrames is {value!r}, not an integer; fix the header, or leave the "
                           "file out") from None


def _frames_first(a: np.ndarray, ds: Any) -> np.ndarray:
    """pixel_array -> (C, frames, rows, cols)."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if samples > 1:
        a = a if frames > 1 else a[None]  # (frames, rows, cols, samples)
        return np.moveaxis(a, -1, 0)
    return (a if frames > 1 else a[None])[None]


def read_dicom_file(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> dict[str, Any]:
    """One file: a slice, or a multi-frame stack sorted along the normal by the frames' own positions."""
    ds = _dcmread(path)
    check_dicom_declared(ds, path.name, max_voxels)
    order, affine = file_geometry(ds, _frames(ds, path.name), path.name)  # before decoding: a refusal is cheap
    image = _frames_first(_rescaled_pixels(ds, path.name), ds)
    return volume_item(image if order is None else image[:, order], affine, path.name, DICOM_FIX)


def dicom_files(directory: Path) -> list[Path]:
    """The files of a series directory: visible regular files, DICOMDIR left out."""
    try:
        return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
                      and p.name.upper() != "DICOMDIR")
    except OSError as e:
        raise BadItemError(f"cannot list the series directory: {e.strerror or e}") from None


_SERIES_FIX = "give each series (and each orientation) its own directory, or leave the odd files out"


def read_dicom_series(directory: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> dict[str, Any]:
    """A directory of slices: sorted along the slice normal, stacked into (C, slices, rows, cols)."""
    files = dicom_files(directory)
    if not files:
        raise BadItemError("empty directory: a DICOM series directory holds one file per slice")
    slices, files = _read_slices(files)
    where = _series_name(directory, slices[0])
    _check_series(slices, files, where)
    planes = [frame_planes(s, 1, f.name) for s, f in zip(slices, files)]
    unplaced = [f.name for p, f in zip(planes, files) if p is None or p[0].position is None]
    if unplaced:
        raise BadItemError(f"{where}: {', '.join(unplaced[:3])} has no ImageOrientationPatient/ImagePositionPatient, "
                           "so the slices cannot be ordered; give each slice file its own CSV row instead")
    order, affine = stack_affine([p[0] for p in planes if p is not None], [f.name for f in files], where, _SERIES_FIX)
    _check_one_series(slices, files, where)
    slices, files = [slices[i] for i in order], [files[i] for i in order]
    check_dicom_declared(slices[0], f"{where} ({len(slices)} slices)", max_voxels, len(slices))
    pixels = [_rescaled_pixels(s, f.name) for s, f in zip(slices, files)]
    dtype = np.result_type(*pixels)
    image = np.stack([_frames_first(p, s)[:, 0] for p, s in zip(pixels, slices)], axis=1).astype(dtype)
    return volume_item(image, affine, where, DICOM_FIX)


def _read_slices(files: list[Path]) -> tuple[list[Any], list[Path]]:
    """The datasets of a series directory's DICOM files, and those files. A file pydicom cannot read that has no
    DICOM mark (no ``DICM`` preamble, no ``.dcm`` name: a README.txt, a Thumbs.db) is left out and noted; a
    DICOM-looking one that cannot be read is a damaged slice, and refuses the series."""
    slices, kept, others = [], [], []
    for f in files:
        try:
            slices.append(_dcmread(f))
            kept.append(f)
        except BadItemError:
            if is_dicom_file(f):
                raise
            others.append(f.name)
    if others:
        shown = ", ".join(sorted(set(others))[:3]) + (", ..." if len(set(others)) > 3 else "")
        note(f"files that are not DICOM left out of DICOM series directories ({shown}); move them out of the series "
             "directories to silence this", len(others))
    if not slices:
        raise BadItemError(f"none of its {len(files)} files is DICOM ({', '.join(others[:3])}): a DICOM series "
                           "directory holds one file per slice")
    return slices, kept


def _series_name(directory: Path, ds: Any) -> str:
    """``CT2N/ (series 2 'SCOUT')``: the directory, with the series number and description its files give."""
    number, text = ds.get("SeriesNumber"), ds.get("SeriesDescription")
    said = " ".join(x for x in (f"{number}" if number not in (None, "") else "", repr(str(text)) if text else "") if x)
    return f"{directory.name}/" + (f" (series {said})" if said else "")


def _check_series(slices: list[Any], files: list[Path], where: str) -> None:
    """One size for all slices, each a single frame; a file with no image (no Rows, Columns or pixel data: a report
    or a DICOMDIR's record) is named."""
    for s, f in zip(slices, files):
        missing = [t for t in ("Rows", "Columns", "PixelData") if t not in s
                   and not (t == "PixelData" and ("FloatPixelData" in s or "DoubleFloatPixelData" in s))]
        if missing:
            raise BadItemError(f"{where}: {f.name} has no {', '.join(missing)} in its header, so it is not an image "
                               "slice; fix its header, or move it out of the series directory")
    shapes = {(_header_size(s, "Rows", f.name), _header_size(s, "Columns", f.name)) for s, f in zip(slices, files)}
    if len(shapes) > 1:
        raise BadItemError(f"{where}: the slices have different sizes {sorted(shapes)}: not one series; "
                           f"{_SERIES_FIX}")
    if any(int(s.get("NumberOfFrames", 1) or 1) > 1 for s in slices):
        raise BadItemError(f"{where}: a series directory of multi-frame files; give each file its own CSV row")


def _header_size(ds: Any, tag: str, name: str) -> int:
    value = ds.get(tag)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadItemError(f"{name}: {tag} is {value!r}, not an integer; fix the header, or leave the file out") \
            from None


def _check_one_series(slices: list[Any], files: list[Path], where: str) -> None:
    """Slices of two series (SeriesInstanceUID) are not stacked even when they happen to interleave evenly."""
    by_uid: dict[str, list[str]] = {}
    for s, f in zip(slices, files):
        by_uid.setdefault(str(s.get("SeriesInstanceUID", "") or ""), []).append(f.name)
    by_uid.pop("", None)
    if len(by_uid) > 1:
        shown = "; ".join(f"...{uid[-12:]} in {', '.join(names[:3])}" for uid, names in list(by_uid.items())[:4])
        raise BadItemError(f"{where}: the files belong to {len(by_uid)} series (SeriesInstanceUID {shown}); "
                           f"{_SERIES_FIX}")


def identity_files(path: Path) -> list[Path]:
    """The files whose size and mtime stand for a volume's input: the file (with the other half of a
    header/data pair), or a series' slices."""
    if path.is_dir():
        try:
            return dicom_files(path)
        except BadItemError:
            return [path]
    return pair_files(path)
