"""Sources: what a bake reads from. :func:`detect` turns a path into ``{split: Source}``.

Kinds (``detect(path, kind=...)``, CLI ``--kind``):

=============  ===============================================================
``cifar``      CIFAR-10/100 python batches (``cifar-10-batches-py``, ``cifar-100-python``)
``cifar-bin``  CIFAR-10/100 binary (``cifar-10-batches-bin``, ``cifar-100-binary``)
``imagefolder`` ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``
``audio``      ``root/<class>/<recording>`` (any format soundfile reads; or with split folders), a ragged
               ``signal``; on a ``.csv``: a table of recordings
``volumes``    ``root/<class>/<volume>``: NIfTI, DICOM files (by content: ``IM000001``) and series
               directories, MGH, MINC, PAR/REC, AFNI, Analyze, ECAT, ``.npy``
``csv``        a CSV table with a path column (images, volumes, or recordings) and label column(s)
``video``      ``root/<clip>.mp4`` (+ ``<clip>.wav``) or ``root/<clip>/`` (a video or frame images, + audio):
               a ragged uint8 ``frames`` (T, 3, H, W), ``fps``, and a ragged ``audio`` (:mod:`.video`)
``arrays``     ``.npz``, ``.npy`` or a folder of ``{split}_images.npy`` + ``{split}_labels.npy``
``hdf5``       an ``.h5``/``.hdf5`` file: every dataset with one row per item is a column (``hdf5_group``:
               the datasets of one group; ``file.h5/group`` names it too)
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
from .arrays import ArraySource, is_npz, split_pairs
from .arrays import arrays as _arrays
from .audio import AudioFolderSource
from .base import Source
from .by_content import Readers
from .cifar import CifarBinarySource, CifarSource, cifar_binary, cifar_python
from .csvtable import CsvSource
from .dataset import DatasetSource
from .folder import ImageFolderSource, class_folder, is_cache_tree, visible_dirs
from .images import DEFAULT_MAX_PIXELS, decode_image, is_image_file
from .sniff import family, name_family, read_head, sniff
from .video import VideoFolderSource, has_video_files, is_video_file, video_folder
from .volume_folder import VolumeFolderSource
from .volume_formats import is_volume_file
from .volume_readers import DEFAULT_MAX_VOXELS

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
    "{split}_images.npy files, a .csv/.npz/.npy/.h5 file, class subfolders of images, audio files or volumes, "
    "and video files"
)


@dataclass(frozen=True)
class SourceOptions:
    """Options that only some kinds of source use (``csv``, ``audio`` and ``video``).

    ``path_column``: the CSV column of file paths (default: a column named path, file, image, ...).
    ``label_columns``: the CSV label column(s) (default: every other column).
    ``base_dir``: what the CSV's paths are relative to (default: the CSV file's directory).
    ``delimiter``: the CSV field separator (default: detected among ``,`` ``;`` tab ``|``).
    ``max_pixels``: image folders and CSV tables: larger images are bad items, refused from the header.
    ``max_voxels``: volume folders and CSV tables: volumes declaring more voxels are bad items, refused likewise.
    ``channel``: audio channel policy: ``"mix"`` (default), ``"all"`` or an index (``"0"``).
    ``audio_dtype``: the one dtype of every audio signal: ``"int16"`` (default), ``"int32"``, ``"float32"``.
    ``keep_columns``: CSV columns kept as columns of their own (ids, ages; strings stay strings).
    ``fps``: video: the frame rate of folders of frame images (videos carry their own).
    ``frame_size``: video: resize every frame to S x S while decoding.
    ``nan_fill``: volumes: the value NaN and infinite voxels get (counted in the build's notes); None
    (default): such a volume is a bad item.
    ``hdf5_group``: HDF5: the group whose datasets are the columns (default: the file's top level).
    ``channels``: images in folders and CSV tables: ``"1"`` (grey), ``"3"`` (RGB) or ``"keep"`` (each file's
    own); default None: 8-bit images as RGB, alpha dropped, 16-bit grey kept at full depth (see
    :func:`prebake.sources.images.with_channels`).
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
    nan_fill: float | None = None
    hdf5_group: str | None = None
    channels: str | None = None

    @property
    def readers(self) -> Readers:
        """What every file reader of a source needs from these options."""
        return Readers(self.max_pixels, self.max_voxels, self.nan_fill, self.channel, self.audio_dtype, self.channels)


def detect(
    path: str | os.PathLike[str], kind: str | None = None, options: SourceOptions | None = None
) -> dict[str, Source]:
    """Return ``{split_name: Source}``; a source without splits returns ``{"": source}``.

    ``kind`` forces one of :data:`KINDS`; without it the kind is detected from the path.
    """
    options = options or SourceOptions()
    root = Path(path).expanduser().resolve()
    root, options = _hdf5_inner(root, options)
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
        by_content = _file_source_kind(root)
        if by_content is not None:
            return by_content, root
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


def _file_source_kind(path: Path) -> str | None:
    """A file whose name does not say: HDF5 (not MINC-2), ``.npy`` or ``.npz`` by its first bytes."""
    head = read_head(path, 8)
    if head == b"\x89HDF\r\n\x1a\n" and sniff(path) != "minc2":
        return "hdf5"
    if head[:6] == b"\x93NUMPY" or head[:4] == b"PK\x03\x04" and is_npz(path):
        return "arrays"
    return None


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
    if kind == "audio" and root.is_file() and root.suffix.lower() in (".csv", ".tsv"):
        return {"": _csv(root, options, reads="audio")}
    if kind in ("imagefolder", "audio", "volumes"):
        if not root.is_dir():
            raise SourceError(f"{root} is not a directory; {opt('kind', kind)} needs root/<class>/<file>")
        if kind == "audio":
            return dict(class_folder(root, AudioFolderSource, channel=options.channel, dtype=options.audio_dtype))
        if kind == "volumes":
            return dict(class_folder(root, VolumeFolderSource, max_voxels=options.max_voxels,
                                     nan_fill=options.nan_fill))
        return dict(class_folder(root, ImageFolderSource, max_pixels=options.max_pixels, channels=options.channels))
    if kind == "hdf5":
        from .hdf5 import Hdf5Source

        return {"": Hdf5Source(root, options.hdf5_group)}
    if kind == "arrays":
        return dict(_arrays(root))
    return {"": _csv(root, options)}


def _csv(root: Path, options: SourceOptions, reads: str | None = None) -> CsvSource:
    if root.is_dir():
        tables = sorted(p for p in root.iterdir() if p.suffix.lower() in (".csv", ".tsv") and p.is_file())
        if len(tables) != 1:
            raise SourceError(
                f"{root} is a directory with {len(tables)} .csv files; pass the CSV file itself"
            )
        root = tables[0]
    return CsvSource(root, options.path_column, tuple(options.label_columns), options.base_dir, options.delimiter,
                     max_pixels=options.max_pixels, keep_columns=tuple(options.keep_columns),
                     max_voxels=options.max_voxels, reads=reads, readers=options.readers)


def _hdf5_inner(root: Path, options: SourceOptions) -> tuple[Path, SourceOptions]:
    """``file.h5/group/sub`` names a group inside an HDF5 file: the file, and the group as ``hdf5_group``."""
    if root.exists():
        return root, options
    for parent in root.parents:
        if parent.is_file() and parent.suffix.lower() in (".h5", ".hdf5"):
            inner = root.relative_to(parent).as_posix()
            if options.hdf5_group is not None and options.hdf5_group.strip("/") != inner:
                raise SourceError(f"{root} names the group {inner!r} of {parent}, and {opt('hdf5_group')} names "
                                  f"{options.hdf5_group!r}; give one of them")
            return parent, dataclasses.replace(options, hdf5_group=inner)
    return root, options


def _folder_kind(root: Path) -> str:
    """'video' when the first folder under ``root`` with item-like files holds a video file; else what the first
    of its item-like files is (by name; by content for a name without a known suffix, such as ``IM000001``):
    'audio', 'volumes' (a ``.npy`` does not decide), else 'imagefolder'."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not is_cache_tree(Path(dirpath) / d))
        if any(is_video_file(f) for f in filenames):
            return "video"
        for f in sorted(f for f in filenames if not f.startswith(".")):
            kind = _file_kind(Path(dirpath) / f)
            if kind is not None:
                return kind
    return "imagefolder"


def _file_kind(path: Path) -> str | None:
    if is_image_file(path.name):
        return "imagefolder"
    if AudioFolderSource.is_item_file(path.name):
        return "audio"
    if path.name.lower().endswith(".npy"):
        return None
    if is_volume_file(path):
        return "volumes"
    if name_family(path.name) is None:  # no suffix that says: the content does
        return {"image": "imagefolder", "audio": "audio", "volume": "volumes"}.get(family(path) or "")
    return None
