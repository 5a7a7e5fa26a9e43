"""DICOM files whose geometry a test chooses: slice series, RT dose grids and enhanced multi-frame files.

Each writer starts from a file pydicom ships (CT_small.dcm, rtdose.dcm) and sets the geometry tags as
given, and returns what the reference reading needs: the pixels and the patient position (LPS, mm) of
every slice or frame, so a test can place each voxel in the world without prebake's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@dataclass
class Plane:
    """One slice or frame as its header places it: the world (LPS) of pixel (row r, column c) is
    ``position + c * dx * row_dir + r * dy * col_dir``."""

    pixels: np.ndarray  # (rows, cols), the values the reader must give for this slice
    position: np.ndarray  # ImagePositionPatient
    orientation: Sequence[float]  # ImageOrientationPatient: row_dir then col_dir
    spacing: tuple[float, float]  # PixelSpacing: (dy between rows, dx between columns)
    name: str = ""

    def world_ras(self, r: float, c: float) -> np.ndarray:
        o = np.asarray(self.orientation, dtype=np.float64)
        lps = self.position + c * self.spacing[1] * o[:3] + r * self.spacing[0] * o[3:]
        return LPS_TO_RAS @ lps


def _testdata(name: str) -> Any:
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file(name))


def random_orientation(rng: np.random.Generator) -> tuple[float, ...]:
    """Row and column directions of a random rotation, to 6 decimals (as a scanner writes them)."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return tuple(float(x) for x in np.round(np.concatenate([q[:, 0], q[:, 1]]), 6))


def normal_of(orientation: Sequence[float]) -> np.ndarray:
    o = np.asarray(orientation, dtype=np.float64)
    return np.cross(o[:3], o[3:])


def write_slice(path: Path, plane: Plane, **extra: Any) -> Path:
    """CT_small.dcm with ``plane``'s pixels (stored; RescaleIntercept -1024 removed) and geometry."""
    ds = _testdata("CT_small.dcm")
    del ds.RescaleIntercept, ds.RescaleSlope
    ds.Rows, ds.Columns = plane.pixels.shape
    ds.PixelData = plane.pixels.astype(np.int16).tobytes()
    ds.ImagePositionPatient = [round(float(x), 4) for x in plane.position]
    ds.ImageOrientationPatient = list(plane.orientation)
    ds.PixelSpacing = list(plane.spacing)
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.save_as(path, enforce_file_format=True)
    return path


def series_planes(n: int, rng: np.random.Generator, *, gap: float | None = None,
                  orientation: Sequence[float] | None = None, shape: tuple[int, int] = (6, 5)) -> list[Plane]:
    """``n`` slices ``gap`` mm apart along the normal of ``orientation``, in position order."""
    orientation = orientation if orientation is not None else random_orientation(rng)
    gap = gap if gap is not None else float(rng.choice([0.625, 1.25, 2.5, 3.0, 5.0]))
    start = np.round(rng.uniform(-200, 200, 3), 2)
    spacing = (float(rng.choice([0.5, 0.7, 0.9])), float(rng.choice([0.6, 0.8, 1.1])))
    step = normal_of(orientation) * gap + rng.choice([0.0, 1.0]) * rng.uniform(-0.3, 0.3, 3)  # a gantry tilt
    return [Plane(rng.integers(-1000, 2000, shape).astype(np.int16), start + k * step, orientation, spacing,
                  f"IM{k:04d}") for k in range(n)]


def write_series(directory: Path, planes: list[Plane], rng: np.random.Generator, **extra: Any) -> list[Path]:
    """One file per plane under shuffled names (the file order says nothing about the slice order)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"{int(i):05d}" for i in rng.permutation(10_000)[: len(planes)]]
    paths = []
    for plane, name in zip(planes, names):
        plane.name = name
        paths.append(write_slice(directory / name, plane, **extra))
    return paths


def write_rtdose(path: Path, offsets: Sequence[float] | None, *, orientation: Sequence[float] = AXIAL,
                 position: Sequence[float] = (189.43, 199.43, -761.87), absolute: bool = False,
                 **extra: Any) -> tuple[list[Plane], float]:
    """rtdose.dcm (15 frames of 10 x 10 uint32) with GridFrameOffsetVector ``offsets`` (None: removed).

    ``absolute``: the offsets are written as z coordinates (starting at the position's z), which the
    standard allows for an axial grid. Returns the frames' planes and DoseGridScaling.
    """
    ds = _testdata("rtdose.dcm")
    frames = ds.pixel_array
    ds.ImageOrientationPatient, ds.ImagePositionPatient = list(orientation), list(position)
    if offsets is None:
        del ds.GridFrameOffsetVector
    else:
        ds.GridFrameOffsetVector = [float(position[2]) + o if absolute else o for o in offsets]
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.save_as(path, enforce_file_format=True)
    spacing = tuple(float(x) for x in ds.PixelSpacing)
    normal = normal_of(orientation)
    planes = [Plane(frames[i], np.asarray(position, dtype=np.float64) + (offsets[i] if offsets else i) * normal,
                    orientation, spacing, f"frame {i + 1}") for i in range(len(frames))]
    return planes, float(ds.DoseGridScaling)


def write_enhanced(path: Path, planes: list[Plane], *, slope: float = 1.0, intercept: float = 0.0,
                   per_frame_orientation: bool = False) -> Path:
    """An enhanced multi-frame file: one frame per plane, in the given order, its position in the per-frame
    functional groups, orientation, spacing and rescale in the shared ones (or per frame)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as Seq

    ds = _testdata("CT_small.dcm")
    for tag in ("RescaleIntercept", "RescaleSlope", "ImagePositionPatient", "ImageOrientationPatient",
                "PixelSpacing", "SliceThickness"):
        delattr(ds, tag)
    ds.NumberOfFrames = len(planes)
    ds.Rows, ds.Columns = planes[0].pixels.shape
    ds.PixelData = np.stack([p.pixels for p in planes]).astype(np.int16).tobytes()

    def item(**tags: Any) -> Seq:
        d = Dataset()
        for k, v in tags.items():
            setattr(d, k, v)
        return Seq([d])

    orient = {"PlaneOrientationSequence": item(ImageOrientationPatient=list(planes[0].orientation))}
    shared = Dataset()
    shared.PixelMeasuresSequence = item(PixelSpacing=list(planes[0].spacing), SliceThickness=1.0)
    shared.PixelValueTransformationSequence = item(RescaleSlope=slope, RescaleIntercept=intercept,
                                                   RescaleType="HU")
    if not per_frame_orientation:
        shared.PlaneOrientationSequence = orient["PlaneOrientationSequence"]
    ds.SharedFunctionalGroupsSequence = Seq([shared])
    frames = []
    for p in planes:
        f = Dataset()
        f.PlanePositionSequence = item(ImagePositionPatient=[round(float(x), 4) for x in p.position])
        if per_frame_orientation:
            f.PlaneOrientationSequence = item(ImageOrientationPatient=list(p.orientation))
        frames.append(f)
    ds.PerFrameFunctionalGroupsSequence = Seq(frames)
    ds.save_as(path, enforce_file_format=True)
    return path


def geometry_problem(item: dict[str, Any], planes: list[Plane], atol: float = 1e-3) -> str | None:
    """Where ``item`` puts slice k's corners against where its header (``planes``, in the volume's slice
    order) puts them, and the voxels against the planes' pixels; None when all agree."""
    affine = item["affine"]
    rows, cols = planes[0].pixels.shape
    for k, plane in enumerate(planes):
        for r, c in ((0, 0), (rows - 1, 0), (0, cols - 1), (rows - 1, cols - 1)):
            got = (affine @ [k, r, c, 1.0])[:3]
            want = plane.world_ras(r, c)
            if not np.allclose(got, want, atol=atol, rtol=0):
                return f"voxel ({k}, {r}, {c}) at {np.round(got, 3)} mm, its header puts it at {np.round(want, 3)}"
        if not np.array_equal(item["image"][0, k], plane.pixels):
            return f"slice {k} holds other values than {plane.name or 'its file'}"
    return axes_problem(item)


def axes_problem(item: dict[str, Any]) -> str | None:
    """The spacing, origin and orientation columns against the affine (nibabel's reading of it)."""
    from nibabel.orientations import aff2axcodes

    affine = item["affine"]
    if not np.allclose(item["spacing"], np.linalg.norm(affine[:3, :3], axis=0), rtol=1e-12):
        return f"spacing {item['spacing']} is not the affine's axis lengths"
    if not np.array_equal(item["origin"], affine[:3, 3]):
        return f"origin {item['origin']} is not the affine's translation"
    codes = "".join(aff2axcodes(affine))
    if str(item.get("orientation")) != codes:
        return f"orientation {item.get('orientation')!r}, nibabel's aff2axcodes of the affine says {codes!r}"
    return None
