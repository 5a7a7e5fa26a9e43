"""The commit: a finished partial directory becomes the cache, atomically.

:func:`seal` decides every column from every item and rewrites the columns that decision
changed (bake/rewrite.py), drops skipped rows (copying, never in place), stitches the ragged shards,
checksums every file and writes ``manifest.json`` inside ``<out>.partial/``;
:func:`publish` removes the journal and renames it onto ``<out>``
(:func:`swap_into_place`), fsyncing the parent. A crash or ``kill -9`` at any point
leaves either the old cache or the new one at ``<out>``, never a half-built one, and a
re-run resumes to the same bytes (tests/bake/test_crash.py kills each step).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..cache.files import file_checksum, fsync_path, remove_paths, write_json
from ..cache.format import (
    COMPACT,
    COMPACTED,
    FORMAT_NAME,
    FORMAT_VERSION,
    ITEM_IDS,
    ITEM_KEYS,
    JOURNAL,
    MANIFEST,
    PLAN,
    REPLACED_SUFFIX,
    REWRITE,
    REWRITTEN,
    SHARDS,
    ColumnSpec,
    sign_manifest,
)
from ..cache.ownership import owned_cache, remove_cache
from ..cache.splits import carry_splits
from ..cache.stats import combine_stats, label_histogram
from ..errors import ForeignOutputError, PrebakeError
from ..sources.notes import merge_notes
from . import rewrite
from .mapped import copy_rows
from .npyfile import save_npy
from .plan import BuildPlan, ChunkResult, shapes_shard, shard_files, tiles
from .space import allocate_npy, check_free, npy_bytes

log = logging.getLogger("prebake")

_INTERNAL = (PLAN, JOURNAL, SHARDS, COMPACT, COMPACTED, REWRITE, REWRITTEN)


def seal(path: Path, plan: BuildPlan, done: Mapping[int, ChunkResult], keys: list[str], classes: list[str] | None,
         fingerprint: dict[str, Any], item_ids: np.ndarray | None = None, stream: Any = None) -> dict[str, Any]:
    """Finish every file of the partial directory ``path``, then write manifest.json inside it.

    ``done`` are the journaled chunks; ``item_ids`` (uint64, one per key) are kept for the rows
    that were not skipped; ``stream``: the columns written ahead during the build (bake/stream.py), if any.
    """
    check_complete(path, plan, done)
    results = [done[c] for c in range(plan.num_chunks)]
    bad = sorted(b for r in results for b in r.bad)
    good = np.ones(plan.num_keys, dtype=bool)
    good[np.array([i for i, _ in bad], dtype=np.int64)] = False
    decisions = rewrite.decide(path, plan, results, good, keys)
    checksums = rewrite.rewrite_columns(path, plan, decisions, stream)
    rewritten = {name for name, d in decisions.items() if d.rewrite}
    _compact(path, plan, good, rewritten)
    kept = [decisions[c.name].spec for c in plan.kept]
    for c in kept:
        if c.ragged and c.name not in rewritten:
            _stitch(path, plan, c)
    remove_paths(path / f for c in plan.columns if c.name in plan.dropped for f in c.files)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "prebake_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "num_items": int(good.sum()),
        "columns": {c.name: _column_entry(path, c, decisions[c.name].schema, checksums) for c in kept},
        "classes": classes,
        "fingerprint": fingerprint,
        "skipped": [{"index": i, "key": keys[i], "reason": r} for i, r in bad],
        "stats": _stats(path, kept, results, classes),
        "item_ids": None if item_ids is None else _write_item_ids(path, item_ids[good]),
        "item_keys": _write_item_keys(path, [k for k, ok in zip(keys, good) if ok]),
    }
    notes = merge_notes(r.notes for r in results)
    if notes:  # what the readers kept only part of, counted (sources/notes.py)
        manifest["notes"] = notes
    manifest = sign_manifest(manifest)
    write_json(path / MANIFEST, manifest)
    return manifest


def check_complete(path: Path, plan: BuildPlan, done: Mapping[int, ChunkResult]) -> None:
    """Commit only when the chunks tile every row exactly once and the journal holds each of them:
    a row no worker wrote must never be committed as baked."""
    n = plan.num_keys
    chunks = set(range(plan.num_chunks)) if tiles(plan) else set()
    missing, stray = sorted(chunks - set(done)), sorted(set(done) - chunks)
    outside = sorted(i for r in done.values() for i, _ in r.bad if not 0 <= i < n)
    if not tiles(plan):
        what = f"chunk_rows={plan.chunk_rows} does not cut its {n:,} rows into chunks"
    elif missing:
        what = f"the journal lacks chunk{'s' if len(missing) > 1 else ''} {_few(missing)} of {plan.num_chunks}"
    elif stray:
        what = f"the journal names chunks {_few(stray)}, outside the plan's {plan.num_chunks}"
    elif outside:
        what = f"the journal names bad rows {_few(outside)}, outside 0..{n - 1}"
    else:
        return
    raise PrebakeError(f"the build in {path} cannot be committed: {what}, so rows no worker wrote would "
                       f"be committed; nothing was committed — delete it with 'prebake clear {path}' and "
                       "build again (chunk_rows must be a positive integer)")


def _few(values: list[int]) -> str:
    return ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")


def _compact(path: Path, plan: BuildPlan, good: np.ndarray, rewritten: set[str]) -> None:
    """Drop skipped rows by copying into _compact/, then renaming (crash-safe, never in place); a column
    rewritten at commit has none already."""
    tmp, marker = path / COMPACT, path / COMPACTED
    fixed = [c for c in plan.kept if not c.ragged and c.name not in rewritten]
    if good.all() or not fixed:
        return
    if not marker.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        keep = np.flatnonzero(good)
        what = f"dropping {len(good) - len(keep)} skipped rows from the build in {path}"
        check_free(tmp, sum(npy_bytes(np.dtype(c.dtype), (len(keep), *c.row_shape)) for c in fixed), what)
        for c in fixed:
            copy_rows(path / c.files[0], tmp / c.files[0], keep, plan.chunk_rows, what)
        fsync_path(tmp)
        marker.touch()
        fsync_path(path)
    for f in sorted(tmp.iterdir()) if tmp.exists() else []:
        os.replace(f, path / f.name)


def _stitch(path: Path, plan: BuildPlan, c: ColumnSpec) -> None:
    """Concatenate the per-chunk shards of a ragged column in row order (a ragged N-D column's shapes too)."""
    shards = [shard_files(path, c.name, k) for k in range(plan.num_chunks)]
    lengths = [np.load(lp, allow_pickle=False) for _, lp in shards]
    offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths) if lengths else [], out=offsets[1:])
    values_file, offsets_file = (path / f for f in c.files[:2])
    out = allocate_npy(values_file, np.dtype(c.dtype), (int(offsets[-1]), *c.row_shape),
                       f"the ragged column {c.name!r} of the build in {path}")
    pos = 0
    for vp, _ in shards:
        v = np.load(vp, mmap_mode="r", allow_pickle=False)
        out[pos : pos + len(v)] = v
        pos += len(v)
    out.flush()
    del out
    with open(offsets_file, "wb") as f:
        save_npy(f, offsets)
    if c.shaped:
        parts = [np.load(shapes_shard(path, c.name, k), allow_pickle=False) for k in range(plan.num_chunks)]
        with open(path / c.files[2], "wb") as f:
            save_npy(f, np.concatenate(parts) if parts else np.empty((0, c.ndim), np.int64))


def _write_item_ids(path: Path, ids: np.ndarray) -> dict[str, Any]:
    file = path / ITEM_IDS
    with open(file, "wb") as f:
        save_npy(f, np.ascontiguousarray(ids, dtype=np.uint64))
    fsync_path(file)
    return {"bytes": file.stat().st_size, "xxh3_64": file_checksum(file)}


def _write_item_keys(path: Path, keys: list[str]) -> dict[str, Any]:
    """The source key of every kept row: what lets a rebuild carry splits.json over by key."""
    file = path / ITEM_KEYS
    write_json(file, [str(k) for k in keys])
    return {"bytes": file.stat().st_size, "xxh3_64": file_checksum(file)}


def _column_entry(path: Path, c: ColumnSpec, schema: dict[str, Any], known: Mapping[str, Mapping[str, Any]]
                  ) -> dict[str, Any]:
    """The manifest's entry of column ``c``; ``known``: the checksum entries of files hashed as they were written
    (a placed file's by spans, cache/spans.py)."""
    files = {}
    for name in c.files:
        file = path / name
        fsync_path(file)
        files[name] = {"bytes": file.stat().st_size, **(known.get(name) or {"xxh3_64": file_checksum(file)})}
    return {**c.to_json(), "files": files, "schema": schema}


def _stats(path: Path, columns: list[ColumnSpec], results: list[ChunkResult], classes: list[str] | None
           ) -> dict[str, Any]:
    kept = {c.name for c in columns}
    stats: dict[str, Any] = {"columns": {name: s for name, s in combine_stats([r.stats for r in results]).items()
                                         if name in kept}}
    label = next((c for c in columns if c.name == "label" and not c.ragged and c.shape == ()), None)
    if label is not None and np.dtype(label.dtype).kind in "iub":
        stats["label_histogram"] = label_histogram(np.load(path / label.files[0], mmap_mode="r"), classes)
    return stats


# -- into place ---------------------------------------------------------------------------------


def publish(sealed: Path, out: Path, force: bool = False) -> Path:
    """Remove the journal from a sealed partial directory, carry the old cache's splits.json over
    (``force``: drop it, with a WARNING, when items it names are gone) and rename it onto ``out``."""
    remove_paths(sealed / name for name in _INTERNAL)
    carry_splits(out, sealed, force)
    fsync_path(sealed)
    return swap_into_place(sealed, out)


def swap_into_place(src: Path, out: Path) -> Path:
    """Rename ``src`` onto ``out``, so that ``out`` always holds a complete cache.

    An existing ``out`` is swapped with ``src`` in one atomic renameat2(RENAME_EXCHANGE)
    and the old cache, now at ``src``, is deleted. Where the kernel or filesystem cannot
    exchange, the old cache is renamed aside first: a reader that looks in between
    those two renames finds no cache (never a half-built one).
    """
    old = out.with_name(out.name + REPLACED_SUFFIX)
    owned_cache(out)  # again, just before the swap: anything foreign that arrived since is refused, not deleted
    remove_cache(old)
    if out.exists() and _exchange(src, out):
        os.replace(src, old)  # then delete it under a name no build takes for a partial one
        fsync_path(out.parent)
        _remove_old(old)
        return out
    if out.exists():
        os.replace(out, old)
    os.replace(src, out)
    fsync_path(out.parent)
    _remove_old(old)
    return out


def _remove_old(old: Path) -> None:
    """Delete the replaced cache, its manifest last; a file someone added meanwhile keeps it all in place."""
    try:
        remove_cache(old)
    except ForeignOutputError as e:
        log.warning("%s", e)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux's renameat2; False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0
