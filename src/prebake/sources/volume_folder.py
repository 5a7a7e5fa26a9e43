"""A folder of class subfolders of volumes: NIfTI files, ``.npy`` volumes, single DICOM files
and DICOM series directories, and nibabel's other formats (:mod:`.volume_formats`); a file whose
name has no known suffix (``IM000001``) is listed when its first bytes are a volume's::

    scans/healthy/p001.nii.gz   scans/healthy/p002/  (a series: one file per slice)   scans/sick/p003.dcm

Classes and labels follow :mod:`prebake.sources.folder` (sorted subfolder names,
split folders ``train/``, ``val/``). Inside a class folder, a directory that directly
holds DICOM files (``.dcm``, or files with the ``DICM`` preamble) is one item, a series;
other directories are searched for more items.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..identity.files import file_identity, relative_key
from .folder import ClassFolderSource, is_cache_tree
from .sniff import VOLUME_NAMES
from .volume_formats import is_volume_file
from .volume_readers import DEFAULT_MAX_VOXELS, identity_files, is_series_dir, read_volume, require


class VolumeFolderSource(ClassFolderSource):
    """Items ``{"image": (C, D, H, W), "spacing", "origin", "affine", "orientation", "label"}`` from class
    subfolders (the geometry columns: :mod:`.volume_geometry`).

    A volume whose header declares more than ``max_voxels`` voxels is a bad item, refused before reading.
    """

    kind = "volumes"
    what = "volumes (NIfTI, DICOM files and series directories, MGH, MINC, PAR/REC, AFNI, Analyze, ECAT, .npy)"
    extensions = VOLUME_NAMES

    def __init__(self, root: str | os.PathLike[str], classes: Any = None, max_voxels: int = DEFAULT_MAX_VOXELS,
                 nan_fill: float | None = None):
        self.nan_fill = nan_fill
        require("nibabel")
        require("pydicom")
        self.max_voxels = int(max_voxels)
        super().__init__(root, classes)

    def _files(self, class_dir: Path) -> list[str]:
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            here = Path(dirpath)
            keep = []
            for d in sorted(dirnames):
                if d.startswith(".") or is_cache_tree(here / d):
                    continue
                if is_series_dir(here / d):
                    found.append((here / d).relative_to(class_dir).as_posix())
                else:
                    keep.append(d)
            dirnames[:] = keep
            rel = here.relative_to(class_dir)
            found.extend((rel / f).as_posix() for f in filenames if not f.startswith(".") and is_volume_file(here / f))
        return sorted(found)

    def imports(self) -> tuple[str, ...]:
        return ("nibabel", "pydicom", "pydicom.pixels")

    def read_file(self, path: Path) -> dict[str, Any]:
        return read_volume(path, self.max_voxels, self.nan_fill)

    def item_identities(self) -> list[str]:
        out = []
        for p, label in zip(self._paths, self._labels):
            files = file_identity(identity_files(self.root / p), self.root, content=self.content_hash)
            out.append(f"{p}|{sorted(files.items())}|{label}")
        return out

    def item_identities_from(self, files: dict[str, Any]) -> list[str] | None:
        out = []
        for p, label in zip(self._paths, self._labels):
            names = [relative_key(f, self.root) for f in identity_files(self.root / p)]
            if not all(n in files for n in names):
                return None
            out.append(f"{p}|{sorted((n, files[n]) for n in dict.fromkeys(names))}|{label}")
        return out

    def describe(self) -> dict[str, Any]:
        files = [f for p in self._paths for f in identity_files(self.root / p)]
        # the default limit stays out of the identity, so caches made before the limit existed stay fresh
        limit = {"max_voxels": self.max_voxels} if self.max_voxels != DEFAULT_MAX_VOXELS else {}
        fill = {"nan_fill": self.nan_fill} if self.nan_fill is not None else {}
        return self.describe_files(self.root, {"classes": list(self.classes), **limit, **fill}, files)
