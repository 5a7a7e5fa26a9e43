"""Arrays already in numpy files: ``.npz``, ``.npy``, or a folder of split pairs.

- ``data.npz``: every array with one row per item is a column, under its own name.
  Images (an array under one of :data:`IMAGE_KEYS` shaped like images) become the
  ``image`` column in (C, H, W); integer labels under one of :data:`LABEL_KEYS` become
  ``label`` (int64); class names under ``classes``/``class_names`` become the classes.
  So ``np.savez("f.npz", x=features, y=labels)`` bakes columns ``x`` and ``label``.
- 0-d entries of an ``.npz`` (``np.savez(f, x=x, sample_rate=16000)``) are no columns but
  **attributes** of the cache: their values (numbers, booleans, text) are kept in the source's
  identity, so in the manifest (``fingerprint.inputs.source.params.attributes``), and a change
  rebuilds. A ``scipy.sparse.save_npz`` file is refused, naming what to do instead.
- ``name.npy``: one array; ``image`` when shaped like images, else a column ``name``.
- A folder of ``{split}_images.npy`` + ``{split}_labels.npy`` (the layout the old
  preprocessing scripts wrote: ``train_images.npy``, ``test_images.npy``, ...).

Image layouts: (N, H, W, C) with C in 1/3/4 (and the second axis not) is transposed per
item to (C, H, W); (N, C, H, W) is kept; (N, H, W) gets C = 1. What counts as images:
anything 3-D or 4-D under ``images``/``image``; under ``x``/``X``/``data`` only a 4-D
array with a channel axis of 1, 3 or 4, or a 3-D uint8 one. Dtypes are kept. ``.npy``
files are memory-mapped; everything is loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import mmap
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from ..cache.format import validate_column_name
from ..errors import FormatError, SourceError
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
        f"{where} has shape {shape}; expected images shaped (N, H, W), (N, H, W, C) or (N, C, H, W); "
        "save other arrays under another name (they become columns of their own)"
    )


def looks_like_images(name: str, a: np.ndarray) -> bool:
    """True for the image array of a file (see the module docstring for the rule)."""
    if name in ("images", "image"):
        return a.ndim in (3, 4)
    if name in IMAGE_KEYS:
        channel_axis = a.ndim == 4 and (a.shape[1] in (1, 3, 4) or a.shape[-1] in (1, 3, 4))
        return channel_axis or (a.ndim == 3 and a.dtype == np.uint8)
    return False


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


def _is_npy(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(6) == _NPY_MAGIC
    except OSError:
        return False


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


def _integral(labels: np.ndarray) -> bool:
    a = np.asarray(labels)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    return a.ndim == 1 and (a.dtype.kind in "iub" or a.dtype.kind == "f" and bool(np.all(np.isfinite(a)))
                            and bool(np.all(a == np.round(a))))


class ArraySource(Source):
    """Items with one value per column; ``image`` as (C, H, W) in its stored dtype, ``label`` as int.

    ``columns`` maps a column name to its array (one row per item); ``image`` and
    ``label`` get the conversions the module docstring describes.
    """

    kind = "arrays"

    def __init__(self, columns: dict[str, np.ndarray], root: Path, files: list[Path], params: dict[str, Any],
                 classes: list[str] | None = None):
        where = ", ".join(str(f) for f in files)
        for name, a in columns.items():  # before len(): a 0-d array has none
            if a.dtype.hasobject or a.dtype.fields is not None or a.ndim == 0:
                raise SourceError(f"{where}: array {name!r} has dtype {a.dtype} and shape {a.shape}; expected a "
                                  "numeric, bool or string array with one row per item")
        lengths = {name: len(a) for name, a in columns.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n} ({k:,})" for n, k in lengths.items())
            raise SourceError(f"{where}: arrays of different lengths: {shown}; each array is a column and needs "
                              "one row per item")
        self.layout = image_layout(columns["image"].shape, where) if "image" in columns else None
        if "label" in columns:
            columns = {**columns, "label": as_labels(columns["label"], len(columns["label"]), where)}
        self.columns = columns
        self.classes = classes
        self.root, self.files = root, files
        self.params = {**params, "layout": self.layout, "dtypes": {n: str(a.dtype) for n, a in columns.items()}}
        n = next(iter(lengths.values()), 0)
        self._keys = [f"{files[0].name}[{i}]" for i in range(n)]

    def keys(self) -> list[str]:
        return self._keys

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for Ray workers) with each memory-mapped ``.npy`` column as its path, shape and
        dtype: every worker maps the file again, instead of receiving a copy of its bytes."""
        columns = {n: _Mapped(str(a.filename), a.shape, str(a.dtype)) if _maps_whole_file(a) else a
                   for n, a in self.columns.items()}
        return {**self.__dict__, "columns": columns}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["columns"] = {n: a.load() if isinstance(a, _Mapped) else a for n, a in state["columns"].items()}
        self.__dict__.update(state)

    def read(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for name, a in self.columns.items():
            if name == "image":
                x = a[index]
                x = x.transpose(2, 0, 1) if self.layout == "NHWC" else x[None] if self.layout == "NHW" else x
                item[name] = np.ascontiguousarray(x)
            elif name == "label":
                item[name] = int(a[index])
            else:  # a[index, ...]: a 1-D column's value as a 0-d array, so its dtype (>i4 too) is kept, not a scalar's
                item[name] = a[index, ...]
        return item

    def describe(self) -> dict[str, Any]:
        """The array files by content (one read at memory speed)."""
        return self.describe_files(self.root, self.params, self.files, content=True)


@dataclass(frozen=True)
class _Mapped:
    """A memory-mapped ``.npy`` column in a pickle: mapped again where it is unpickled."""

    path: str
    shape: tuple[int, ...]
    dtype: str

    def load(self) -> np.ndarray:
        a = load_npy(Path(self.path))
        if a.shape != self.shape or str(a.dtype) != self.dtype:
            raise SourceError(f"{self.path} changed while it was being baked: it holds {a.dtype} {a.shape}, the build "
                              f"started from {self.dtype} {self.shape}; run the build again")
        return a


def _maps_whole_file(a: np.ndarray) -> TypeGuard[np.memmap]:
    """``a`` is a read-only map of a whole ``.npy`` file as :func:`load_npy` returns it (not a view of one)."""
    return isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and a.filename is not None and a.mode == "r"


def _check_name(name: str, path: Path) -> None:
    try:
        validate_column_name(name)
    except FormatError as e:
        raise SourceError(f"{path}: array {name!r} cannot be a column: {e}; rename it") from None


_SPARSE_KEYS = {"data", "indices", "indptr", "format", "shape"}


def attributes(arrays: dict[str, np.ndarray], path: Path) -> dict[str, Any]:
    """The 0-d entries of an ``.npz`` as JSON values (removed from ``arrays``); a sparse matrix is refused."""
    if _SPARSE_KEYS <= set(arrays) or {"row", "col", "format", "shape", "data"} <= set(arrays):
        fmt = _text(arrays["format"].item()) if arrays["format"].ndim == 0 else "?"
        raise SourceError(f"{path} is a scipy.sparse matrix ({fmt}, shape {arrays['shape'].tolist()}) saved with "
                          "scipy.sparse.save_npz, not one array per column; bake it from Python "
                          "(scipy.sparse.load_npz(path).toarray() as a column, or a Dataset of its rows), or save "
                          "it dense with np.savez")
    out = {}
    for name in [k for k, a in arrays.items() if a.ndim == 0]:
        out[name] = _json_value(arrays.pop(name), name, path)
    return out


def _json_value(a: np.ndarray, name: str, path: Path) -> Any:
    """A 0-d array as the JSON value the manifest can hold."""
    if a.dtype.kind in "biuf":
        value = a.item()
        if isinstance(value, float) and not np.isfinite(value):
            return str(value)  # JSON has no NaN or infinity
        return value
    if a.dtype.kind in "SU":
        return _text(a.item())
    if a.dtype.kind in "Mm":
        return str(a)
    raise SourceError(f"{path}: the 0-d entry {name!r} has dtype {a.dtype}, which a cache attribute (a JSON value: a "
                      "number, a boolean or text) cannot hold; save it as a number or text, or as an array with one "
                      "row per item")


def from_npz(path: Path) -> ArraySource:
    arrays = load_npz(path)
    attrs = attributes(arrays, path)
    class_key = _pick(arrays, CLASS_KEYS)
    classes = [_text(c) for c in arrays.pop(class_key).tolist()] if class_key else None
    if not arrays:
        extra = f" and the 0-d entries {sorted(attrs)} (attributes)" if attrs else ""
        raise SourceError(f"{path} holds no arrays besides the class names{extra}; save the data with np.savez")
    image_key = next((k for k in IMAGE_KEYS if k in arrays and looks_like_images(k, arrays[k])), None)
    label_key = next((k for k in LABEL_KEYS if k in arrays and _integral(arrays[k])), None)
    renamed = {image_key: "image", label_key: "label"}
    columns = {renamed.get(k, k): a for k, a in arrays.items()}
    for name in columns:
        _check_name(name, path)
    params = {"images": image_key, "labels": label_key, "columns": sorted(columns),
              **({"attributes": attrs} if attrs else {})}
    return ArraySource(columns, path.parent, [path], params, classes)


def from_npy(path: Path) -> ArraySource:
    a = load_npy(path)
    name = "image" if a.ndim in (3, 4) and (a.dtype == np.uint8 or looks_like_images("x", a)) else path.stem
    _check_name(name, path)
    return ArraySource({name: a}, path.parent, [path], {"images": path.name if name == "image" else None,
                                                         "labels": None, "columns": [name]})


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
        columns = {"image": load_npy(images_path), **({"label": labels} if labels is not None else {})}
        out[split] = ArraySource(columns, root, files, params)
    return out


def is_npz(path: Path) -> bool:
    """A zip archive of ``.npy`` members (what ``np.savez`` writes), whatever its name."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def arrays(path: Path) -> dict[str, ArraySource]:
    """Splits of an ``.npz``/``.npy`` file (``{"": source}``, by suffix, else by content) or a split folder."""
    if path.is_dir():
        return split_dir(path)
    suffix = path.suffix.lower()
    if suffix == ".npz" or suffix != ".npy" and is_npz(path):
        return {"": from_npz(path)}
    if suffix == ".npy" or _is_npy(path):
        return {"": from_npy(path)}
    raise SourceError(f"{path} is not a .npz or .npy file nor a folder of {{split}}_images.npy files")
