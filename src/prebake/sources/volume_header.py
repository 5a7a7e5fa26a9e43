"""What a volume's header declares, checked before any voxel is read or allocated.

An 8 KB header can declare 1200^3 voxels (3.3 GB to allocate before reading fails), an
axis of length 0 (an all-padding volume after a crop/pad), or geometry that places the
voxels nowhere (a singular or NaN affine; a NIfTI pixdim of 0 that nibabel quietly makes
1 mm). A gzip file cannot hold more than 1032 x its size (:func:`check_inflatable`): an 81-byte
``.nii.gz`` declaring 1 GB is refused before nibabel allocates it. Each is a
:class:`~prebake.errors.BadItemError` naming the file, the value and the fix, so a build skips
that item and says why; ``max_voxels`` raises the size limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadItemError, opt
from .sniff import read_head

#: The default of ``max_voxels``: 1024^3, above a whole-body CT (512 x 512 x 2000 is half of it), far below
#: what a lying header declares; raise it for larger scans.
DEFAULT_MAX_VOXELS = 2**30


def check_declared(shape: Sequence[int], dtype: Any, max_voxels: int, name: str) -> None:
    """A header's shape, before anything is read: every axis at least 1 long, at most ``max_voxels`` in all."""
    shape = tuple(int(n) for n in shape)
    dims = " x ".join(map(str, shape))
    if shape and min(shape) <= 0:
        axis = "a zero-length axis" if min(shape) == 0 else "a negative axis length"
        raise BadItemError(f"{name} declares a shape of {dims}, with {axis}: it holds no voxels; re-export the volume "
                           "or leave the file out")
    voxels = math.prod(shape)
    if voxels > max_voxels:
        dtype = np.dtype(dtype)
        raise BadItemError(f"{name} declares {dims} = {voxels:,} voxels of {dtype}, over the limit of {max_voxels:,} "
                           f"(reading it would take {voxels * dtype.itemsize:,} bytes); raise {opt('max_voxels')} to "
                           "bake it")


def check_affine(affine: Any, name: str, fix: str) -> np.ndarray:
    """``affine`` as float64, when it places every voxel somewhere: finite, and its three axes independent."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise BadItemError(f"{name}: the voxel-to-world affine is not 4 x 4 finite numbers ({_rows(a)}); {fix}, "
                           "or leave the file out")
    axes = a[:3, :3]
    lengths = np.sqrt((axes**2).sum(axis=0))
    det = float(np.linalg.det(axes))
    if lengths.min() == 0 or abs(det) <= 1e-6 * float(lengths.prod()):  # scale-free: 1e-6 of a box's volume
        raise BadItemError(f"{name}: the voxel-to-world affine is singular (axis lengths "
                           f"{', '.join(f'{x:g}' for x in lengths)} mm, determinant {det:.3g}): two voxel axes point "
                           f"the same way or one has no length, so the voxels have no place in space; {fix}, or "
                           "leave the file out")
    return a


def _rows(a: np.ndarray) -> str:
    return "; ".join(" ".join(f"{x:g}" for x in row) for row in np.atleast_2d(a)[:3])


def header_as_written(img: Any, path: Path) -> Any:
    """The header as the file holds it: nibabel's loader quietly makes a zero pixdim 1 and a negative one positive."""
    from nibabel import Nifti1Header
    from nibabel.openers import ImageOpener

    header = getattr(img, "nifti_header", img.header)  # a CIFTI-2 image keeps its NIfTI-2 header there
    if not isinstance(header, Nifti1Header):  # NIfTI-2 headers are Nifti1Header subclasses
        return header
    with ImageOpener(str(path)) as f:
        return type(header).from_fileobj(f, check=False)


def check_nifti_header(header: Any, path: Path, max_voxels: int, name: str | None = None) -> None:
    """Shape, size and pixdim of a NIfTI header (any nibabel header for the shape), before its voxels are read
    (``name``: the file's own name for messages, when ``path`` is a link named for nibabel)."""
    from nibabel import Nifti1Header

    name = name or path.name
    shape, dtype = header.get_data_shape(), header.get_data_dtype()
    check_declared(shape, dtype, max_voxels, name)
    need = int(header.get_data_offset()) + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if is_gzip(path):
        check_inflatable(need, [path], name)
    elif size < need:
        raise BadItemError(f"{name} is truncated: its header declares {need:,} bytes with the voxels, the file "
                           f"holds {size:,}; copy or export it again")
    if not isinstance(header, Nifti1Header) or int(header["sform_code"]) != 0:
        return  # the affine is the sform: pixdim does not enter it
    pixdim = [float(p) for p in header["pixdim"][1 : 1 + min(3, len(shape))]]
    for axis, (p, n) in enumerate(zip(pixdim, shape)):
        if n > 1 and not (math.isfinite(p) and p > 0):
            raise BadItemError(f"{name}: pixdim[{axis + 1}] is {p:g}, but a voxel size is a number > 0 mm, and "
                               "with no sform the affine is made from it; fix the header's pixdim or give it an "
                               "sform, or leave the file out")


#: deflate's largest expansion: one compressed byte never stands for more than 1032 (https://zlib.net/zlib_tech.html).
DEFLATE_MAX_RATIO = 1032


def is_gzip(path: Path) -> bool:
    """Whether the file at ``path`` is gzip-compressed, by its magic bytes (1f 8b), whatever its name says."""
    return read_head(path, 2) == b"\x1f\x8b"


def check_inflatable(need: int, files: Sequence[Path], name: str) -> None:
    """Refuse, before anything is allocated, ``need`` bytes declared by a volume whose ``files`` cannot hold them:
    a gzip file at most 1032 x its size, a plain one its size. A 100-byte .nii.gz declaring 500^3 float64 would
    otherwise allocate 1 GB before finding its stream short. Files that are not gzip are left to the other checks."""
    sizes = [(f.stat().st_size, is_gzip(f)) for f in files]
    if not any(gz for _, gz in sizes):
        return
    room = sum(size * (DEFLATE_MAX_RATIO if gz else 1) for size, gz in sizes)
    if need > room:
        held = " + ".join(f"{size:,} bytes{' of gzip' if gz else ''}" for size, gz in sizes)
        raise BadItemError(f"{name} declares {need:,} bytes with its voxels, but its data is {held}, which inflate "
                           f"to at most {room:,} (deflate expands at most {DEFLATE_MAX_RATIO}:1): its header is wrong "
                           "or the file is truncated; copy or export it again")


def check_npy_header(path: Path, max_voxels: int) -> None:
    """The shape a .npy header declares, and that the file holds its bytes, before ``np.load`` allocates them."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        major, _ = fmt.read_magic(f)
        read = {1: fmt.read_array_header_1_0, 2: fmt.read_array_header_2_0}.get(major)
        if read is None:
            return  # a newer version: np.load's own checks
        shape, _, dtype = read(f)
        start = f.tell()
    check_declared(shape, dtype, max_voxels, path.name)
    need, size = start + math.prod(shape) * dtype.itemsize, path.stat().st_size
    if size < need:
        raise BadItemError(f"{path.name} is truncated: its header declares {need:,} bytes with the values, the file "
                           f"holds {size:,}; save it again")


def check_dicom_declared(ds: Any, name: str, max_voxels: int, slices: int = 1) -> None:
    """Rows x Columns x frames x samples (x slices) against ``max_voxels``, before the pixel data is decoded."""
    pixels = any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not pixels or "Rows" not in ds or "Columns" not in ds:
        return  # nothing to decode, or no size to check: pixel_array says what is missing
    frames = _header_int(ds, "NumberOfFrames", name) * slices
    size = max(1, (_header_int(ds, "BitsAllocated", name, 16) + 7) // 8)
    kind = "i" if _header_int(ds, "PixelRepresentation", name, 0) else "u"
    dtype = np.dtype(f"{kind}{size}" if size in (1, 2, 4, 8) else f"V{size}")
    shape = (_header_int(ds, "SamplesPerPixel", name), frames, _header_int(ds, "Rows", name, 0),
             _header_int(ds, "Columns", name, 0))
    check_declared(shape, dtype, max_voxels, name)


def _header_int(ds: Any, tag: str, name: str, default: int = 1) -> int:
    """An integer DICOM header value (absent or empty: ``default``)."""
    value = ds.get(tag)
    try:
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        raise BadItemError(f"{name}: {tag} is {value!r}, not an integer; fix the header, or leave the file "
                           "out") from None
