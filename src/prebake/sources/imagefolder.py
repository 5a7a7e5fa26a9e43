"""A folder with one subfolder per class, each holding image files::

    pets/cat/001.jpg  pets/cat/more/002.png  pets/dog/003.jpg

or the same one level down per split (``pets/train/cat/...``, ``pets/val/cat/...``).

Classes are the sorted subfolder names, and label = index in that list. For split
folders the class list is the sorted union over all splits, so a label means the same
class in every split. Items are sorted by (class, relative path); class folders are
searched recursively. Hidden files and folders (name starting with '.') are skipped, as
are files without an image extension. A file with an image extension that fails to
decode is a bad item (recorded by the build), never silently dropped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import SourceError
from .base import Source, file_identity
from .images import IMAGE_EXTENSIONS, decode_image, is_image_file

log = logging.getLogger(__name__)

#: Subfolder names that mark a folder of splits rather than a folder of classes.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")


def _visible_dirs(path: Path) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise SourceError(f"cannot list {path}: {e.strerror or e}") from None


def _image_files(class_dir: Path) -> list[str]:
    """Image files under ``class_dir`` (recursive), as sorted POSIX paths relative to it."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(class_dir)
        found.extend(
            (rel / f).as_posix() for f in filenames if not f.startswith(".") and is_image_file(f)
        )
    return sorted(found)


class ImageFolderSource(Source):
    """Items ``{"image": RGB PIL.Image, "label": class index}`` from class subfolders."""

    kind = "imagefolder"

    def __init__(self, root: str | os.PathLike[str], classes: Iterable[str] | None = None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a directory; an image folder holds one subfolder per class")
        present = _visible_dirs(self.root)
        self.classes = sorted(classes) if classes is not None else present
        index = {name: i for i, name in enumerate(self.classes)}
        self._paths: list[str] = []
        self._labels: list[int] = []
        for name in present:
            if name not in index:
                raise SourceError(f"{self.root / name} is not in the class list {self.classes}")
            files = _image_files(self.root / name)
            if not files:
                log.warning("class folder %s holds no image files", self.root / name)
            self._paths.extend(f"{name}/{f}" for f in files)
            self._labels.extend([index[name]] * len(files))
        if not self._paths:
            raise SourceError(
                f"{self.root} holds no image files in class subfolders (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)} in {len(present)} subfolder(s)); expected "
                "root/<class>/<image>, e.g. root/cat/001.jpg"
            )

    def keys(self) -> list[str]:
        return self._paths

    def read(self, index: int) -> dict[str, Any]:
        image = decode_image(self.root / self._paths[index])
        return {"image": image, "label": self._labels[index]}

    def item_identities(self) -> list[str]:
        files = file_identity([self.root / p for p in self._paths], self.root)
        return [f"{p}|{files[p]}|{label}" for p, label in zip(self._paths, self._labels)]

    def describe(self) -> dict[str, Any]:
        return self.describe_files(self.root, {"classes": list(self.classes)}, [self.root / p for p in self._paths])


def split_dirs(root: Path) -> list[str] | None:
    """The split subfolders of ``root`` when every subfolder is a split name holding folders."""
    subdirs = _visible_dirs(root)
    if not subdirs or any(d.lower() not in SPLIT_NAMES for d in subdirs):
        return None
    if not all(_visible_dirs(root / d) for d in subdirs):
        return None
    return subdirs


def image_folder(root: Path) -> dict[str, ImageFolderSource]:
    """``{split: source}`` for a split folder, else ``{"": source}``."""
    splits = split_dirs(root)
    if splits is None:
        return {"": ImageFolderSource(root)}
    classes = sorted({c for s in splits for c in _visible_dirs(root / s)})
    return {s: ImageFolderSource(root / s, classes=classes) for s in splits}
