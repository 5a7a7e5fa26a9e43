"""``prebake verify``: check every byte of a cache against its manifest.

Checks the manifest first (its own checksum and schema), then, per file: a regular
file inside the cache (never a symlink), size, xxh3 checksum, .npy header dtype and shape;
per column: NaN/Inf in float data, ragged offsets (and a ragged N-D column's shapes against
them); for labels: the range
against the classes and the histogram against the manifest. Class imbalance
is reported as a warning, since real datasets are often imbalanced.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CacheCorruptError, CacheNotFoundError, FormatError, opt
from .files import fd_checksum, map_npy, npy_layout, open_dir, open_member, read_manifest
from .format import (
    ITEM_IDS,
    ITEM_KEYS,
    MANIFEST,
    ColumnSpec,
    column_specs,
    committed_files,
    offsets_problem,
    shapes_problem,
)
from .spans import SPAN_ROWS, fd_span_checksum, spans_of
from .stats import label_histogram

_BLOCK_ROWS_BYTES = 64 << 20
_IMBALANCE_WARN = 10.0


@dataclass
class VerifyReport:
    """What :func:`verify` found at ``path``: ``problems`` (the cache is wrong), ``unchecked`` (what could
    not be checked, a file that cannot be read: permissions, I/O errors), ``warnings`` (it is right but
    unusual), and how many ``files_checked`` and ``bytes_checked``. ``ok``: no problems."""

    path: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    files_checked: int = 0
    bytes_checked: int = 0

    @property
    def ok(self) -> bool:
        """Everything was checked and nothing is wrong."""
        return not self.problems and not self.unchecked

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "ok": self.ok, "problems": self.problems, "warnings": self.warnings,
                "unchecked": self.unchecked, "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked}


def verify(path: str | os.PathLike[str], progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check every byte of the cache at ``path`` against its manifest (``prebake.verify``).

    ``progress``, when given, is called as ``progress(bytes_done, bytes_total)`` after each
    file. Returns a :class:`VerifyReport`: ``.ok``, ``.problems`` and ``.warnings``.
    """
    report = VerifyReport(Path(path))
    try:
        with open_dir(report.path) as dir_fd:
            _verify(report, dir_fd, progress)
    except CacheNotFoundError as e:
        report.problems.append(f"{report.path / MANIFEST} is missing: not a committed cache ({e})")
    except (FormatError, CacheCorruptError) as e:
        report.problems.append(str(e))
    except OSError as e:
        report.unchecked.append(f"{e.filename or report.path}: cannot be read ({e.strerror or e}); "
                                "check the permissions and the disk, then verify again")
    return report


def _verify(report: VerifyReport, dir_fd: int, progress: Callable[[int, int], None] | None) -> None:
    manifest = read_manifest(report.path, dir_fd)  # its checksum and schema, or a FormatError
    specs = column_specs(manifest)
    total = sum(m["bytes"] for m in committed_files(manifest).values())
    intact = {}
    for name, spec in specs.items():
        intact[name] = _check_column(report, dir_fd, manifest, spec)
        if progress:
            progress(report.bytes_checked, total)
    if intact.get("label"):
        _check_labels(report, dir_fd, manifest, specs["label"])
    if manifest.get("item_ids"):
        _check_file(report, dir_fd, ITEM_IDS, manifest["item_ids"])
    if manifest.get("item_keys"):
        _check_file(report, dir_fd, ITEM_KEYS, manifest["item_keys"])


def _check_column(report: VerifyReport, dir_fd: int, manifest: dict[str, Any], spec: ColumnSpec) -> bool:
    """True when the column's files match the manifest byte for byte and their headers agree."""
    files = manifest["columns"][spec.name]["files"]
    intact = True
    spanned = SPAN_ROWS in files[spec.files[0]]
    for fname in (*spec.files[1:], spec.files[0]) if spanned else spec.files:  # the offsets cut the values' spans
        spans = _spans(report, dir_fd, manifest, spec, int(files[fname][SPAN_ROWS])) if SPAN_ROWS in files[fname] \
            else None
        intact &= _check_file(report, dir_fd, fname, files[fname], spans)
    if not intact:
        return False
    arrays = _arrays(report, dir_fd, spec)
    if arrays is None:
        return False
    before = len(report.problems)
    _check_header(report, spec, arrays, int(manifest["num_items"]))
    if len(report.problems) > before:
        return False
    if np.dtype(spec.dtype).kind in "fc":
        _check_finite(report, spec, arrays[0])
    return True


def _arrays(report: VerifyReport, dir_fd: int, spec: ColumnSpec) -> list[np.ndarray] | None:
    """The column's files as read-only arrays, in the shapes their own headers give."""
    out = []
    for fname in spec.files:
        shown = report.path / fname
        fd = open_member(dir_fd, fname, shown)
        try:
            shape, dtype, _ = npy_layout(fd, shown)
            out.append(map_npy(fd, shown, dtype, shape))
        except CacheCorruptError as e:
            report.problems.append(f"{shown}: cannot be read as .npy ({e})")
            return None
        finally:
            os.close(fd)
    return out


def _spans(report: VerifyReport, dir_fd: int, manifest: dict[str, Any], spec: ColumnSpec, span_rows: int
           ) -> Callable[[int], list[int]]:
    """The span bounds of column ``spec``'s values file, given it open (cache/spans.py), from its offsets file."""
    def cut(fd: int) -> list[int]:
        shown = report.path / spec.files[1]
        ofd = open_member(dir_fd, spec.files[1], shown)
        try:
            shape, dtype, _ = npy_layout(ofd, shown)
            offsets = map_npy(ofd, shown, dtype, shape)
        finally:
            os.close(ofd)
        return spans_of(fd, report.path / spec.files[0], offsets, shown, int(manifest["num_items"]), span_rows)
    return cut


def _check_file(report: VerifyReport, dir_fd: int, fname: str, meta: dict[str, Any],
                spans: Callable[[int], list[int]] | None = None) -> bool:
    """``fname`` against its manifest entry: a regular file of the cache, its size, its checksum (whole, or by
    ``spans``: the bounds of a span-checksummed values file, cache/spans.py)."""
    f = report.path / fname
    try:
        fd = open_member(dir_fd, fname, f)
    except CacheCorruptError as e:
        report.problems.append(str(e))
        return False
    try:
        size = os.fstat(fd).st_size
        report.files_checked += 1
        if size != meta["bytes"]:
            report.problems.append(f"{f} is {size:,} bytes, manifest says {meta['bytes']:,}: truncated or replaced; "
                                   f"rebuild with {opt('force')}")
            return False
        try:
            digest = fd_checksum(fd) if spans is None else fd_span_checksum(fd, spans(fd))
        except CacheCorruptError as e:
            report.problems.append(str(e))
            return False
    finally:
        os.close(fd)
    report.bytes_checked += size
    if digest != meta["xxh3_64"]:
        report.problems.append(f"{f} checksum is {digest}, manifest says {meta['xxh3_64']}: the bytes changed "
                               f"on disk; rebuild with {opt('force')}")
        return False
    return True
def _check_header(report: VerifyReport, spec: ColumnSpec, arrays: list[np.ndarray], n: int) -> None:
    main = report.path / spec.files[0]
    data = arrays[0]
    if data.ndim == 0:
        report.problems.append(f"{main} holds a 0-d array, manifest says {n} rows of shape {spec.shape}")
        return
    if data.dtype != np.dtype(spec.dtype):
        report.problems.append(f"{main} has dtype {data.dtype}, manifest says {np.dtype(spec.dtype)}")
    want = (data.shape[0],) if spec.shaped else (data.shape[0], *spec.shape) if spec.ragged else (n, *spec.shape)
    if data.shape != want:
        report.problems.append(f"{main} has shape {data.shape}, manifest says {want}")
    if spec.ragged:
        problem = offsets_problem(arrays[1], n, data.shape[0])
        if problem:
            report.problems.append(f"{report.path / spec.files[1]}: offsets are not {n + 1} non-decreasing int64 "
                                   f"values from 0 to {data.shape[0]} ({problem})")
        elif spec.shaped:
            problem = shapes_problem(arrays[2], arrays[1], spec)
            if problem:
                report.problems.append(f"{report.path / spec.files[2]}: shapes do not match the column's offsets "
                                       f"and its fixed axes {list(spec.shape)} ({problem})")


def _check_finite(report: VerifyReport, spec: ColumnSpec, data: np.ndarray) -> None:
    rows = max(1, _BLOCK_ROWS_BYTES // max(1, data[:1].nbytes))
    bad: list[np.ndarray] = []
    for s in range(0, len(data), rows):
        finite = np.isfinite(data[s : s + rows]).reshape(len(data[s : s + rows]), -1).all(axis=1)
        bad.append(s + np.flatnonzero(~finite))
    found = np.concatenate(bad) if bad else np.empty(0, np.int64)
    if len(found):
        report.problems.append(f"{report.path / spec.files[0]}: {len(found)} rows contain NaN or Inf "
                               f"(first: row {found[0]}); the data was written with non-finite values")


def _check_labels(report: VerifyReport, dir_fd: int, manifest: dict[str, Any], spec: ColumnSpec) -> None:
    f = report.path / spec.files[0]
    arrays = _arrays(report, dir_fd, spec)
    if arrays is None:
        return
    labels = arrays[0]
    classes = manifest.get("classes") or []
    if spec.ragged or spec.shape != () or np.dtype(spec.dtype).kind not in "iu" or len(labels) == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if classes and (lo < 0 or hi >= len(classes)):
        report.problems.append(f"{f}: labels range {lo}..{hi}, but there are {len(classes)} classes "
                               f"(0..{len(classes) - 1})")
    hist = label_histogram(labels, classes)
    stored = manifest.get("stats", {}).get("label_histogram")
    if stored is not None and stored != hist:
        report.problems.append(f"{f}: label histogram differs from the manifest's")
    counts = list(hist.values())
    empty = [k for k, c in hist.items() if c == 0]
    if empty:
        report.warnings.append(f"classes with no items: {', '.join(_class_name(classes, k) for k in empty)}")
    elif counts and max(counts) > _IMBALANCE_WARN * min(counts):
        report.warnings.append(f"class imbalance: largest class has {max(counts)} items, smallest {min(counts)}")


def _class_name(classes: list[str], key: str) -> str:
    i = int(key)
    return f"{i} ({classes[i]})" if 0 <= i < len(classes) else key
