"""Where a volume's voxels lie in the world: the geometry columns, and the checks that keep them true.

Coordinate convention: **RAS+ millimetres** (nibabel's, and MONAI's default): world x grows to the
patient's Right, y to Anterior, z to Superior. NIfTI affines are RAS+ already; DICOM tags are LPS+
(x to the Left, y to Posterior), so a DICOM position (x, y, z) is stored as (-x, -y, z). Every volume
item carries, beside its ``image`` (C, D, H, W):

- ``affine``: float64 (4, 4), voxel index (d, h, w) -> world RAS+ mm;
- ``spacing``: float64 (3,), the voxel size along each voxel axis (the lengths of the affine's columns);
- ``origin``: float64 (3,), the world position of voxel (0, 0, 0) (the affine's last column);
- ``orientation``: three letters, the world direction each voxel axis points to, nibabel's
  ``aff2axcodes`` of the affine (``"RAS"``; an axial DICOM series, stored (slice, row, column), is ``"SPL"``).

A DICOM stack (a series directory, or a multi-frame file's frames) becomes one volume only when its
slices can share one affine. Refused, as a bad item naming the files (or frames) and values:

- slices whose ImageOrientationPatient differ by more than :data:`ORIENTATION_TOLERANCE` in a direction
  cosine (a scout or reformat in the folder), or whose PixelSpacing differ by more than
  :data:`SPACING_TOLERANCE` (relative);
- two slices at one position along the slice normal (two series or echoes in one folder);
- slices off an even grid: the affine steps evenly from the first slice to the last, and a slice more
  than :data:`SLICE_TOLERANCE` of that step away from where it puts it is refused with the gap (a
  missing slice puts its neighbours about half a step off, so it is always caught).

A multi-frame file's frame positions come from its per-frame functional groups (PlanePositionSequence,
enhanced CT/MR), else its GridFrameOffsetVector (RT dose: offsets along the normal from the first
frame, or z coordinates when the first equals ImagePositionPatient's z on an axial grid), else its
SpacingBetweenSlices; with patient orientation and none of these, the frame spacing is unknown, and
the file is refused rather than stored 1 mm apart. A single slice's third spacing is its
SpacingBetweenSlices or SliceThickness, else 1 mm: only index 0 exists along that axis, so it places
no voxel. A file without ImageOrientationPatient (a secondary capture, an ultrasound cine) has no
patient geometry: its axes are taken as an axial image's (``"SPL"``), PixelSpacing (else 1 mm) in plane
and 1 mm between frames, origin 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadItemError
from .volume_header import check_affine

#: The most a direction cosine of ImageOrientationPatient may differ between the slices of one volume.
ORIENTATION_TOLERANCE = 1e-3
#: The most, relative, PixelSpacing may differ between the slices of one volume.
SPACING_TOLERANCE = 1e-3
#: The most a slice may lie from where the volume's affine puts it, as a fraction of the slice step.
SLICE_TOLERANCE = 0.1
#: Two slices closer than this (mm) along the normal lie at one position.
SAME_POSITION_MM = 1e-3

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_LABELS = ("LR", "PA", "IS")  # (negative end, positive end) of world x, y, z
DICOM_FIX = "fix the header's ImageOrientationPatient, ImagePositionPatient and PixelSpacing"


def volume_item(image: np.ndarray, affine: np.ndarray, name: str = "the volume",
                fix: str = "fix the header's geometry") -> dict[str, Any]:
    """The item dict of a ``(C, D, H, W)`` image with its voxel -> world ``affine``, checked (:func:`check_affine`)."""
    if 0 in image.shape:
        raise BadItemError(f"{name} holds an image of shape {image.shape}, with a zero-length axis: no voxels; "
                           "re-export the volume or leave the file out")
    affine = check_affine(affine, name, fix)
    return {"image": np.ascontiguousarray(image), "spacing": spacing_of(affine),
            "origin": affine[:3, 3].copy(), "affine": affine, "orientation": np.str_(axcodes_of(affine))}


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes: the lengths of the affine's three axis columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def axcodes_of(affine: np.ndarray) -> str:
    """The world direction each voxel axis points to, as nibabel's ``aff2axcodes`` says (e.g. ``"RAS"``).

    nibabel's ``io_orientation``: the nearest rotation to the affine's directions (its polar part), each voxel
    axis given the world axis it moves along most, strongest axes first, each world axis used once.
    """
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    p, _, qt = np.linalg.svd(axes / spacing_of(affine))
    r = p @ qt
    codes = [""] * 3
    for voxel_axis in np.argsort(np.min(-(r**2), axis=0), kind="stable"):
        world = int(np.argmax(np.abs(r[:, voxel_axis])))
        codes[voxel_axis] = _LABELS[world][int(r[world, voxel_axis] > 0)]
        r[world, :] = 0
    return "".join(codes)


# -- DICOM planes ----------------------------------------------------------------------------------

@dataclass
class Plane:
    """One DICOM slice or frame as its header places it, in LPS mm: pixel (r, c) lies at
    ``position + c * dx * row + r * dy * col``."""

    row: np.ndarray  # direction of increasing column index (ImageOrientationPatient[:3])
    col: np.ndarray  # direction of increasing row index (ImageOrientationPatient[3:])
    spacing: tuple[float, float]  # PixelSpacing: (dy between rows, dx between columns)
    position: np.ndarray | None  # ImagePositionPatient of pixel (0, 0)
    thickness: float  # a single slice's extent along the normal

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)

    def affine(self, step: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
        """Index (slice, row, col) -> RAS+ mm, slices ``step`` (LPS) apart."""
        lps = np.eye(4)
        dy, dx = self.spacing
        where = origin if origin is not None else self.position
        lps[:3, 0], lps[:3, 1], lps[:3, 2] = step, self.col * dy, self.row * dx
        lps[:3, 3] = where if where is not None else 0.0
        return _LPS_TO_RAS @ lps


def _item(seq: Any, i: int) -> Any:
    return seq[i] if seq is not None and len(seq) > i else None


def group_value(ds: Any, frame: int, sequence: str, tag: str) -> Any:
    """``tag`` in the functional group ``sequence`` of ``frame``: the per-frame group's, else the shared one's."""
    for groups in (_item(ds.get("PerFrameFunctionalGroupsSequence"), frame),
                   _item(ds.get("SharedFunctionalGroupsSequence"), 0)):
        inner = _item(groups.get(sequence), 0) if groups is not None else None
        if inner is not None and inner.get(tag) not in (None, ""):
            return inner.get(tag)
    return None


def _numbers(value: Any, n: int, tag: str, where: str) -> np.ndarray | None:
    """A multi-valued DICOM number tag as ``n`` finite floats (absent: None)."""
    if value is None or value == "":
        return None
    values = [value] if isinstance(value, (str, bytes, int, float)) else list(value)
    try:
        v = np.array([float(x) for x in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise BadItemError(f"{where}: {tag} is {value!r}, not {n} numbers; {DICOM_FIX}, or leave the file "
                           "out") from None
    if len(v) != n or not np.isfinite(v).all():
        raise BadItemError(f"{where}: {tag} is {' '.join(f'{x:g}' for x in v)}, where {n} finite numbers belong; "
                           f"{DICOM_FIX}, or leave the file out")
    return v


def _spacing(ds: Any, frame: int, where: str) -> tuple[float, float]:
    tag = "PixelSpacing"
    value = group_value(ds, frame, "PixelMeasuresSequence", tag) or ds.get(tag)
    if not value:
        tag, value = "ImagerPixelSpacing", ds.get("ImagerPixelSpacing")
    ps = _numbers(value, 2, tag, where) if value else None
    if ps is None:
        return 1.0, 1.0
    if not (ps > 0).all():
        raise BadItemError(f"{where}: {tag} is {ps[0]:g} {ps[1]:g}, but pixel spacings are numbers > 0 mm; fix "
                           "the header, or leave the file out")
    return float(ps[0]), float(ps[1])


def _thickness(ds: Any, frame: int) -> float:
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        value = group_value(ds, frame, "PixelMeasuresSequence", tag) or ds.get(tag)
        try:
            t = abs(float(value)) if value not in (None, "") else math.nan
        except (TypeError, ValueError):
            continue
        if math.isfinite(t) and t > 0:
            return t
    return 1.0


def frame_planes(ds: Any, frames: int, where: str) -> list[Plane] | None:
    """One plane per frame, from the per-frame functional groups, else the shared ones, else the top-level
    tags; None when the file has no ImageOrientationPatient at all (no patient geometry)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frames > 1 and len(per_frame) != frames:
        raise BadItemError(f"{where}: PerFrameFunctionalGroupsSequence has {len(per_frame)} items for "
                           f"NumberOfFrames {frames}; fix the header, or leave the file out")
    planes: list[Plane] = []
    for i in range(frames):
        iop = _numbers(group_value(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient")
                       or ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", where)
        if iop is None:
            if planes:
                raise BadItemError(f"{where}: frame {i + 1} has no ImageOrientationPatient while frame 1 has one; "
                                   f"{DICOM_FIX}, or leave the file out")
            return None
        ipp = _numbers(group_value(ds, i, "PlanePositionSequence", "ImagePositionPatient")
                       or ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", where)
        planes.append(Plane(iop[:3], iop[3:], _spacing(ds, i, where), ipp, _thickness(ds, i)))
    return planes


def unplaced_affine(ds: Any, where: str) -> np.ndarray:
    """A file without patient geometry: an axial image's axes, PixelSpacing in plane, 1 mm between frames."""
    plane = Plane(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), _spacing(ds, 0, where), None, 1.0)
    return plane.affine(np.array([0, 0, 1.0]))


# -- stacks of planes ------------------------------------------------------------------------------

def file_geometry(ds: Any, frames: int, where: str) -> tuple[np.ndarray | None, np.ndarray]:
    """(the frames' order along the slice normal, or None to keep them as stored; the affine) of one DICOM file."""
    planes = frame_planes(ds, frames, where)
    if planes is None:
        return None, unplaced_affine(ds, where)
    if frames == 1:
        return None, planes[0].affine(planes[0].normal * planes[0].thickness)
    for plane, position in zip(planes, frame_positions(ds, planes, where)):
        plane.position = position
    return stack_affine(planes, [f"frame {i + 1}" for i in range(frames)], where,
                        "fix the frames' geometry in the header, or leave the file out")


def frame_positions(ds: Any, planes: list[Plane], where: str) -> list[np.ndarray]:
    """Each frame's ImagePositionPatient: its per-frame functional group's, else the file's moved along the
    normal by GridFrameOffsetVector; refused when neither says where the frames are."""
    frames = len(planes)
    if all(group_value(ds, i, "PlanePositionSequence", "ImagePositionPatient") is not None for i in range(frames)):
        return [p.position for p in planes]  # type: ignore[misc]
    start, normal = planes[0].position, planes[0].normal
    gfov = ds.get("GridFrameOffsetVector")
    offsets = _numbers(gfov, frames, "GridFrameOffsetVector", where) if gfov is not None else None
    if offsets is None or start is None:
        missing = "GridFrameOffsetVector" if start is not None else "ImagePositionPatient"
        raise BadItemError(f"{where} has {frames} frames but no {missing} and no per-frame PlanePositionSequence, "
                           "so the distance between its frames is unknown (storing them 1 mm apart would be a "
                           "guess); fix the header, or leave the file out")
    if offsets[0] == 0:  # offsets along the normal, from the first frame
        along = offsets
    elif abs(offsets[0] - start[2]) <= SAME_POSITION_MM and abs(abs(normal[2]) - 1) <= ORIENTATION_TOLERANCE:
        along = (offsets - start[2]) * normal[2]  # z coordinates, on an axial grid
    else:
        raise BadItemError(f"{where}: GridFrameOffsetVector starts at {offsets[0]:g}, neither 0 (offsets from the "
                           f"first frame) nor ImagePositionPatient's z {start[2]:g} on an axial grid (z "
                           "coordinates), so the frames cannot be placed; fix the header, or leave the file out")
    return [start + a * normal for a in along]


def stack_affine(planes: list[Plane], labels: list[str], where: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """(order, affine) of slices or frames stacked into one volume along the slice normal; a bad item when
    they cannot share one affine (see the module docstring)."""
    _same(planes, labels, where, "ImageOrientationPatient", ORIENTATION_TOLERANCE, False,
          "(a scout or a reformat beside the series)", fix)
    _same(planes, labels, where, "PixelSpacing", SPACING_TOLERANCE, True, "(another series, or a resampled copy)",
          fix)
    normal = planes[0].normal
    positions = np.array([p.position for p in planes], dtype=np.float64)
    order = np.argsort(positions @ normal, kind="stable")
    positions, names = positions[order], [labels[i] for i in order]
    first = planes[order[0]]
    if len(planes) == 1:
        return order, first.affine(normal * first.thickness)
    along = positions @ normal
    gaps = np.diff(along)
    if gaps.min() < SAME_POSITION_MM:
        j = int(np.argmin(gaps))
        raise BadItemError(f"{where}: {names[j]} and {names[j + 1]} lie at the same position ({along[j]:.6g} mm "
                           f"along the slice normal): more than one series, echo or time point; {fix}")
    step = (positions[-1] - positions[0]) / (len(positions) - 1)
    off = np.linalg.norm(positions - (positions[0] + np.outer(np.arange(len(positions)), step)), axis=1)
    if off.max() > SLICE_TOLERANCE * np.linalg.norm(step):
        raise BadItemError(_uneven(along, off, names, where, fix))
    return order, first.affine(step, positions[0])


def _same(planes: list[Plane], labels: list[str], where: str, tag: str, tol: float, relative: bool, hint: str,
          fix: str) -> None:
    """Refuse slices whose ``tag`` values differ by more than ``tol``, naming each value and its slices."""
    groups: list[tuple[np.ndarray, list[str]]] = []
    for plane, label in zip(planes, labels):
        v = np.concatenate([plane.row, plane.col]) if tag == "ImageOrientationPatient" else np.array(plane.spacing)
        for ref, members in groups:
            if np.max(np.abs(v - ref)) <= tol * (np.max(np.abs(ref)) if relative else 1.0):
                members.append(label)
                break
        else:
            groups.append((v, [label]))
    if len(groups) > 1:
        shown = "; ".join(f"{' '.join(f'{x:.6g}' for x in ref)} in {_names(members)}" for ref, members in groups[:4])
        raise BadItemError(f"{where}: the slices have {len(groups)} different {tag} values ({shown}), so they are "
                           f"not one volume {hint}; {fix}")


def _names(labels: list[str], shown: int = 3) -> str:
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more


def _uneven(along: np.ndarray, off: np.ndarray, names: list[str], where: str, fix: str) -> str:
    """The reason for slices off an even grid: the gap that differs, else the slice that drifts."""
    gaps = np.diff(along)
    for j in (int(np.argmax(gaps)), int(np.argmin(gaps))):
        usual = float(np.median(np.delete(gaps, j))) if len(gaps) > 1 else float(gaps[j])
        if abs(gaps[j] - usual) > SLICE_TOLERANCE * usual:
            return (f"{where}: {names[j]} and {names[j + 1]} are {gaps[j]:.4g} mm apart along the slice normal, the "
                    f"other neighbours {usual:.4g} mm (more than {SLICE_TOLERANCE:.0%} apart): a slice is missing, or "
                    f"the slices are not evenly spaced; {fix}")
    w = int(np.argmax(off))
    return (f"{where}: {names[w]} lies {off[w]:.3g} mm off the even grid from {names[0]} to {names[-1]} (more than "
            f"{SLICE_TOLERANCE:.0%} of a slice step): the slices are not one evenly spaced stack; {fix}")
