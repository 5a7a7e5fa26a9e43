"""A folder with one subfolder per class, each holding item files::

    pets/cat/001.jpg  pets/cat/more/002.png  pets/dog/003.jpg
    hearts/normal/a0001.wav  hearts/abnormal/a0002.wav

or the same one level down per split (``pets/train/cat/...``, ``pets/val/cat/...``).

Classes are the sorted subfolder names, and label = index in that list. For split
folders the class list is the sorted union over all splits, so a label means the same
class in every split. Items are sorted by (class, relative path); class folders are
searched recursively. A file is an item by its suffix, or, when its name has no suffix
that says what it is (``take_01``, ``IM000001``), by its first bytes (:mod:`.sniff`).
Hidden files and folders (name starting with '.') are skipped, as
are files of other types, and prebake caches (a folder with a ``manifest.json``, a
``.partial`` or ``.replaced`` build folder, or a folder of such folders): a cache built
inside its own source folder, ``prebake build photos photos/cache``, never becomes a
class. A file of the right type that fails to decode is a bad item (recorded by the
build), never silently dropped.

:class:`ImageFolderSource` reads images; :class:`~prebake.sources.audio.AudioFolderSource`
reads audio files (WAV, FLAC, OGG). Both are a :class:`ClassFolderSource` with two methods of their own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..cache.format import LOCK_SUFFIX, MANIFEST, PARTIAL_SUFFIX, REPLACED_SUFFIX
from ..errors import SourceError
from ..identity.files import file_identity
from .base import Source
from .headers import image_size
from .images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, check_channels, decode_image, is_image_file
from .sniff import family, name_family

log = logging.getLogger(__name__)

#: Subfolder names that mark a folder of splits rather than a folder of classes.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")


def visible_dirs(path: Path) -> list[str]:
    """Subfolders that can hold items: not hidden, not prebake caches."""
    return [d for d in _subdirs(path) if not is_cache_tree(path / d)]


def _subdirs(path: Path) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if _is_dir(e) and not e.name.startswith("."))
    except OSError as e:
        raise SourceError(f"cannot list {path}: {e.strerror or e}") from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A symlink loop is no folder: as a file of an item type it becomes a bad item, not a failed build."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def is_cache_tree(path: Path) -> bool:
    """A prebake cache or build folder, or a folder that holds only those (a cache with splits)."""
    if path.name.endswith((PARTIAL_SUFFIX, REPLACED_SUFFIX)) or (path / MANIFEST).is_file():
        return True
    subdirs = _subdirs(path)
    if not subdirs or any(f.is_file() and not f.name.endswith(LOCK_SUFFIX) for f in path.iterdir()):
        return False
    return all(is_cache_tree(path / d) for d in subdirs)


class ClassFolderSource(Source):
    """Items ``{**read_file(path), "label": class index}`` from class subfolders."""

    kind = "folder"
    classes: list[str]  # always known: the class folders, or the list given
    #: What the files are, and their extensions, for messages.
    what: ClassVar[str] = "files"
    extensions: ClassVar[tuple[str, ...]] = ()
    #: What a file without a telling suffix must hold, by its first bytes, to be an item (None: suffixes only).
    content_family: ClassVar[str | None] = None

    def __init__(self, root: str | os.PathLike[str], classes: Iterable[str] | None = None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a directory; it should hold one subfolder per class")
        present = visible_dirs(self.root)
        self.classes = sorted(classes) if classes is not None else present
        index = {name: i for i, name in enumerate(self.classes)}
        self._paths: list[str] = []
        self._labels: list[int] = []
        for name in present:
            if name not in index:
                raise SourceError(f"{self.root / name} is not in the class list {self.classes}")
            files = self._files(self.root / name)
            if not files:
                log.warning("class folder %s holds no %s", self.root / name, self.what)
            self._paths.extend(f"{name}/{f}" for f in files)
            self._labels.extend([index[name]] * len(files))
        if not self._paths:
            raise SourceError(
                f"{self.root} holds no {self.what} in class subfolders (looked for "
                f"{', '.join(self.extensions)} in {len(present)} subfolder(s)); expected "
                f"root/<class>/<file>, e.g. root/cat/001{self.extensions[0] if self.extensions else ''}"
            )

    @classmethod
    def is_item_file(cls, name: str) -> bool:
        return name.lower().endswith(cls.extensions)

    def read_file(self, path: Path) -> dict[str, Any]:
        raise NotImplementedError

    def _files(self, class_dir: Path) -> list[str]:
        """Item files under ``class_dir`` (recursive), as sorted POSIX paths relative to it."""
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and not is_cache_tree(Path(dirpath) / d)]
            rel = Path(dirpath).relative_to(class_dir).as_posix()
            prefix = "" if rel == "." else rel + "/"  # joined as text: a pathlib join per file cost more than a stat
            found.extend(prefix + f for f in filenames if not f.startswith(".") and self._is_item(dirpath, f))
        return sorted(found)

    def _is_item(self, dirpath: str, name: str) -> bool:
        if self.is_item_file(name):
            return True
        if self.content_family is None:
            return False
        return name_family(name) is None and family(os.path.join(dirpath, name)) == self.content_family

    def keys(self) -> list[str]:
        return self._paths

    def read(self, index: int) -> dict[str, Any]:
        return {**self.read_file(self.root / self._paths[index]), "label": self._labels[index]}

    def item_identities(self) -> list[str]:
        return self._identities(file_identity(self._files_under_root(), self.root, content=self.content_hash))

    def item_identities_from(self, files: dict[str, Any]) -> list[str] | None:
        return self._identities(files) if all(p in files for p in self._paths) else None

    def _identities(self, files: dict[str, Any]) -> list[str]:
        return [f"{p}|{files[p]}|{label}" for p, label in zip(self._paths, self._labels)]

    def describe(self) -> dict[str, Any]:
        return self.describe_files(self.root, {"classes": list(self.classes)}, self._files_under_root())

    def _files_under_root(self) -> list[str]:
        """Every file's path, joined as text (a pathlib join per file cost more than its stat)."""
        root = os.fspath(self.root)
        return [os.path.join(root, p) for p in self._paths]


class ImageFolderSource(ClassFolderSource):
    """Items ``{"image": RGB PIL.Image, "label": class index}`` from class subfolders.

    Images over ``max_pixels`` are bad items, refused from their header (see
    :mod:`prebake.sources.images`).
    """

    kind = "imagefolder"
    what = "image files"
    extensions = IMAGE_EXTENSIONS
    content_family = "image"

    def __init__(self, root: str | os.PathLike[str], classes: Iterable[str] | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, channels: str | None = None):
        super().__init__(root, classes)
        self.max_pixels, self.channels = int(max_pixels), check_channels(channels)

    @classmethod
    def is_item_file(cls, name: str) -> bool:
        return is_image_file(name)

    def imports(self) -> tuple[str, ...]:
        return ("PIL.Image",)

    def read_file(self, path: Path) -> dict[str, Any]:
        return {"image": decode_image(path, self.max_pixels, self.channels)}

    def predicted_sizes(self, column: str) -> np.ndarray | None:
        """``image``: 3 x width x height of each file (RGB, the default policy), from its header; 0 for a file
        Pillow cannot open (the build skips it or spills it); None for another policy. PNG and JPEG headers are read
        without Pillow (sources/headers.py)."""
        if column != "image" or self.channels not in (None, "3"):
            return None
        from PIL import Image

        sizes = np.zeros(len(self._paths), np.int64)
        for k, path in enumerate(self._files_under_root()):
            size = image_size(path)
            if size is None:
                try:
                    with Image.open(path) as im:
                        size = im.size
                except Exception:  # noqa: BLE001, S112 - only a guess: the build reads and judges every file anyway
                    continue
            sizes[k] = 3 * size[0] * size[1]
        return sizes

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["params"]["max_pixels"] = self.max_pixels
        if self.channels is not None:  # only when set, so caches made before the policy existed stay fresh
            out["params"]["channels"] = self.channels
        return out


def split_dirs(root: Path) -> list[str] | None:
    """The split subfolders of ``root`` when every subfolder is a split name holding folders."""
    subdirs = visible_dirs(root)
    if not subdirs or any(d.lower() not in SPLIT_NAMES for d in subdirs):
        return None
    if not all(visible_dirs(root / d) for d in subdirs):
        return None
    return subdirs


F = TypeVar("F", bound=ClassFolderSource)


def class_folder(root: Path, cls: type[F], **options: Any) -> dict[str, F]:
    """``{split: source}`` for a split folder, else ``{"": source}``; ``options`` go to every ``cls(...)``."""
    splits = split_dirs(root)
    if splits is None:
        return {"": cls(root, **options)}
    classes = sorted({c for s in splits for c in visible_dirs(root / s)})
    return {s: cls(root / s, classes=classes, **options) for s in splits}
