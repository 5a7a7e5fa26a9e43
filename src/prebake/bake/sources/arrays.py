"""Images already decoded into numpy arrays: ``.npz``, ``.npy``, or a folder of split pairs.

- ``data.npz`` with images under one of :data:`IMAGE_KEYS` and, optionally, labels
  under one of :data:`LABEL_KEYS` (and class names under ``classes``/``class_names``).
- ``images.npy``: images alone (items have no label).
- A folder of ``{split}_images.npy`` + ``{split}_labels.npy`` (the layout the old
  preprocessing scripts wrote: ``train_images.npy``, ``test_images.npy``, ...).

Layouts: (N, H, W, C) with C in 1/3/4 (and the second axis not) is transposed per item
to (C, H, W); (N, C, H, W) is kept; (N, H, W) gets C = 1. The dtype is kept. ``.npy``
files are memory-mapped; everything is loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SourceError
from .base import Source

log = logging.getLogger(__name__)

IMAGE_KEYS = ("images", "image", "x", "data", "X")
LABEL_KEYS = ("labels", "label", "y", "targets", "Y")
CLASS_KEYS = ("classes", "class_names")
_NPY_MAGIC = b"\x93NUMPY"


def image_layout(shape: tuple[int, ...], where: str) -> str:
    """``"NHWC"``, ``"NCHW"`` or ``"NHW"`` for an image array shape."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4:
        return "NHWC" if shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4) else "NCHW"
    raise SourceError(
        f"{where} has shape {shape}; expected images shaped (N, H, W), (N, H, W, C) or "
        "(N, C, H, W); wrap other arrays in a Dataset and use DatasetSource"
    )


def load_npy(path: Path) -> np.ndarray:
    """Memory-map a standard ``.npy`` file (never unpickling); clear errors otherwise."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist") from None
    if magic != _NPY_MAGIC:
        raise SourceError(
            f"{path} has no .npy header: it is a raw np.memmap dump (or not numpy at all), whose "
            "shape and dtype are not stored in the file; re-save it with np.save(path, "
            "np.memmap(path, dtype=..., mode='r', shape=...))"
        )
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise SourceError(f"{path} cannot be loaded without pickle ({e}); store numeric arrays") from None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file (loaded into memory, never unpickling)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist") from None
    except (ValueError, OSError) as e:
        raise SourceError(f"{path} is not a readable .npz without pickle: {e}") from None


def _text(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _pick(arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in arrays), None)


def as_labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    """Labels as int64 (N,); integral floats are accepted, anything else is refused."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,):
        raise SourceError(f"{where}: labels have shape {labels.shape} but there are {n} images; expected ({n},)")
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    raise SourceError(f"{where}: labels have dtype {labels.dtype} with non-integer values; expected class indices")


class ArraySource(Source):
    """Items ``{"image": ndarray (C, H, W) in the stored dtype, "label": int}``."""

    kind = "arrays"

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        root: Path,
        files: list[Path],
        params: dict[str, Any],
        classes: list[str] | None = None,
    ):
        where = ", ".join(str(f) for f in files)
        if images.dtype.hasobject or images.dtype.fields is not None:
            raise SourceError(f"{where}: images have dtype {images.dtype}; expected a numeric array")
        self.layout = image_layout(images.shape, where)
        self.images = images
        self.labels = None if labels is None else as_labels(labels, len(images), where)
        self.classes = classes
        self.root = root
        self.files = files
        self.params = {**params, "layout": self.layout, "dtype": str(images.dtype)}
        self._keys = [f"{files[0].name}[{i}]" for i in range(len(images))]

    def keys(self) -> list[str]:
        return self._keys

    def read(self, index: int) -> dict[str, Any]:
        x = self.images[index]
        if self.layout == "NHWC":
            x = x.transpose(2, 0, 1)
        elif self.layout == "NHW":
            x = x[None]
        item: dict[str, Any] = {"image": np.ascontiguousarray(x)}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item

    def describe(self) -> dict[str, Any]:
        """The array files by content (one read at memory speed)."""
        return self.describe_files(self.root, self.params, self.files, content=True)


def from_npz(path: Path) -> ArraySource:
    arrays = load_npz(path)
    image_key = _pick(arrays, IMAGE_KEYS)
    if image_key is None:
        raise SourceError(
            f"{path} holds arrays {sorted(arrays)}, none named one of {list(IMAGE_KEYS)}; "
            "re-save it with np.savez(path, images=..., labels=...)"
        )
    label_key = _pick(arrays, LABEL_KEYS)
    class_key = _pick(arrays, CLASS_KEYS)
    classes = [_text(c) for c in arrays[class_key].tolist()] if class_key else None
    params = {"images": image_key, "labels": label_key}
    labels = arrays[label_key] if label_key else None
    return ArraySource(arrays[image_key], labels, path.parent, [path], params, classes)


def from_npy(path: Path) -> ArraySource:
    return ArraySource(load_npy(path), None, path.parent, [path], {"images": path.name, "labels": None})


def split_pairs(root: Path) -> dict[str, tuple[Path, Path | None]]:
    """``{split: (images file, labels file or None)}`` for ``{split}_images.npy`` files."""
    out: dict[str, tuple[Path, Path | None]] = {}
    for name in sorted(os.listdir(root)):
        if name.endswith("_images.npy") and not name.startswith("."):
            split = name[: -len("_images.npy")]
            labels = root / f"{split}_labels.npy"
            if not labels.is_file():
                log.warning("%s has no %s; its items get no label", root / name, labels.name)
            out[split] = (root / name, labels if labels.is_file() else None)
    return out


def split_dir(root: Path) -> dict[str, ArraySource]:
    pairs = split_pairs(root)
    if not pairs:
        raise SourceError(f"{root} holds no {{split}}_images.npy files (e.g. train_images.npy)")
    out = {}
    for split, (images_path, labels_path) in pairs.items():
        labels = load_npy(labels_path) if labels_path else None
        files = [images_path] + ([labels_path] if labels_path else [])
        params = {"images": images_path.name, "labels": labels_path.name if labels_path else None}
        out[split] = ArraySource(load_npy(images_path), labels, root, files, params)
    return out


def arrays(path: Path) -> dict[str, ArraySource]:
    """Splits of an ``.npz``/``.npy`` file (``{"": source}``) or a split folder."""
    if path.is_dir():
        return split_dir(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return {"": from_npz(path)}
    if suffix == ".npy":
        return {"": from_npy(path)}
    raise SourceError(f"{path} is not a .npz or .npy file nor a folder of {{split}}_images.npy files")
