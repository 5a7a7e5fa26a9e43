"""Small synthetic CT-like volumes in real NIfTI files, with a CSV of paths, patients and labels.

Used by the tests, ``prebake demo`` (the README quickstart) and ``examples/medical3d``, so
that the volume path runs on real ``.nii.gz`` files without downloading anything. Each
volume is int16 Hounsfield-like units: air (-1000) around an ellipsoid body (about 40 HU,
with noise) that holds a bright sphere (+300 HU) when the label is ``lesion``. Shapes,
voxel spacings and the direction of the first axis (RAS or LAS) vary per volume, so
reorienting and resampling have work to do. nibabel is needed (``prebake[medical]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CLASSES = ("healthy", "lesion")


def ct_phantom(shape: tuple[int, int, int], lesion: bool, rng: np.random.Generator) -> np.ndarray:
    """An int16 volume of ``shape``: an ellipsoid body in air, a bright sphere inside when ``lesion``."""
    grids = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    radii = rng.uniform(0.6, 0.85, 3).astype(np.float32)
    body = sum((g / r) ** 2 for g, r in zip(grids, radii)) <= 1
    vol = np.where(body, np.float32(40), np.float32(-1000)) + rng.normal(0, 20, shape).astype(np.float32)
    if lesion:
        centre = rng.uniform(-0.3, 0.3, 3).astype(np.float32)
        sphere = sum((g - c) ** 2 for g, c in zip(grids, centre)) <= rng.uniform(0.15, 0.25) ** 2
        vol[sphere] += 300
    return np.clip(np.rint(vol), -1024, 3071).astype(np.int16)


def write_volume_table(
    root: str | os.PathLike[str],
    patients: int = 6,
    scans_per_patient: tuple[int, int] = (1, 2),
    shape: tuple[int, int] = (20, 28),
    spacing: tuple[float, float] = (0.8, 1.6),
    seed: int = 0,
) -> Path:
    """Write ``root/volumes/pNNN_sK.nii.gz`` and ``root/volumes.csv``; return the CSV path.

    The CSV has ``image_path,patient_id,age,diagnosis`` (diagnosis ``healthy``/``lesion``,
    one per patient). Each patient has between ``scans_per_patient`` scans; each side is
    drawn from ``shape`` (inclusive) and each voxel size from ``spacing`` (mm).
    """
    import nibabel as nib

    root = Path(root)
    (root / "volumes").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, patients])
    rows = []
    for p in range(patients):
        label = CLASSES[p % 2]
        age = int(rng.integers(30, 80))
        for s in range(int(rng.integers(scans_per_patient[0], scans_per_patient[1] + 1))):
            d, h, w = (int(v) for v in rng.integers(shape[0], shape[1] + 1, 3))
            dims = (d, h, w)
            zooms = rng.uniform(*spacing, 3)
            affine = np.diag([*zooms, 1.0])
            if rng.random() < 0.5:  # LAS: the first axis points left
                affine[0, 0] = -zooms[0]
            affine[:3, 3] = rng.uniform(-50, 50, 3)
            img = nib.Nifti1Image(ct_phantom(dims, label == "lesion", rng), affine)
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
            name = f"volumes/p{p:03d}_s{s}.nii.gz"
            nib.save(img, root / name)
            rows.append(f"{name},P{p:03d},{age},{label}")
    path = root / "volumes.csv"
    path.write_text("\n".join(["image_path,patient_id,age,diagnosis", *rows]) + "\n")
    return path
