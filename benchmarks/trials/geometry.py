"""Geometry that is never silently wrong: every volume either places each voxel where its header says,
or is a bad item whose reason says why.

Each trial writes a few real files (``geometry_files.py``) and reads them with prebake's volume reader:

- a DICOM series with a slice of another orientation mixed in (a scout): refused, naming the orientations
  and the odd file;
- a series of random orientation, spacing and gantry tilt under shuffled file names: every slice corner
  where its own ImagePositionPatient / ImageOrientationPatient / PixelSpacing put it;
- a series with a slice taken out: refused, naming the gap;
- NIfTI files with random scaled, rotated and sheared affines: nibabel's affine and ``aff2axcodes``; a
  singular one, and a zero, negative or NaN pixdim: refused;
- multi-frame files: an RT dose grid with GridFrameOffsetVector (relative or absolute, rising or falling)
  and an enhanced file with per-frame positions in a shuffled order: every frame where its header puts it,
  dose scaled by DoseGridScaling; the same grid without offsets: refused.

A trial fails when a volume is kept with any voxel off by more than 1e-3 mm, when a refusal lacks its
reason, or on any exception that is not a PrebakeError.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from prebake.errors import BadItemError, PrebakeError

from . import Row
from .geometry_files import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    Plane,
    axes_problem,
    geometry_problem,
    normal_of,
    random_orientation,
    series_planes,
    write_enhanced,
    write_rtdose,
    write_series,
)
from .volumefiles import NAN, write_nifti

Problem = str | None


def read(path: Path) -> dict[str, Any]:
    from prebake.sources.volume_readers import read_volume

    return read_volume(path)


def refused(path: Path, *fragments: str) -> Problem:
    """None when reading ``path`` is a BadItemError whose reason holds every fragment."""
    try:
        item = read(path)
    except BadItemError as e:
        missing = [f for f in fragments if f not in e.reason]
        return f"reason {e.reason!r} lacks {missing}" if missing else None
    return f"kept: affine {np.round(item['affine'], 3).tolist()}, shape {item['image'].shape}"


def mixed_orientation(d: Path, rng: np.random.Generator) -> Problem:
    planes = series_planes(int(rng.integers(2, 6)), rng, orientation=AXIAL)
    odd = int(rng.integers(len(planes)))
    planes[odd].orientation = SAGITTAL if rng.random() < 0.5 else CORONAL
    write_series(d / "series", planes, rng)
    return refused(d / "series", "ImageOrientationPatient", planes[odd].name, "series/")


def shuffled_slices(d: Path, rng: np.random.Generator) -> Problem:
    planes = series_planes(int(rng.integers(2, 7)), rng)
    write_series(d / "series", planes, rng)
    return geometry_problem(read(d / "series"), planes)


def missing_slice(d: Path, rng: np.random.Generator) -> Problem:
    planes = series_planes(int(rng.integers(5, 9)), rng)
    gone = int(rng.integers(1, len(planes) - 1))
    del planes[gone]
    write_series(d / "series", planes, rng)
    return refused(d / "series", "missing", planes[gone - 1].name, planes[gone].name)


def _random_affine(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    shear = np.eye(3)
    shear[0, 1], shear[1, 2] = rng.uniform(-0.4, 0.4, 2) * (rng.random() < 0.5)
    affine = np.eye(4)
    affine[:3, :3] = q @ np.diag(rng.uniform(0.3, 4.0, 3)) @ shear
    affine[:3, 3] = rng.uniform(-150, 150, 3)
    return affine


def nifti_affine(d: Path, rng: np.random.Generator) -> Problem:
    import nibabel as nib

    data = rng.integers(-500, 500, tuple(int(n) for n in rng.integers(2, 7, 3))).astype(np.int16)
    img = nib.Nifti1Image(data, _random_affine(rng))
    img.set_qform(None, code=0) if rng.random() < 0.5 else None
    nib.save(img, d / "v.nii.gz")
    item, ref = read(d / "v.nii.gz"), nib.load(d / "v.nii.gz")
    if not np.array_equal(item["affine"], ref.affine):
        return f"affine {item['affine'].tolist()}, nibabel's {ref.affine.tolist()}"
    if not np.array_equal(item["image"][0], np.asanyarray(ref.dataobj)):
        return "values differ from nibabel's"
    return axes_problem(item)


def singular_affine(d: Path, rng: np.random.Generator) -> Problem:
    srow = _random_affine(rng)[:3]
    a, b = rng.choice(3, 2, replace=False)
    srow[:, a] = srow[:, b] * rng.choice([1.0, -2.0]) if rng.random() < 0.5 else 0.0
    path = write_nifti(d / "v.nii", (4, 5, 6), qform=0, sform=1, srow=srow)
    return refused(path, "v.nii", "singular")


def bad_pixdim(d: Path, rng: np.random.Generator) -> Problem:
    axis = int(rng.integers(3))
    bad = float(rng.choice([0.0, -1.5, NAN]))
    pixdim = tuple(bad if i == axis else 1.2 for i in range(3))
    path = write_nifti(d / "v.nii", (4, 5, 6), pixdim=pixdim, qform=int(rng.integers(2)))
    return refused(path, "v.nii", f"pixdim[{axis + 1}] is {bad:g}")


def frames_offsets(d: Path, rng: np.random.Generator) -> Problem:
    step = float(rng.choice([2.0, 2.5, 3.0, 5.0])) * float(rng.choice([1.0, -1.0]))
    absolute = rng.random() < 0.5
    orientation = AXIAL if absolute else random_orientation(rng)
    offsets = [i * step for i in range(15)]
    planes, scale = write_rtdose(d / "dose.dcm", offsets, orientation=orientation, absolute=absolute)
    item = read(d / "dose.dcm")
    if item["image"].dtype != np.float32:
        return f"dose is {item['image'].dtype}, not float32 Gy"
    order = np.argsort([p.position @ normal_of(orientation) for p in planes], kind="stable")
    dose = [Plane((p.pixels * scale).astype(np.float32), p.position, p.orientation, p.spacing, p.name)
            for p in (planes[i] for i in order)]
    return geometry_problem(item, dose)


def frames_enhanced(d: Path, rng: np.random.Generator) -> Problem:
    planes = series_planes(int(rng.integers(2, 7)), rng)
    shuffled = [planes[i] for i in rng.permutation(len(planes))]
    slope, intercept = float(rng.choice([1.0, 2.0])), float(rng.choice([0.0, -1024.0]))
    write_enhanced(d / "enhanced.dcm", shuffled, slope=slope, intercept=intercept,
                   per_frame_orientation=rng.random() < 0.5)
    scaled = [Plane((p.pixels.astype(np.int32) * int(slope) + int(intercept)), p.position, p.orientation,
                    p.spacing, p.name) for p in planes]
    return geometry_problem(read(d / "enhanced.dcm"), scaled)


def frames_no_offsets(d: Path, rng: np.random.Generator) -> Problem:
    write_rtdose(d / "dose.dcm", None, orientation=random_orientation(rng))
    return refused(d / "dose.dcm", "dose.dcm", "GridFrameOffsetVector")


TRIALS: dict[str, Callable[[Path, np.random.Generator], Problem]] = {
    "mixed orientation": mixed_orientation, "shuffled slices": shuffled_slices, "missing slice": missing_slice,
    "NIfTI affine": nifti_affine, "singular affine": singular_affine, "bad pixdim": bad_pixdim,
    "frames with offsets": frames_offsets, "enhanced frames": frames_enhanced,
    "frames without offsets": frames_no_offsets,
}


def attempt(kind: str, d: Path, rng: np.random.Generator) -> Problem:
    """One trial of ``kind`` in the new folder ``d``: None, or what went wrong."""
    d.mkdir(parents=True, exist_ok=True)
    try:
        return TRIALS[kind](d, rng)
    except PrebakeError as e:
        return f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - anything else is the failure this trial counts
        return f"not a PrebakeError: {type(e).__name__}: {e}"


def geometry(work_dir: Path, trials: int, seed: Any) -> Row:
    row = Row("geometry: mixed orientations, shuffled and missing slices, affines, pixdim, multi-frame")
    pick = random.Random(seed)
    kinds = list(TRIALS)
    counts = dict.fromkeys(kinds, 0)
    for t in range(trials):
        kind = kinds[t % len(kinds)] if t < len(kinds) else pick.choice(kinds)
        counts[kind] += 1
        d = Path(work_dir) / f"geometry{t}"
        problem = attempt(kind, d, np.random.default_rng([pick.randrange(2**32), t]))
        row.check(problem is None, f"{kind} (trial {t}): {problem}")
        shutil.rmtree(d, ignore_errors=True)
    row.notes["kinds"] = counts
    return row
