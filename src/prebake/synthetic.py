"""Small synthetic datasets written in the real on-disk formats.

Used by the tests, ``prebake demo`` and the benchmarks, so that every source is exercised
on real files without downloading anything. The pixels are class-dependent patterns
(a coloured disk, square, stripes, ... over a second colour, with a gradient), shifted per
image, plus seeded noise: learnable, deterministic, and generated with vectorised numpy
(60,000 CIFAR images in about a second).

The arrays behind a CIFAR writer are recomputed by :func:`cifar_arrays` with the same
arguments, so tests can compare every pixel.
"""

from __future__ import annotations

import colorsys
import io
import os
import pickle
import struct
import wave
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .sources.cifar import CIFAR10_CLASSES

#: The real CIFAR-100 superclasses (coarse labels) and their five classes each.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE = tuple(CIFAR100_SUPERCLASSES)
CIFAR100_FINE = tuple(sorted(f for fines in CIFAR100_SUPERCLASSES.values() for f in fines))
#: fine label -> coarse label, as in the real CIFAR-100.
CIFAR100_FINE_TO_COARSE = np.array(
    [next(c for c, (_, fines) in enumerate(CIFAR100_SUPERCLASSES.items()) if f in fines) for f in CIFAR100_FINE],
    dtype=np.int64,
)

_VARIANTS = 8
_NOISE = 32  # templates use [0, 255 - _NOISE], noise adds [0, _NOISE]
_SPLIT_CODES = {"train": 0, "test": 1}
_README = (
    "<html><body><p>SYNTHETIC data written by prebake.synthetic: class-dependent patterns "
    "plus noise, in the file layout of the real {name} download. These are NOT the real "
    "{name} images.</p></body></html>\n"
)


def _colour(c: int, shift: float = 0.0) -> np.ndarray:
    hue = (c * 0.61803398875 + shift) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, 0.55 + 0.4 * ((c * 7) % 3) / 2, 0.9), dtype=np.float32)


def _mask(c: int, yy: np.ndarray, xx: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """The class's shape on a [0, 1) grid, centred at (0.5 + dy, 0.5 + dx)."""
    y, x = yy - 0.5 - dy, xx - 0.5 - dx
    size = 0.18 + 0.04 * ((c // 5) % 4)
    freq = 2 + (c // 5) % 5
    shape = c % 5
    if shape == 0:
        m = (y * y + x * x) < size * size
    elif shape == 1:
        m = (np.abs(y) < size) & (np.abs(x) < size)
    elif shape == 2:
        m = np.sin(2 * np.pi * freq * y) > 0
    elif shape == 3:
        m = np.sin(2 * np.pi * freq * (x + y)) > 0
    else:
        r = np.sqrt(y * y + x * x)
        m = (r > size * 0.6) & (r < size * 1.3)
    return m.astype(np.float32)


def class_templates(num_classes: int, height: int = 32, width: int = 32) -> np.ndarray:
    """uint8 (num_classes, variants, 3, H, W) in [0, 255 - noise]: shifted class patterns."""
    yy, xx = np.meshgrid(
        (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij"
    )
    shifts = np.linspace(-0.12, 0.12, _VARIANTS)
    out = np.empty((num_classes, _VARIANTS, 3, height, width), dtype=np.uint8)
    shade = (0.7 + 0.3 * yy)[None].astype(np.float32)
    for c in range(num_classes):
        fg, bg = _colour(c), _colour(c, 0.5) * 0.6
        for v in range(_VARIANTS):
            m = _mask(c, yy, xx, shifts[v], shifts[(v * 3) % _VARIANTS])[None]
            img = (fg[:, None, None] * m + bg[:, None, None] * (1 - m)) * shade
            out[c, v] = np.rint(img * (255 - _NOISE)).astype(np.uint8)
    return out


def synthetic_images(labels: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 3, H, W): each label's template (a random variant) plus uniform noise."""
    num_classes = int(labels.max()) + 1 if len(labels) else 1
    templates = class_templates(num_classes, height, width)
    variant = rng.integers(0, _VARIANTS, size=len(labels))
    images = templates[labels, variant]
    # Per-pixel noise for 60,000 images costs ~1 s to draw; the sum of two rows from two
    # small noise banks is 0.2 s and leaves a million distinct noise fields.
    rows = min(len(labels), 1024)
    for _ in range(2):
        bank = rng.integers(0, _NOISE // 2 + 1, size=(rows, 3, height, width), dtype=np.uint8)
        images += bank[rng.integers(0, rows, size=len(labels))]
    return images


def balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Each class n // num_classes or one more times, in a seeded random order."""
    return rng.permutation(np.arange(n, dtype=np.int64) % num_classes)


def cifar_arrays(n: int, num_classes: int = 10, seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The images uint8 (n, 3, 32, 32) and labels int64 (n,) the CIFAR writers write."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], num_classes])
    labels = balanced_labels(n, num_classes, rng)
    return synthetic_images(labels, 32, 32, rng), labels


def _check_counts(n_train: int, n_test: int) -> None:
    # An empty batch would pickle b"" as a call to builtins.bytes, which the restricted
    # unpickler rightly refuses; the real downloads never have empty batches.
    if n_train < 5 or n_test < 1:
        raise ValueError(f"n_train={n_train}, n_test={n_test}: need n_train >= 5 (5 batches) and n_test >= 1")


def _dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _filenames(labels: np.ndarray, names: Sequence[str], start: int = 0) -> list[bytes]:
    return [f"{names[y]}_s_{start + i:06d}.png".encode() for i, y in enumerate(labels.tolist())]


def cifar10_once(root: str | os.PathLike[str], n_train: int, n_test: int, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/``, written by :func:`write_cifar10_python` only if it is not there yet
    (benchmarks keep their data between runs); returns that folder."""
    out = Path(root) / "cifar-10-batches-py"
    if not (out / "batches.meta").exists():
        write_cifar10_python(root, n_train=n_train, n_test=n_test, seed=seed)
    return out


def write_cifar10_python(
    root: str | os.PathLike[str], n_train: int = 500, n_test: int = 100, seed: int = 0
) -> Path:
    """Write ``root/cifar-10-batches-py/`` like the real download; return that folder."""
    _check_counts(n_train, n_test)
    out = Path(root) / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    images, labels = cifar_arrays(n_train, 10, seed, "train")
    chunks = np.array_split(np.arange(n_train), 5)
    for k, idx in enumerate(chunks, start=1):
        _dump(out / f"data_batch_{k}", {
            b"batch_label": f"synthetic training batch {k} of 5".encode(),
            b"labels": labels[idx].tolist(),
            b"data": images[idx].reshape(len(idx), 3072),
            b"filenames": _filenames(labels[idx], CIFAR10_CLASSES, int(idx[0]) if len(idx) else 0),
        })
    images, labels = cifar_arrays(n_test, 10, seed, "test")
    _dump(out / "test_batch", {
        b"batch_label": b"synthetic testing batch 1 of 1",
        b"labels": labels.tolist(),
        b"data": images.reshape(n_test, 3072),
        b"filenames": _filenames(labels, CIFAR10_CLASSES),
    })
    _dump(out / "batches.meta", {
        b"num_cases_per_batch": len(chunks[0]),
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_vis": 3072,
    })
    (out / "readme.html").write_text(_README.format(name="CIFAR-10"))
    return out


def write_cifar100_python(
    root: str | os.PathLike[str], n_train: int = 500, n_test: int = 100, seed: int = 0
) -> Path:
    """Write ``root/cifar-100-python/`` (train, test, meta) like the real download."""
    _check_counts(n_train, n_test)
    out = Path(root) / "cifar-100-python"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images, fine = cifar_arrays(n, 100, seed, split)
        _dump(out / split, {
            b"filenames": _filenames(fine, CIFAR100_FINE),
            b"batch_label": f"synthetic {split}ing batch 1 of 1".encode(),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": CIFAR100_FINE_TO_COARSE[fine].tolist(),
            b"data": images.reshape(n, 3072),
        })
    _dump(out / "meta", {
        b"fine_label_names": [c.encode() for c in CIFAR100_FINE],
        b"coarse_label_names": [c.encode() for c in CIFAR100_COARSE],
    })
    (out / "readme.html").write_text(_README.format(name="CIFAR-100"))
    return out


def _records(images: np.ndarray, *label_columns: np.ndarray) -> np.ndarray:
    k = len(label_columns)
    rec = np.empty((len(images), k + 3072), dtype=np.uint8)
    for i, col in enumerate(label_columns):
        rec[:, i] = col
    rec[:, k:] = images.reshape(len(images), -1)
    return rec


def write_cifar10_binary(
    root: str | os.PathLike[str], n_train: int = 500, n_test: int = 100, seed: int = 0
) -> Path:
    """Write ``root/cifar-10-batches-bin/`` (same pixels as :func:`write_cifar10_python`)."""
    _check_counts(n_train, n_test)
    out = Path(root) / "cifar-10-batches-bin"
    out.mkdir(parents=True, exist_ok=True)
    images, labels = cifar_arrays(n_train, 10, seed, "train")
    for k, idx in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _records(images[idx], labels[idx]).tofile(out / f"data_batch_{k}.bin")
    images, labels = cifar_arrays(n_test, 10, seed, "test")
    _records(images, labels).tofile(out / "test_batch.bin")
    (out / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    (out / "readme.html").write_text(_README.format(name="CIFAR-10"))
    return out


def write_cifar100_binary(
    root: str | os.PathLike[str], n_train: int = 500, n_test: int = 100, seed: int = 0
) -> Path:
    """Write ``root/cifar-100-binary/`` (records: coarse byte, fine byte, 3072 pixels)."""
    _check_counts(n_train, n_test)
    out = Path(root) / "cifar-100-binary"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images, fine = cifar_arrays(n, 100, seed, split)
        _records(images, CIFAR100_FINE_TO_COARSE[fine], fine).tofile(out / f"{split}.bin")
    (out / "fine_label_names.txt").write_text("\n".join(CIFAR100_FINE) + "\n")
    (out / "coarse_label_names.txt").write_text("\n".join(CIFAR100_COARSE) + "\n")
    return out


_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "webp": "WEBP", "tif": "TIFF",
                "tiff": "TIFF"}


def _save(image_chw: np.ndarray, path: Path) -> None:
    fmt = _PIL_FORMATS[path.suffix[1:].lower()]
    Image.fromarray(np.ascontiguousarray(image_chw.transpose(1, 2, 0))).save(path, fmt)


def write_image_folder(
    root: str | os.PathLike[str],
    classes: Sequence[str] = ("cat", "dog"),
    per_class: int = 4,
    size: tuple[int, int] = (32, 24),
    fmt: str = "png",
    seed: int = 0,
    splits: Sequence[str] | None = None,
) -> Path:
    """Write ``root/<class>/<class>_NNN.<fmt>`` (or ``root/<split>/<class>/...``); return root.

    ``size`` is (width, height), as in Pillow.
    """
    root = Path(root)
    width, height = size
    for s, split in enumerate(splits or [None]):
        base = root / split if split else root
        rng = np.random.default_rng([seed, s, len(classes)])
        labels = np.repeat(np.arange(len(classes)), per_class)
        images = synthetic_images(labels, height, width, rng)
        for i, (img, y) in enumerate(zip(images, labels.tolist())):
            folder = base / classes[y]
            folder.mkdir(parents=True, exist_ok=True)
            _save(img, folder / f"{classes[y]}_{i % per_class:03d}.{fmt}")
    return root


def write_csv_table(
    root: str | os.PathLike[str],
    n: int = 12,
    labels: str = "single",
    size: tuple[int, int] = (32, 32),
    seed: int = 0,
    bad_rows: bool = False,
) -> Path:
    """Write ``root/scans/NNNN.png`` and ``root/labels.csv``; return the CSV path.

    ``labels``: ``"single"`` (``image_path,diagnosis`` with benign/malignant/normal),
    ``"int"`` (``image_path,grade`` 0..3) or ``"multi"`` (``image_path,effusion,nodule,pneumonia``
    0/1). ``bad_rows`` appends a row naming a missing file, one with an empty path and
    one with too few fields (CSV lines n + 2, n + 3, n + 4).
    """
    root = Path(root)
    (root / "scans").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, n])
    num = {"single": 3, "int": 4, "multi": 3}[labels]
    y = balanced_labels(n, num, rng)
    for i, img in enumerate(synthetic_images(y, size[1], size[0], rng)):
        _save(img, root / "scans" / f"{i:04d}.png")
    if labels == "multi":
        header = "image_path,effusion,nodule,pneumonia"
        onehot = (rng.random((n, 3)) < 0.3).astype(int)
        rows = [f"scans/{i:04d}.png," + ",".join(map(str, onehot[i])) for i in range(n)]
    else:
        names = ("benign", "malignant", "normal") if labels == "single" else tuple("0123")
        header = "image_path," + ("diagnosis" if labels == "single" else "grade")
        rows = [f"scans/{i:04d}.png,{names[v]}" for i, v in enumerate(y.tolist())]
    if bad_rows:
        labels_of_first = rows[0].split(",", 1)[1] if rows else ""
        rows += [f"scans/missing.png,{labels_of_first}", f",{labels_of_first}", "scans/0000.png"]
    path = root / "labels.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def write_npz(
    root: str | os.PathLike[str],
    n: int = 16,
    layout: str = "NHWC",
    fmt: str = "npz",
    size: tuple[int, int] = (32, 32),
    dtype: str = "uint8",
    seed: int = 0,
) -> Path:
    """Write images (+ labels) as ``data.npz``, ``images.npy`` or a split folder; return the path.

    ``layout``: NHWC, NCHW or NHW (grayscale); ``fmt``: ``"npz"``, ``"npy"`` (images only)
    or ``"split"`` (``train_images.npy``/``train_labels.npy`` with n items and ``test_*``
    with n // 4). ``dtype`` ``"float32"`` stores values in [0, 1].
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    def make(count: int, split: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, split, count])
        labels = balanced_labels(count, 10, rng)
        x = synthetic_images(labels, size[1], size[0], rng)
        if layout == "NHW":
            x = x.mean(axis=1).round().astype(np.uint8)
        elif layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return (x.astype(np.float32) / 255 if dtype == "float32" else x), labels

    if fmt == "split":
        for split, count in (("train", n), ("test", max(n // 4, 1))):
            x, y = make(count, _SPLIT_CODES[split])
            np.save(root / f"{split}_images.npy", x)
            np.save(root / f"{split}_labels.npy", y)
        return root
    x, y = make(n, 0)
    if fmt == "npy":
        np.save(root / "images.npy", x)
        return root / "images.npy"
    np.savez(root / "data.npz", images=x, labels=y)
    return root / "data.npz"


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def write_bad_images(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Write files that must each become a bad item; return ``{file name: reason substring}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    encoded = {}
    for fmt in ("JPEG", "PNG", "WEBP"):
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, fmt)
        encoded[fmt] = buf.getvalue()
    files = {
        "truncated.jpg": (encoded["JPEG"][: len(encoded["JPEG"]) // 2], "truncated image"),
        "truncated.png": (encoded["PNG"][: len(encoded["PNG"]) // 2], "truncated image"),
        "truncated.webp": (encoded["WEBP"][: len(encoded["WEBP"]) // 2], "truncated image"),
        "garbage.jpg": (b"\x01\x02garbage" + rng.bytes(500), "not a readable image"),
        "empty.png": (b"", "empty file (0 bytes)"),
        "text.png": (b"patient_id,diagnosis\n17,benign\n", "not a readable image"),
        "bomb.png": (_png_header_only(20000, 20000), "decompression bomb"),
    }
    for name, (data, _) in files.items():
        (directory / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def heart_sound(n: int, rate: int, abnormal: bool, rng: np.random.Generator) -> np.ndarray:
    """A phonocardiogram-like float signal in [-1, 1]: S1/S2 thumps, plus a murmur if ``abnormal``."""
    t = np.arange(n) / rate
    beat = 60.0 / rng.uniform(60, 100)
    phase = np.mod(t, beat)
    out = np.zeros(n)
    for onset, freq in ((0.0, rng.uniform(40, 60)), (0.3 * beat, rng.uniform(60, 90))):  # S1, S2
        dt = phase - onset
        on = (dt >= 0) & (dt < 0.1)
        out[on] += np.sin(2 * np.pi * freq * dt[on]) * np.exp(-dt[on] / 0.03)
    if abnormal:  # a systolic murmur: band noise between S1 and S2
        systole = (phase > 0.1) & (phase < 0.3 * beat)
        out[systole] += 0.3 * np.sin(2 * np.pi * 150 * t[systole]) * rng.uniform(0.5, 1, systole.sum())
    out += 0.02 * rng.standard_normal(n)
    return np.clip(out / max(1e-9, np.abs(out).max()), -1, 1)


def _burst(t: np.ndarray, centre: float, sigma: float, freqs: Sequence[float]) -> np.ndarray:
    """A Gaussian-windowed sum of tones centred at ``centre`` seconds (a heart sound)."""
    window = np.exp(-0.5 * ((t - centre) / sigma) ** 2)
    return window * sum(np.cos(2 * np.pi * f * (t - centre)) for f in freqs) / len(freqs)


def pcg(seconds: float, rate: int, bpm: float, snr_db: float | None = 20.0, murmur: bool = False,
        rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic phonocardiogram and where its heart sounds are: ``(signal, s1, s2)``.

    ``signal`` is float64 in [-1, 1]; ``s1`` and ``s2`` are the centres (in samples) of every
    S1 and S2 sound planted. Beats follow ``bpm`` with 3 % beat-to-beat variation; the S1-S2
    interval is ``0.1 + 0.2 * period`` seconds (it shortens less than diastole as the heart
    speeds up). S1 is a 25-70 Hz burst of about 100 ms, S2 a 50-110 Hz one of about 80 ms at
    0.5-0.9 of S1's amplitude. ``murmur`` adds a 150-400 Hz systolic murmur (band noise between
    S1 and S2); ``snr_db`` adds white noise at that signal-to-noise ratio (None: none).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    period = 60.0 / bpm
    out = np.zeros(n)
    s1, s2 = [], []
    beat = rng.uniform(0.05, 0.6) * period
    while beat < seconds:
        p = period * rng.uniform(0.97, 1.03)
        systole = 0.1 + 0.2 * p
        lo = max(0, int((beat - 0.2) * rate))
        hi = min(n, int((beat + systole + 0.2) * rate))
        seg = t[lo:hi]
        out[lo:hi] += _burst(seg, beat, 0.02, rng.uniform(25, 70, 2).tolist())
        out[lo:hi] += rng.uniform(0.5, 0.9) * _burst(seg, beat + systole, 0.016, rng.uniform(50, 110, 2).tolist())
        if murmur:
            inside = (seg > beat + 0.06) & (seg < beat + systole - 0.05)
            tone = sum(np.sin(2 * np.pi * f * seg + rng.uniform(0, 6.3)) for f in rng.uniform(150, 400, 4))
            out[lo:hi] += np.where(inside, 0.08 * tone * rng.uniform(0.5, 1, len(seg)), 0.0)
        s1.append(beat * rate)
        s2.append((beat + systole) * rate)
        beat += p
    if snr_db is not None:
        power = float(np.mean(out**2))
        out = out + rng.standard_normal(n) * np.sqrt(power / 10 ** (snr_db / 10))
    keep1, keep2 = np.array(s1) < n, np.array(s2) < n
    return out / max(1e-9, float(np.abs(out).max())), np.array(s1)[keep1], np.array(s2)[keep2]


def write_wav(path: Path, signal: np.ndarray, rate: int, width: int = 2) -> None:
    """Write float ``signal`` in [-1, 1], ``(T,)`` or ``(T, C)``, as PCM with ``width`` bytes."""
    x = signal if signal.ndim == 2 else signal[:, None]
    if width == 1:
        raw = np.clip(np.rint(x * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    elif width == 3:
        v = np.clip(np.rint(x * 8388607), -8388608, 8388607).astype("<i4")
        raw = v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        dtype = {2: "<i2", 4: "<i4"}[width]
        raw = np.rint(x * np.iinfo(dtype).max).astype(dtype).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def write_audio_folder(
    root: str | os.PathLike[str],
    classes: Sequence[str] = ("abnormal", "normal"),
    per_class: int = 3,
    rate: int = 2000,
    seconds: tuple[float, float] = (1.0, 3.0),
    channels: int = 1,
    width: int = 2,
    seed: int = 0,
) -> Path:
    """Write ``root/<class>/<class>_NNN.wav`` heart-sound-like PCM recordings of varying length."""
    root = Path(root)
    rng = np.random.default_rng([seed, per_class, rate])
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            n = int(rng.uniform(*seconds) * rate)
            x = np.stack([heart_sound(n, rate, c == 0, rng) for _ in range(channels)], axis=1)
            write_wav(root / name / f"{name}_{i:03d}.wav", x if channels > 1 else x[:, 0], rate, width)
    return root


QUICKSTART_DATASET = '''"""A map-style dataset for the quickstart: any object with __len__ and __getitem__ works."""
import numpy as np


class Squares:
    def __len__(self):
        return 64

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        return {"image": rng.integers(0, 256, (3, 40, 40), dtype=np.uint8), "label": i % 4}


def make_dataset():
    return Squares()
'''

QUICKSTART_TRANSFORM = '''"""A per-item function for the quickstart: item dict -> item dict, run once per item
at bake time."""


def crop_face(item):
    item["image"] = item["image"][:, 4:36, 4:36]  # a fixed 32 x 32 window
    return item
'''


def write_quickstart_data(root: str | os.PathLike[str]) -> dict[str, Path]:
    """Small inputs of every kind the README's quickstart bakes, under ``root``; returns their paths.

    ``photos/`` (JPEG class folders with train/ and val/), ``hearts/`` (WAV recordings at
    4 kHz), ``labels.csv`` (+ ``scans/``), ``arrays.npz`` (``x`` (500, 16) float32, ``y``),
    ``mydata.py`` (a dataset factory), ``mytransforms.py`` (a per-item function) and, when
    nibabel is installed, ``volumes.csv`` (+ ``volumes/``: NIfTI CT-like volumes of 8 patients).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "photos": write_image_folder(root / "photos", per_class=6, size=(300, 260), fmt="jpg", splits=("train", "val")),
        "hearts": write_audio_folder(root / "hearts", per_class=3, rate=4000),
        "csv": write_csv_table(root, n=12),
    }
    rng = np.random.default_rng(0)
    np.savez(root / "arrays.npz", x=rng.standard_normal((500, 16)).astype(np.float32), y=rng.integers(0, 5, 500))
    (root / "mydata.py").write_text(QUICKSTART_DATASET)
    (root / "mytransforms.py").write_text(QUICKSTART_TRANSFORM)
    paths.update(arrays=root / "arrays.npz", dataset=root / "mydata.py", transform=root / "mytransforms.py")
    try:  # volumes.csv + volumes/*.nii.gz, for the medical lines (nibabel: prebake[medical])
        from .synthetic_volumes import write_volume_table

        paths["volumes"] = write_volume_table(root, patients=8)
    except ImportError:
        pass
    return paths
