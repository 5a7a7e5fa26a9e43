"""Which reader a volume file needs, by content, and the reading of nibabel's formats beyond NIfTI.

:func:`prebake.sources.volume_readers.read_volume` asks :func:`volume_reader`, which looks at the
file's first bytes (:mod:`.sniff`) and names

- ``"nifti"`` (``n+1``/``n+2`` magic), ``"dicom"`` (``DICM`` at byte 128, whatever the name:
  ``IM000001``, ``6154``), ``"npy"``: the readers of :mod:`.volume_readers`;
- one of :data:`NIBABEL_FORMATS` for MGH/MGZ, MINC-1 (NetCDF) and MINC-2 (HDF5), PAR/REC, AFNI
  HEAD/BRIK, Analyze 7.5 and NIfTI pairs (``.hdr`` + ``.img``) and ECAT 7, read by
  :func:`read_nibabel`;
- by name only where the content cannot say: the raw data half of a pair (``.img``, ``.REC``,
  ``.BRIK``: nibabel finds the header beside it) and DICOM without its preamble.

A file whose content is an image, audio or video is refused as such, never decoded as a
volume. nibabel finds formats by their suffix, so a file whose name lacks it (a ``.mgz``
renamed ``scan``) is read through a link named with the suffix (:func:`named_for_nibabel`); a
header/data pair must keep its names (``X.PAR`` + ``X.REC``), since that is how one half
finds the other.

Values and geometry follow :mod:`.volume_readers`: ``np.asanyarray(img.dataobj)`` (nibabel's
scaling applied: PAR/REC's display values, MINC's real values, AFNI's brick factors; the
reader then keeps them in the smallest dtype that holds them exactly), ``img.affine`` as the
affine (RAS+ mm). Axes are nibabel's: the three spatial axes in its order, a fourth (time,
echoes) as the channels; MINC names its axes, and its non-spatial one (``time``,
``vector_dimension``), wherever it lies, becomes the channels. CIFTI-2 (grayordinates, no
voxel grid) is refused per item.

``nan_fill`` (:func:`finite`): a float volume with NaN or infinite voxels (the background of a
registered scan) is a bad item naming the option, unless ``nan_fill`` gives the value to put
there; then they are filled and counted in the build's notes (:mod:`.notes`). A fill value the
volume's dtype cannot hold (``1e300`` in float32) is a bad item naming the dtype.

A NIfTI is read as its content says, gzip-compressed (magic ``1f 8b``) or not, whatever its name
(a gzipped ``.nii``, a plain ``.nii.gz``). Every file a volume is read from (:func:`pair_files`: a
header's data halves, ``X.BRIK.gz`` as well as ``X.BRIK``) is part of the item's identity.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadItemError, SourceError, opt
from .notes import note
from .sniff import DATA_HALVES, FAMILY, VOLUME_NAMES, family, name_family, sniff
from .volume_header import DEFAULT_MAX_VOXELS, check_declared, check_inflatable, is_gzip

#: The formats :func:`read_nibabel` reads, as a message names them.
NIBABEL_FORMATS = {"mgh": "MGH/MGZ", "minc1": "MINC-1", "minc2": "MINC-2", "parrec": "PAR/REC", "afni": "AFNI",
                   "analyze": "Analyze 7.5", "nifti-pair": "NIfTI pair", "ecat": "ECAT 7", "nifti1": "NIfTI-1",
                   "nifti2": "NIfTI-2"}
#: A header's suffix -> its data half's suffixes (an SPM ``.mat`` beside an Analyze file holds its affine).
_PAIRS = {".hdr": (".img", ".img.gz", ".mat"), ".hdr.gz": (".img.gz", ".img", ".mat"), ".par": (".rec",),
          ".head": (".brik", ".brik.gz")}
#: A data half's suffix -> its header's suffixes and format.
_HEADERS = {".img": ((".hdr", ".hdr.gz"), "analyze"), ".img.gz": ((".hdr.gz", ".hdr"), "analyze"),
            ".rec": ((".par",), "parrec"), ".brik": ((".head",), "afni"), ".brik.gz": ((".head",), "afni")}
_NIFTI = (".nii", ".nii.gz")


def _suffix(name: str, table: dict[str, Any]) -> str | None:
    """The longest key of ``table`` that ``name`` ends with (case-insensitive)."""
    lower = name.lower()
    return max((s for s in table if lower.endswith(s)), key=len, default=None)


def sibling(path: Path, suffixes: tuple[str, ...]) -> Path | None:
    """The file beside ``path`` with the same stem and one of ``suffixes``, each part in either case, if there is
    one."""
    stem = path.name[: -len(_suffix(path.name, {**_PAIRS, **_HEADERS}) or "")] or path.name
    for suffix in suffixes:
        for candidate in _case_variants(suffix):
            other = path.with_name(stem + candidate)
            if other.is_file():
                return other
    return None


def _case_variants(suffix: str) -> list[str]:
    """``.brik.gz`` -> ``.brik.gz``, ``.BRIK.gz``, ``.brik.GZ``, ``.BRIK.GZ``: each part lower or upper case, as
    exports mix them (nibabel's own AFNI test file is ``example4d+orig.BRIK.gz``)."""
    variants = [""]
    for part in suffix.lstrip(".").split("."):
        variants = [v + "." + p for v in variants for p in dict.fromkeys((part.lower(), part.upper()))]
    return variants


def pair_files(path: Path) -> list[Path]:
    """``path`` and the other files of its pair that exist (a header's data halves, a data half's header and the
    header's other halves): every file a volume item is read from, so each enters the item's identity."""
    header = _suffix(path.name, _PAIRS)
    if header is not None:
        return [path, *dict.fromkeys(p for s in _PAIRS[header] if (p := sibling(path, (s,))) is not None)]
    data = _suffix(path.name, _HEADERS)
    if data is not None and (head := sibling(path, _HEADERS[data][0])) is not None:
        return [head, *dict.fromkeys([path, *pair_files(head)[1:]])]
    return [path]


def is_volume_file(path: Path) -> bool:
    """Whether a folder lists ``path`` as a volume: by its name, a data half only without its header
    (so a pair is one item, and a lone half is refused by name, not left out), else by its content."""
    lower = path.name.lower()
    if lower.endswith(DATA_HALVES):
        data = _suffix(path.name, _HEADERS)
        return data is None or sibling(path, _HEADERS[data][0]) is None
    if lower.endswith(VOLUME_NAMES):
        return True
    # content decides only for names that claim nothing else (IM000001, 6154, scan.001)
    return name_family(lower) is None and family(path) == "volume"


def libraries_needed(paths: list[Path]) -> set[str]:
    """The readers that volumes at ``paths`` need (nibabel, pydicom), from their names and first bytes."""
    need = set()
    for p in paths:
        found = None if p.is_dir() or p.name.lower().endswith(DATA_HALVES) else sniff(p)
        if p.is_dir() or found == "dicom" or p.name.lower().endswith(".dcm"):
            need.add("pydicom")
        elif found != "npy" and not p.name.lower().endswith(".npy"):
            need.add("nibabel")
    return need


# -- dispatch -------------------------------------------------------------------------------------

def volume_reader(path: Path) -> str:
    """"nifti", "npy", "dicom", or the nibabel format (:data:`NIBABEL_FORMATS`, "nifti1"/"nifti2" for a NIfTI
    named otherwise) that the file at ``path`` needs; a file of another kind is a BadItemError saying which."""
    lower = path.name.lower()
    data = _suffix(path.name, _HEADERS)
    if data is not None:
        return _HEADERS[data][1]
    found = sniff(path)
    if found in ("nifti1", "nifti2") and lower.endswith(".nii.gz" if is_gzip(path) else ".nii"):
        return "nifti"  # else "nifti1"/"nifti2": read through a link named as its content is (a gzipped ".nii")
    if found in ("npy", "dicom") or found in NIBABEL_FORMATS:
        return str(found)
    if found is not None:
        what = FAMILY.get(found, "other")
        raise BadItemError(f"{path.name}: its content is {found} ({'an' if what[0] in 'aeiou' else 'a'} {what}), not a "
                           "volume; leave it out of the volumes, or give it a table of its own kind")
    return _reader_by_name(lower)


def _reader_by_name(lower: str) -> str:
    """The reader a name asks for, when the first bytes matched no format (a damaged or preamble-less file)."""
    if lower.endswith(_NIFTI):
        return "nifti"
    if lower.endswith(".npy"):
        return "npy"
    by_suffix = {".mgh": "mgh", ".mgz": "mgh", ".mnc": "minc1", ".par": "parrec", ".head": "afni", ".hdr": "analyze",
                 ".v": "ecat"}
    suffix = _suffix(lower, by_suffix)
    return by_suffix[suffix] if suffix is not None else "dicom"  # DICOM without its preamble has no mark


def finite(item: dict[str, Any], nan_fill: float | None) -> dict[str, Any]:
    """Refuse a volume with NaN or infinite voxels, or fill them with ``nan_fill`` and count them."""
    image = item["image"]
    if image.dtype.kind not in "fc":
        return item
    bad = ~np.isfinite(image)
    count = int(bad.sum())
    if count == 0:
        return item
    if nan_fill is None:
        raise BadItemError(f"{count:,} of its {image.size:,} voxels are NaN or infinite (the background of a "
                           f"registered scan?); fill them with {opt('nan_fill', 0)}, or leave the file out")
    with np.errstate(over="ignore"):  # a value the dtype cannot hold becomes inf: refused below, naming the dtype
        fill = np.asarray(nan_fill, dtype=np.float64).astype(image.dtype)
    if not np.isfinite(fill):
        held = f"at most {float(np.finfo(image.dtype).max):g} in magnitude"
        why = "is not a finite number; give a finite fill value, e.g. 0" if not np.isfinite(nan_fill) else \
            (f"is beyond what this volume's {image.dtype} voxels hold ({held}): filled, they would be infinite; give "
             "a fill value within that range")
        raise BadItemError(f"{opt('nan_fill', nan_fill)} {why}")
    filled = np.array(image, copy=True)
    filled[bad] = fill
    note(f"NaN or infinite voxels set to {nan_fill:g} ({opt('nan_fill')})", count)
    return {**item, "image": filled}


# -- nibabel's other formats ----------------------------------------------------------------------

def read_nibabel(path: Path, name: str, max_voxels: int = DEFAULT_MAX_VOXELS, fmt: str = "mgh"
                 ) -> tuple[np.ndarray, np.dtype, np.ndarray]:
    """A volume of one of :data:`NIBABEL_FORMATS` at ``path`` (named as nibabel needs: :func:`named_for_nibabel`;
    ``name``: the file's own name, for messages): its values ``(C, i, j, k)`` as nibabel scales them, their stored
    dtype, and the affine."""
    what = NIBABEL_FORMATS.get(fmt, fmt)
    data = _suffix(path.name, _HEADERS)
    if data is not None and sibling(path, _HEADERS[data][0]) is None:  # nibabel would only say "cannot work out"
        header = path.name[: -len(data)] + _HEADERS[data][0][0].upper().replace(".HDR", ".hdr")
        raise BadItemError(f"{name} is the data half of a header/data pair ({what}), and its header {header} "
                           f"is missing: put it beside {name} under that name")
    img = _load(path, fmt, what)
    shape, stored = tuple(int(n) for n in img.shape), _stored_dtype(img)
    check_declared(shape, stored, max_voxels, name)
    check_inflatable(math.prod(shape) * stored.itemsize, pair_files(path), name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # nibabel's PAR/REC reader leaves its file to GC
            values = np.asanyarray(img.dataobj)
    except FileNotFoundError as e:
        raise _missing_half(path, e, what) from None
    except Exception as e:  # noqa: BLE001 - nibabel raises ValueError, EOFError, OSError, zlib.error on short data
        raise BadItemError(f"cannot read the {what} voxels of {name}: {_short(e)}; the file is truncated or "
                           "damaged: copy or export it again") from None
    affine = getattr(img, "affine", None)
    if affine is None:
        raise BadItemError(f"{name} is a {type(img).__name__}, whose values lie on no voxel grid: not a volume; "
                           "leave the file out")
    return _channels_first(np.asarray(values), _channel_axes(img, values.ndim), name), stored, affine


def _load(path: Path, fmt: str, what: str) -> Any:
    nib = _nibabel()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nibabel's warnings about odd headers: the checks below decide
            if fmt == "ecat":
                from nibabel import ecat

                return ecat.load(path)
            return nib.load(path)
    except FileNotFoundError as e:
        raise _missing_half(path, e, what) from None
    except Exception as e:  # noqa: BLE001 - nibabel's loaders raise ImageFileError, HeaderDataError, OSError, ...
        raise BadItemError(f"cannot read {path.name} as {what}: {_short(e)}") from None


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise SourceError("reading volumes needs nibabel, which is not installed: pip install 'prebake[medical]'") \
            from None
    return nibabel


def _missing_half(path: Path, e: FileNotFoundError, what: str) -> BadItemError:
    missing = Path(e.filename).name if e.filename else "its other half"
    return BadItemError(f"{path.name} is one half of a header/data pair ({what}), and {missing} is missing: put "
                        f"it beside {path.name} under that name")


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def _stored_dtype(img: Any) -> np.dtype:
    try:
        return np.dtype(img.get_data_dtype())
    except TypeError:  # ECAT: one dtype per frame
        return np.dtype(img.get_data_dtype(0))


def _channel_axes(img: Any, ndim: int) -> list[int]:
    """The array axes that are not spatial: MINC names them, the other formats put them after the first three."""
    names = getattr(getattr(img.dataobj, "minc_file", None), "_dim_names", None)
    if names is not None and len(names) == ndim:
        return [i for i, n in enumerate(names) if not str(n).endswith("space")]
    return list(range(3, ndim))


def _channels_first(values: np.ndarray, channel_axes: list[int], name: str) -> np.ndarray:
    """(C, i, j, k): the non-spatial axis first (C = 1 without one); a 2-D image is one slice."""
    if len(channel_axes) > 1:
        values = np.moveaxis(values, channel_axes, range(-len(channel_axes), 0))
        values = values.reshape(*values.shape[: values.ndim - len(channel_axes)], -1)
        channel_axes = [values.ndim - 1]
    if channel_axes:
        values = np.moveaxis(values, channel_axes[0], 0)
    else:
        values = values[None]
    if values.ndim == 3:
        return values[..., None]
    if values.ndim != 4:
        raise BadItemError(f"{name} has {values.ndim - 1} spatial axes {values.shape[1:]}; volumes have 3")
    return values


@contextmanager
def named_for_nibabel(path: Path, fmt: str) -> Iterator[Path]:
    """``path``, or a link to it named with the suffix nibabel needs to open ``fmt`` (a pair keeps its names)."""
    needed = _needed_suffix(fmt, is_gzip(path))
    if needed is None or path.name.lower().endswith(needed) or _suffix(path.name, _HEADERS) is not None:
        yield path
        return
    if fmt in _PAIRED:
        raise BadItemError(f"{path.name} is a {NIBABEL_FORMATS[fmt]} header by its content, but nibabel finds its data "
                           f"half by name: name the pair X{needed} and its data file beside it under the same X")
    with tempfile.TemporaryDirectory(prefix="prebake-") as d:
        link = Path(d) / (path.name + needed)
        os.symlink(os.path.abspath(path), link)
        yield link


_PAIRED = ("parrec", "afni", "analyze", "nifti-pair")


def _needed_suffix(fmt: str, gz: bool) -> str | None:
    """The name ending nibabel opens ``fmt`` by (lower case), gzip-compressed or not."""
    plain = {"mgh": ".mgh", "minc1": ".mnc", "minc2": ".mnc", "parrec": ".par", "afni": ".head", "analyze": ".hdr",
             "nifti-pair": ".hdr", "ecat": ".v", "nifti1": ".nii", "nifti2": ".nii"}.get(fmt)
    if plain is None or not gz:
        return plain
    return ".mgz" if plain == ".mgh" else plain + ".gz"
