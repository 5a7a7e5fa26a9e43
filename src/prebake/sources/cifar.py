"""CIFAR-10 and CIFAR-100, in the python (pickle) and the binary download formats.

Python version::

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta

Each batch is a Python-2 pickle of a dict with ``data`` (uint8, (N, 3072): the R plane,
then G, then B, each 32x32 row-major, so a reshape to (N, 3, 32, 32) is already CHW) and
``labels`` (CIFAR-100: ``fine_labels`` and ``coarse_labels``). The pickles are read with
:class:`RestrictedUnpickler`, which allows only the numpy globals an array needs, so a
tampered file cannot run code.

Binary version::

    cifar-10-batches-bin/  data_batch_1.bin .. data_batch_5.bin, test_batch.bin, batches.meta.txt
    cifar-100-binary/      train.bin, test.bin, fine_label_names.txt, coarse_label_names.txt

Records are 1 label byte + 3072 pixel bytes (CIFAR-100: coarse byte, fine byte, 3072).

All batches are loaded once in the constructor; :meth:`CifarSource.read` returns a view.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SourceError, UnsafePickleError
from .base import Source

log = logging.getLogger(__name__)

PIXELS = 3 * 32 * 32
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))

#: (module, name) pairs a CIFAR pickle may reference: what numpy arrays need, nothing else.
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; anything else is refused."""

    def __init__(self, file: Any, *, path: Path, **kwargs: Any):
        super().__init__(file, **kwargs)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.path} references {module}.{name}; CIFAR batches only contain numpy "
                "arrays; this file is not a CIFAR batch or has been tampered with"
            )
        if module.startswith("numpy.core."):
            # numpy 2 moved numpy.core to numpy._core; the old name is a deprecated shim.
            try:
                return getattr(importlib.import_module("numpy._core." + module[11:]), name)
            except (ImportError, AttributeError):
                pass
        return super().find_class(module, name)


#: What unpickling a truncated or corrupt (but not unsafe) file raises.
_CORRUPT_PICKLE = (
    pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
    AttributeError, LookupError, OverflowError, MemoryError, struct.error,
)


def load_batch(path: Path) -> dict[str, Any]:
    """Unpickle one CIFAR python file (restricted) into a dict with ``str`` keys."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, path=path, encoding="latin1").load()
    except FileNotFoundError:
        raise SourceError(f"{path} is missing; re-download or re-extract the CIFAR archive") from None
    except UnsafePickleError:
        raise
    except _CORRUPT_PICKLE as e:
        raise SourceError(
            f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}); the file is "
            "truncated or corrupt: re-download or re-extract the CIFAR archive"
        ) from None
    if not isinstance(obj, dict):
        raise SourceError(f"{path} holds a {type(obj).__name__}, expected a dict (a CIFAR batch)")
    out = {_text(k): v for k, v in obj.items()}
    for key, value in out.items():
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            raise SourceError(f"{path}: {key!r} is an object array; CIFAR batches hold uint8 data")
    return out


def _text(x: Any) -> str:
    """Python-2 pickles give str (via latin1); Python-3 writers give bytes."""
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


def _names(meta: dict[str, Any], key: str, path: Path) -> list[str]:
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or not names:
        raise SourceError(f"{path} has no {key!r} list; expected the CIFAR meta file")
    return [_text(n) for n in names]


def _batch_arrays(path: Path, label_keys: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``data`` as (N, 3, 32, 32) uint8 and each label list as int64, validated."""
    batch = load_batch(path)
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise SourceError(f"{path}: 'data' is {got}, expected uint8 (N, {PIXELS}); not a CIFAR batch")
    labels = []
    for key in label_keys:
        try:
            lab = np.asarray(batch[key], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise SourceError(f"{path} has no integer {key!r} list; not a CIFAR batch of this kind") from None
        if lab.shape != (len(data),):
            raise SourceError(f"{path}: {len(data)} images but {key!r} has shape {lab.shape}")
        labels.append(lab)
    return data.reshape(-1, 3, 32, 32), labels


@dataclass
class CifarArrays:
    """The decoded items of one split: images (N, 3, 32, 32) uint8 and int64 labels."""

    images: np.ndarray
    labels: np.ndarray
    counts: list[int]  # items per batch file, in file order (for the keys)
    coarse: np.ndarray | None = None  # CIFAR-100 coarse labels


class CifarSource(Source):
    """One split of CIFAR-10/100 held in memory: ``image`` uint8 (3, 32, 32), ``label`` int.

    CIFAR-100 items also carry ``coarse_label``; ``label`` is the fine label.
    """

    kind = "cifar"

    def __init__(
        self,
        root: Path,
        files: list[str],
        arrays: CifarArrays,
        classes: list[str],
        params: dict[str, Any],
        meta_files: tuple[str, ...] = (),
    ):
        self.root = root
        self.files = list(files)
        self.images = np.ascontiguousarray(arrays.images)
        self.labels = arrays.labels
        self.coarse_labels = arrays.coarse
        self.classes = classes
        self.params = params
        self._identity_files = [*files, *meta_files]
        self._keys = _keys_for(files, arrays.counts)
        bad = (self.labels < 0) | (self.labels >= len(classes))
        if bad.any():
            i = int(np.argmax(bad))
            raise SourceError(
                f"{root}: item {self._keys[i]} has label {self.labels[i]}, expected "
                f"0..{len(classes) - 1} ({len(classes)} class names in the meta file)"
            )

    def keys(self) -> list[str]:
        return self._keys

    def read(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"image": self.images[index], "label": int(self.labels[index])}
        if self.coarse_labels is not None:
            item["coarse_label"] = int(self.coarse_labels[index])
        return item

    def describe(self) -> dict[str, Any]:
        """The batch files by content: a few large files, hashed at memory speed (one read)."""
        return self.describe_files(self.root, self.params, [self.root / f for f in self._identity_files],
                                   content=True)


class CifarBinarySource(CifarSource):
    """CIFAR-10/100 from the binary download (same items as :class:`CifarSource`)."""

    kind = "cifar-bin"


def _keys_for(files: list[str], counts: list[int]) -> list[str]:
    keys: list[str] = []
    for name, n in zip(files, counts):
        stem = name[:-4] if name.endswith(".bin") else name
        keys.extend(f"{stem}/{i:05d}" for i in range(n))
    return keys


def cifar_python(root: Path) -> dict[str, CifarSource]:
    """Splits of a ``cifar-10-batches-py`` or ``cifar-100-python`` directory."""
    if (root / "data_batch_1").is_file() or (root / "test_batch").is_file():
        return _cifar10_python(root)
    if (root / "train").is_file() and (root / "meta").is_file():
        return _cifar100_python(root)
    raise SourceError(
        f"{root} holds neither CIFAR-10 python batches (data_batch_1..5, test_batch) nor "
        "CIFAR-100 python files (train, test, meta); point at the extracted "
        "cifar-10-batches-py or cifar-100-python directory"
    )


def _cifar10_python(root: Path) -> dict[str, CifarSource]:
    meta_path = root / "batches.meta"
    if meta_path.is_file():
        classes = _names(load_batch(meta_path), "label_names", meta_path)
        meta: tuple[str, ...] = ("batches.meta",)
    else:
        log.warning("%s is missing; using the standard CIFAR-10 class names", meta_path)
        classes, meta = list(CIFAR10_CLASSES), ()
    out = {}
    for split, files in (("train", list(CIFAR10_TRAIN)), ("test", ["test_batch"])):
        parts = [_batch_arrays(root / f, ("labels",)) for f in files]
        arrays = CifarArrays(
            images=np.concatenate([p[0] for p in parts]),
            labels=np.concatenate([p[1][0] for p in parts]),
            counts=[len(p[0]) for p in parts],
        )
        params = {"variant": "cifar10", "format": "python", "split": split}
        out[split] = CifarSource(root, files, arrays, classes, params, meta_files=meta)
    return out


def _cifar100_python(root: Path) -> dict[str, CifarSource]:
    meta_path = root / "meta"
    meta = load_batch(meta_path)
    classes = _names(meta, "fine_label_names", meta_path)
    coarse_names = _names(meta, "coarse_label_names", meta_path)
    out = {}
    for split in ("train", "test"):
        images, (fine, coarse) = _batch_arrays(root / split, ("fine_labels", "coarse_labels"))
        arrays = CifarArrays(images, fine, [len(images)], coarse)
        params = {"variant": "cifar100", "format": "python", "split": split,
                  "coarse_label_names": coarse_names}
        out[split] = CifarSource(root, [split], arrays, classes, params, meta_files=("meta",))
    return out


def _read_records(path: Path, label_bytes: int) -> np.ndarray:
    """The binary file as (N, label_bytes + 3072) uint8 records."""
    record = label_bytes + PIXELS
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SourceError(f"{path} is missing; re-download or re-extract the CIFAR binary archive") from None
    if size == 0 or size % record:
        raise SourceError(
            f"{path} is {size:,} bytes, not a multiple of the {record}-byte CIFAR record "
            f"({label_bytes} label byte(s) + {PIXELS} pixels); the file is truncated or not "
            "this CIFAR variant: re-download it"
        )
    return np.fromfile(path, dtype=np.uint8).reshape(-1, record)


def _label_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SourceError(f"{path} is missing; it holds the class names of the CIFAR binary download") from None
    return [line.strip() for line in lines if line.strip()]


def cifar_binary(root: Path) -> dict[str, CifarSource]:
    """Splits of a ``cifar-10-batches-bin`` or ``cifar-100-binary`` directory."""
    if (root / "data_batch_1.bin").is_file() or (root / "test_batch.bin").is_file():
        classes = _label_file(root / "batches.meta.txt")
        layout = {"train": [f"{f}.bin" for f in CIFAR10_TRAIN], "test": ["test_batch.bin"]}
        return {s: _binary_split(root, s, files, classes, "cifar10", ("batches.meta.txt",))
                for s, files in layout.items()}
    if (root / "train.bin").is_file() or (root / "test.bin").is_file():
        classes = _label_file(root / "fine_label_names.txt")
        metas = ("fine_label_names.txt", "coarse_label_names.txt")
        return {s: _binary_split(root, s, [f"{s}.bin"], classes, "cifar100", metas) for s in ("train", "test")}
    raise SourceError(
        f"{root} holds neither CIFAR-10 binary batches (data_batch_1.bin..5, test_batch.bin) nor "
        "CIFAR-100 binary files (train.bin, test.bin); point at the extracted "
        "cifar-10-batches-bin or cifar-100-binary directory"
    )


def _binary_split(
    root: Path, split: str, files: list[str], classes: list[str], variant: str, metas: tuple[str, ...]
) -> CifarBinarySource:
    label_bytes = 2 if variant == "cifar100" else 1
    records = [_read_records(root / f, label_bytes) for f in files]
    rec = records[0] if len(records) == 1 else np.concatenate(records)
    arrays = CifarArrays(
        images=np.ascontiguousarray(rec[:, label_bytes:]).reshape(-1, 3, 32, 32),
        labels=rec[:, label_bytes - 1].astype(np.int64),
        counts=[len(r) for r in records],
        coarse=rec[:, 0].astype(np.int64) if variant == "cifar100" else None,
    )
    params: dict[str, Any] = {"variant": variant, "format": "binary", "split": split}
    if variant == "cifar100":
        params["coarse_label_names"] = _label_file(root / "coarse_label_names.txt")
    return CifarBinarySource(root, files, arrays, classes, params, meta_files=metas)
