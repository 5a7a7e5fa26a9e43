"""Sources: what a bake reads from. :func:`detect` turns a path into ``{split: Source}``.

Kinds (``detect(path, kind=...)``, CLI ``--kind``):

=============  ===============================================================
``cifar``      CIFAR-10/100 python batches (``cifar-10-batches-py``, ``cifar-100-python``)
``cifar-bin``  CIFAR-10/100 binary (``cifar-10-batches-bin``, ``cifar-100-binary``)
``imagefolder`` ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``
``audio``      ``root/<class>/<recording>.wav|flac|ogg`` (or with split folders), a ragged ``signal``
``volumes``    ``root/<class>/<volume>``: NIfTI, DICOM files and series directories, ``.npy``
``csv``        a CSV table with an image path column and label column(s)
``video``      ``root/<clip>.mp4`` (+ ``<clip>.wav``) or ``root/<clip>/`` (a video or frame images, + audio):
               a ragged uint8 ``frames`` (T, 3, H, W), ``fps``, and a ragged ``audio`` (:mod:`.video`)
``arrays``     ``.npz``, ``.npy`` or a folder of ``{split}_images.npy`` + ``{split}_labels.npy``
``hdf5``       an ``.h5``/``.hdf5`` file: every dataset with one row per item is a column
=============  ===============================================================

Python datasets are wrapped directly: ``DatasetSource(my_dataset)`` or
``DatasetSource.from_spec("my_module:make_dataset")``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError, opt
from .arrays import ArraySource, split_pairs
from .arrays import arrays as _arrays
from .audio import AudioFolderSource
from .base import Source
from .cifar import CifarBinarySource, CifarSource, cifar_binary, cifar_python
from .csvtable import CsvSource
from .dataset import DatasetSource
from .folder import ImageFolderSource, class_folder, is_cache_tree, visible_dirs
from .images import DEFAULT_MAX_PIXELS, decode_image, is_image_file
from .video import VideoFolderSource, has_video_files, is_video_file, video_folder
from .volume_folder import VolumeFolderSource
from .volume_readers import DEFAULT_MAX_VOXELS, is_volume_path

__all__ = [
    "KINDS",
    "ArraySource",
    "AudioFolderSource",
    "CifarBinarySource",
    "CifarSource",
    "CsvSource",
    "DatasetSource",
    "ImageFolderSource",
    "Source",
    "SourceOptions",
    "VolumeFolderSource",
    "VideoFolderSource",
    "decode_image",
    "detect",
]

KINDS = ("cifar", "cifar-bin", "imagefolder", "audio", "volumes", "video", "csv", "arrays", "hdf5")

#: Folder names of the extracted CIFAR downloads, and the kind each one is.
CIFAR_DIRS = {
    "cifar-10-batches-py": "cifar",
    "cifar-100-python": "cifar",
    "cifar-10-batches-bin": "cifar-bin",
    "cifar-100-binary": "cifar-bin",
}

_LOOKED_FOR = (
    "CIFAR python batches (data_batch_1..5 + test_batch, or train + test + meta), "
    "CIFAR binary batches (data_batch_1.bin.. + test_batch.bin, or train.bin + test.bin), "
    f"a folder holding one of {', '.join(CIFAR_DIRS)}, "
    "{split}_images.npy files, a .csv/.npz/.npy/.h5 file, class subfolders of images, audio files or volumes, and video files"
)


@dataclass(frozen=True)
class SourceOptions:
    """Options that only some kinds of source use (``csv``, ``audio`` and ``video``).

    ``path_column``: the CSV column of file paths (default: a column named path, file, image, ...).
    ``label_columns``: the CSV label column(s) (default: every other column).
    ``base_dir``: what the CSV's paths are relative to (default: the CSV file's directory).
    ``delimiter``: the CSV field separator (default: detected among , ; tab |).
    ``max_pixels``: image folders and CSV tables: larger images are bad items, refused from the header.
    ``max_voxels``: volume folders and CSV tables: volumes declaring more voxels are bad items, refused likewise.
    ``channel``: audio channel policy: ``"mix"`` (default), ``"all"`` or an index (``"0"``).
    ``audio_dtype``: the one dtype of every audio signal: ``"int16"`` (default), ``"int32"``, ``"float32"``.
    ``keep_columns``: CSV columns kept as columns of their own (ids, ages; strings stay strings).
    ``fps``: video: the frame rate of folders of frame images (videos carry their own).
    ``frame_size``: video: resize every frame to S x S while decoding.
    """

    path_column: str | None = None
    label_columns: tuple[str, ...] = ()
    base_dir: str | None = None
    delimiter: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_voxels: int = DEFAULT_MAX_VOXELS
    channel: str = "mix"
    audio_dtype: str = "int16"
    keep_columns: tuple[str, ...] = ()
    fps: float | None = None
    frame_size: int | None = None


def detect(
    path: str | os.PathLike[str], kind: str | None = None, options: SourceOptions | None = None
) -> dict[str, Source]:
    """Return ``{split_name: Source}``; a source without splits returns ``{"": source}``.

    ``kind`` forces one of :data:`KINDS`; without it the kind is detected from the path.
    """
    options = options or SourceOptions()
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise SourceError(f"{root} does not exist; check the dataset path")
    if kind is None:
        kind, root = _detect_kind(root)
    elif kind not in KINDS:
        raise SourceError(f"unknown source kind {kind!r}; {opt('kind')} takes one of {', '.join(KINDS)}")
    elif kind in ("cifar", "cifar-bin"):
        root = _cifar_child(root, kind) or root
    sources = dict(_open(kind, root, options))
    for split, src in sources.items():
        src.origin = {"path": str(root), "kind": kind, "options": dataclasses.asdict(options), "split": split}
    return sources


def _is_cifar_python(root: Path) -> bool:
    cifar10 = (root / "data_batch_1").is_file() and (root / "test_batch").is_file()
    cifar100 = all((root / f).is_file() for f in ("train", "test", "meta"))
    return cifar10 or cifar100


def _is_cifar_binary(root: Path) -> bool:
    cifar10 = (root / "data_batch_1.bin").is_file() and (root / "test_batch.bin").is_file()
    cifar100 = (root / "train.bin").is_file() and (root / "test.bin").is_file()
    return cifar10 or cifar100


def _cifar_child(root: Path, kind: str | None) -> Path | None:
    """The one extracted CIFAR folder inside ``root`` (of ``kind`` when given), if any."""
    if not root.is_dir():
        return None
    found = [n for n, k in CIFAR_DIRS.items() if (root / n).is_dir() and kind in (None, k)]
    if len(found) > 1:
        raise SourceError(
            f"{root} holds several CIFAR folders ({', '.join(found)}); pass the one you mean, "
            f"e.g. {root / found[0]}"
        )
    return root / found[0] if found else None


def _detect_kind(root: Path) -> tuple[str, Path]:
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix in (".csv", ".tsv"):
            return "csv", root
        if suffix in (".npz", ".npy"):
            return "arrays", root
        if suffix in (".h5", ".hdf5"):
            return "hdf5", root
    elif _is_cifar_python(root):
        return "cifar", root
    elif _is_cifar_binary(root):
        return "cifar-bin", root
    elif (child := _cifar_child(root, None)) is not None:
        return CIFAR_DIRS[child.name], child
    elif split_pairs(root):
        return "arrays", root
    elif visible_dirs(root) or has_video_files(root, 0):
        return _folder_kind(root), root
    raise SourceError(
        f"cannot tell what kind of dataset {root} is: looked for {_LOOKED_FOR}; "
        f"choose one with {opt('kind')} ({', '.join(KINDS)})"
    )


def _open(kind: str, root: Path, options: SourceOptions) -> dict[str, Source]:
    if kind == "cifar":
        return dict(cifar_python(root))
    if kind == "cifar-bin":
        return dict(cifar_binary(root))
    if kind == "video":
        if not root.is_dir():
            raise SourceError(f"{root} is not a directory; {opt('kind', kind)} needs a folder of clips")
        return dict(video_folder(root, fps=options.fps, frame_size=options.frame_size, channel=options.channel,
                                 dtype=options.audio_dtype))
    if kind in ("imagefolder", "audio", "volumes"):
        if not root.is_dir():
            raise SourceError(f"{root} is not a directory; {opt('kind', kind)} needs root/<class>/<file>")
        if kind == "audio":
            return dict(class_folder(root, AudioFolderSource, channel=options.channel, dtype=options.audio_dtype))
        if kind == "volumes":
            return dict(class_folder(root, VolumeFolderSource, max_voxels=options.max_voxels))
        return dict(class_folder(root, ImageFolderSource, max_pixels=options.max_pixels))
    if kind == "hdf5":
        from .hdf5 import Hdf5Source

        return {"": Hdf5Source(root)}
    if kind == "arrays":
        return dict(_arrays(root))
    return {"": _csv(root, options)}


def _csv(root: Path, options: SourceOptions) -> CsvSource:
    if root.is_dir():
        tables = sorted(p for p in root.iterdir() if p.suffix.lower() in (".csv", ".tsv") and p.is_file())
        if len(tables) != 1:
            raise SourceError(
                f"{root} is a directory with {len(tables)} .csv files; pass the CSV file itself"
            )
        root = tables[0]
    return CsvSource(root, options.path_column, tuple(options.label_columns), options.base_dir, options.delimiter,
                     max_pixels=options.max_pixels, keep_columns=tuple(options.keep_columns),
                     max_voxels=options.max_voxels)


def _folder_kind(root: Path) -> str:
    """'video' when the first folder under ``root`` with item-like files holds a video file; else 'audio' when the
    first of its item-like files is an audio file, else 'imagefolder'."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not is_cache_tree(Path(dirpath) / d))
        if any(is_video_file(f) for f in filenames):
            return "video"
        for f in sorted(filenames):
            if is_image_file(f):
                return "imagefolder"
            if AudioFolderSource.is_item_file(f):
                return "audio"
            if is_volume_path(f) and not f.lower().endswith(".npy"):
                return "volumes"
    return "imagefolder"
