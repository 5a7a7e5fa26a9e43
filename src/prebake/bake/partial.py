"""Build a cache in ``<out>.partial/`` and commit it atomically.

Life of a partial directory::

    start()   preallocate every fixed column as a full-size .npy (sparse file),
              write _plan.json; or, if _plan.json matches, resume from _journal.jsonl
    workers   write rows straight into the memory-mapped columns; ragged columns
              go to per-chunk shards in _shards/
    record()  fsync the data of finished chunks, then append them to the journal
    seal()    drop skipped rows (copy, never in place), stitch ragged shards,
              checksum every file, write manifest.json (fsync)
    publish() remove the journal, rename <out>.partial -> <out>, fsync the parent

A chunk enters the journal only after its rows are on disk, so a crash or
``kill -9`` at any point resumes to the same bytes. A directory without
``manifest.json`` is never opened as a cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

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
    PARTIAL_SUFFIX,
    PLAN,
    REPLACED_SUFFIX,
    SHARDS,
    ColumnSpec,
    partial_path,
    sign_manifest,
)
from ..cache.ownership import owned_cache, remove_cache, remove_partial
from ..cache.splits import carry_splits
from ..cache.stats import combine_stats, label_histogram
from ..errors import DiskFullError, ForeignOutputError, PrebakeError
from .mapped import MappedColumns, copy_rows
from .space import NO_ROOM, allocate_npy, check_free, disk_full, npy_bytes

log = logging.getLogger("prebake")

_COMPACT, _COMPACTED = COMPACT, COMPACTED
_INTERNAL = (PLAN, JOURNAL, SHARDS, _COMPACT, _COMPACTED)


@dataclass(frozen=True)
class Plan:
    """What a partial directory is building; resume requires an identical plan."""

    digest: str
    num_keys: int
    chunk_rows: int
    columns: tuple[ColumnSpec, ...]
    staged: tuple[str, ...] = ()  # columns that stages write (in the building process), not the workers
    dropped: tuple[str, ...] = ()  # columns kept only while building (inputs of stages with keep=False)

    @property
    def num_chunks(self) -> int:
        return -(-self.num_keys // self.chunk_rows)

    def chunk_range(self, chunk: int) -> range:
        return range(chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.num_keys))

    @property
    def fixed(self) -> list[ColumnSpec]:
        return [c for c in self.columns if not c.ragged]

    @property
    def ragged(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.ragged]

    @property
    def item_columns(self) -> list[ColumnSpec]:
        """The columns the workers write: every column but the stages' outputs."""
        return [c for c in self.columns if c.name not in self.staged]

    @property
    def kept(self) -> list[ColumnSpec]:
        """The columns of the finished cache."""
        return [c for c in self.columns if c.name not in self.dropped]

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "num_keys": self.num_keys,
            "chunk_rows": self.chunk_rows,
            "columns": {c.name: c.to_json() for c in self.columns},
            "staged": list(self.staged),
            "dropped": list(self.dropped),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        cols = tuple(ColumnSpec.from_json(n, c) for n, c in d["columns"].items())
        return cls(d["digest"], int(d["num_keys"]), int(d["chunk_rows"]), cols, tuple(d.get("staged", ())),
                   tuple(d.get("dropped", ())))


@dataclass
class ChunkResult:
    """What a worker reports for one chunk: skipped rows, column statistics, and the files its
    transforms and stages read (``{path: identity}``, bake/reads.py)."""

    chunk: int
    bad: list[tuple[int, str]] = field(default_factory=list)
    stats: dict[str, list[Any]] = field(default_factory=dict)
    reads: dict[str, list[Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        reads = {"reads": self.reads} if self.reads else {}
        return json.dumps({"chunk": self.chunk, "bad": self.bad, "stats": self.stats, **reads})

    @classmethod
    def from_json(cls, line: str) -> ChunkResult:
        d = json.loads(line)
        return cls(int(d["chunk"]), [(int(i), str(r)) for i, r in d["bad"]], d["stats"], dict(d.get("reads") or {}))


class PartialCache:
    """A cache under construction in ``<out>.partial/``."""

    def __init__(self, out: Path, plan: Plan, done: dict[int, ChunkResult]):
        self.out = out
        self.path = partial_path(out)
        self.plan = plan
        self.done = done
        self._shards_fd: int | None = None
        self.force = False  # publish may drop a splits.json whose items are gone (with a WARNING)

    # -- start / resume -------------------------------------------------------------

    @classmethod
    def start(cls, out: Path, plan: Plan, fresh: bool = False) -> PartialCache:
        """Resume the partial build of ``out`` if it has the same plan (and not ``fresh``), else start over."""
        path = partial_path(out)
        try:
            old = None if fresh else Plan.from_json(json.loads((path / PLAN).read_text()))
        except (OSError, ValueError, KeyError):
            old = None
        if old == plan and cls._files_intact(path, plan):
            partial = cls(out, plan, cls._read_journal(path / JOURNAL))
        else:
            cls._create(path, plan)
            partial = cls(out, plan, {})
        partial.force = fresh
        return partial

    @staticmethod
    def _create(path: Path, plan: Plan) -> None:
        """A fresh partial directory with every fixed column allocated in full (see bake/space.py).

        When the disk has no room for them, nothing is left behind: the error says how
        many bytes are needed and free.
        """
        remove_partial(path)  # only a directory that is provably a build prebake made
        (path / SHARDS).mkdir(parents=True)
        try:
            shapes = [(c, (plan.num_keys, *c.shape)) for c in plan.fixed]
            what = f"the build of {path.name[: -len(PARTIAL_SUFFIX)]} ({len(shapes)} fixed column files in {path})"
            check_free(path, sum(npy_bytes(np.dtype(c.dtype), shape) for c, shape in shapes), what)
            for c, shape in shapes:
                allocate_npy(path / c.files[0], np.dtype(c.dtype), shape, what)  # workers map it themselves
            (path / JOURNAL).touch()
            write_json(path / PLAN, plan.to_json())
        except BaseException:
            with contextlib.suppress(PrebakeError, OSError):
                remove_partial(path)  # a partial that never started is worth nothing
            raise
        fsync_path(path)

    @staticmethod
    def _files_intact(path: Path, plan: Plan) -> bool:
        if (path / _COMPACTED).exists():
            return True  # fixed columns were already compacted; the journal is complete
        return all((path / c.files[0]).exists() for c in plan.fixed)

    @staticmethod
    def _read_journal(journal: Path) -> dict[int, ChunkResult]:
        """Finished chunks; a torn tail from a crash is cut off so later appends start clean."""
        done: dict[int, ChunkResult] = {}
        raw = journal.read_bytes()
        good = 0
        for line in raw.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("torn line")
                r = ChunkResult.from_json(line.decode())
            except (ValueError, KeyError):
                break  # that chunk and any after it are redone
            done[r.chunk] = r
            good += len(line)
        if good < len(raw):
            os.truncate(journal, good)
        return done

    def close(self) -> None:
        """Release the directory handle that ragged-shard writes hold."""
        if self._shards_fd is not None:
            os.close(self._shards_fd)
            self._shards_fd = None

    def pending(self) -> list[int]:
        return [c for c in range(self.plan.num_chunks) if c not in self.done]

    # -- writing (worker side) ----------------------------------------------------------

    def open_columns(self) -> MappedColumns:
        """Writable memory maps of the fixed columns (one set per worker process)."""
        return MappedColumns(self.path, self.plan.fixed)

    def shard_files(self, name: str, chunk: int) -> tuple[Path, Path]:
        base = self.path / SHARDS / f"{name}.{chunk:06d}"
        return base.with_name(base.name + ".values.npy"), base.with_name(base.name + ".lengths.npy")

    def write_shard(self, spec: ColumnSpec, chunk: int, items: list[np.ndarray]) -> None:
        """Write a chunk's ragged items, relative to the _shards directory this process opened.

        A worker orphaned by a killed build holds the old directory, so it can never drop
        a shard into the next build's fresh partial directory.
        """
        if self._shards_fd is None:
            self._shards_fd = os.open(self.path / SHARDS, os.O_RDONLY | os.O_DIRECTORY)
        fd = self._shards_fd
        lengths = np.array([len(a) for a in items], dtype=np.int64)
        values = np.concatenate(items, dtype=spec.dtype) if items else np.empty((0, *spec.shape), dtype=spec.dtype)
        for path, arr in zip(self.shard_files(spec.name, chunk), (values, lengths)):
            tmp = path.name + ".tmp"
            try:
                with open(tmp, "wb", opener=lambda p, flags: os.open(p, flags, 0o644, dir_fd=fd)) as f:
                    save_npy(f, arr)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=fd)  # half a shard is worth nothing
                if e.errno in NO_ROOM:
                    raise self._no_room(e, arr.nbytes) from None
                raise
            os.replace(tmp, path.name, src_dir_fd=fd, dst_dir_fd=fd)

    def _no_room(self, e: OSError, needed: int) -> DiskFullError:
        """A full disk after the build started: the finished chunks stay, a re-run resumes them."""
        err = disk_full(self.path, needed, f"the build in {self.path} (ragged rows and the commit)", cause=e)
        return DiskFullError(f"{err}; {self._resume_hint()}")

    def _resume_hint(self) -> str:
        return resume_hint(self.path)

    # -- journal (parent side) ----------------------------------------------------------

    def record(self, results: Iterable[ChunkResult]) -> None:
        """Make finished chunks durable, then journal them."""
        results = list(results)
        if not results:
            return
        for c in self.plan.fixed:
            fsync_path(self.path / c.files[0])
        for r in results:
            for c in self.plan.ragged:
                for p in self.shard_files(c.name, r.chunk):
                    fsync_path(p)
        with open(self.path / JOURNAL, "a") as f:
            f.write("".join(r.to_json() + "\n" for r in results))
            f.flush()
            os.fsync(f.fileno())
        for r in results:
            self.done[r.chunk] = r

    # -- commit ---------------------------------------------------------------------------

    def seal(self, keys: list[str], classes: list[str] | None, fingerprint: dict[str, Any],
             item_ids: np.ndarray | None = None) -> dict[str, Any]:
        """Finish every file, then write manifest.json inside the partial directory.

        ``item_ids`` (uint64, one per key) are kept for the rows that were not skipped.
        """
        self.close()
        try:
            return self._seal(keys, classes, fingerprint, item_ids)
        except DiskFullError as e:
            raise DiskFullError(f"{e}; {self._resume_hint()}") from None
        except OSError as e:
            if e.errno in NO_ROOM:
                raise self._no_room(e, 0) from None
            raise

    def _seal(self, keys: list[str], classes: list[str] | None, fingerprint: dict[str, Any],
              item_ids: np.ndarray | None) -> dict[str, Any]:
        self._check_complete()
        results = [self.done[c] for c in range(self.plan.num_chunks)]
        bad = sorted(b for r in results for b in r.bad)
        good = np.ones(self.plan.num_keys, dtype=bool)
        good[np.array([i for i, _ in bad], dtype=np.int64)] = False
        self._compact(good)
        kept = self.plan.kept
        for c in kept:
            if c.ragged:
                self._stitch(c)
        remove_paths(self.path / f for c in self.plan.columns if c.name in self.plan.dropped for f in c.files)
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "prebake_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "num_items": int(good.sum()),
            "columns": {c.name: self._column_entry(c) for c in kept},
            "classes": classes,
            "fingerprint": fingerprint,
            "skipped": [{"index": i, "key": keys[i], "reason": r} for i, r in bad],
            "stats": self._stats(results, classes),
            "item_ids": None if item_ids is None else self._write_item_ids(item_ids[good]),
            "item_keys": self._write_item_keys([k for k, ok in zip(keys, good) if ok]),
        }
        manifest = sign_manifest(manifest)
        write_json(self.path / MANIFEST, manifest)
        return manifest

    def _check_complete(self) -> None:
        """Commit only when the chunks tile every row exactly once and the journal holds each of them:
        a row no worker wrote must never be committed as baked."""
        plan, n = self.plan, self.plan.num_keys
        chunks = set(range(plan.num_chunks)) if _tiles(plan) else set()
        missing, stray = sorted(chunks - set(self.done)), sorted(set(self.done) - chunks)
        outside = sorted(i for r in self.done.values() for i, _ in r.bad if not 0 <= i < n)
        if not _tiles(plan):
            what = f"chunk_rows={plan.chunk_rows} does not cut its {n:,} rows into chunks"
        elif missing:
            what = f"the journal lacks chunk{'s' if len(missing) > 1 else ''} {_few(missing)} of {plan.num_chunks}"
        elif stray:
            what = f"the journal names chunks {_few(stray)}, outside the plan's {plan.num_chunks}"
        elif outside:
            what = f"the journal names bad rows {_few(outside)}, outside 0..{n - 1}"
        else:
            return
        raise PrebakeError(f"the build in {self.path} cannot be committed: {what}, so rows no worker wrote would "
                           f"be committed; nothing was committed — delete it with 'prebake clear {self.path}' and "
                           "build again (chunk_rows must be a positive integer)")

    def _compact(self, good: np.ndarray) -> None:
        """Drop skipped rows by copying into _compact/, then renaming (crash-safe, never in place)."""
        tmp, marker = self.path / _COMPACT, self.path / _COMPACTED
        fixed = [c for c in self.plan.kept if not c.ragged]
        if good.all() or not fixed:
            return
        if not marker.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            keep = np.flatnonzero(good)
            what = f"dropping {len(good) - len(keep)} skipped rows from the build in {self.path}"
            check_free(tmp, sum(npy_bytes(np.dtype(c.dtype), (len(keep), *c.shape)) for c in fixed), what)
            for c in fixed:
                copy_rows(self.path / c.files[0], tmp / c.files[0], keep, self.plan.chunk_rows, what)
            fsync_path(tmp)
            marker.touch()
            fsync_path(self.path)
        for f in sorted(tmp.iterdir()) if tmp.exists() else []:
            os.replace(f, self.path / f.name)

    def _stitch(self, c: ColumnSpec) -> None:
        """Concatenate the per-chunk shards of a ragged column in row order."""
        shards = [self.shard_files(c.name, k) for k in range(self.plan.num_chunks)]
        lengths = [np.load(lp, allow_pickle=False) for _, lp in shards]
        offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(lengths) if lengths else [], out=offsets[1:])
        values_file, offsets_file = (self.path / f for f in c.files)
        out = allocate_npy(values_file, np.dtype(c.dtype), (int(offsets[-1]), *c.shape),
                           f"the ragged column {c.name!r} of the build in {self.path}")
        pos = 0
        for vp, _ in shards:
            v = np.load(vp, mmap_mode="r", allow_pickle=False)
            out[pos : pos + len(v)] = v
            pos += len(v)
        out.flush()
        del out
        with open(offsets_file, "wb") as f:
            save_npy(f, offsets)

    def _write_item_ids(self, ids: np.ndarray) -> dict[str, Any]:
        path = self.path / ITEM_IDS
        with open(path, "wb") as f:
            save_npy(f, np.ascontiguousarray(ids, dtype=np.uint64))
        fsync_path(path)
        return {"bytes": path.stat().st_size, "xxh3_64": file_checksum(path)}

    def _write_item_keys(self, keys: list[str]) -> dict[str, Any]:
        """The source key of every kept row: what lets a rebuild carry splits.json over by key."""
        path = self.path / ITEM_KEYS
        write_json(path, [str(k) for k in keys])
        return {"bytes": path.stat().st_size, "xxh3_64": file_checksum(path)}

    def _column_entry(self, c: ColumnSpec) -> dict[str, Any]:
        files = {}
        for name in c.files:
            path = self.path / name
            fsync_path(path)
            files[name] = {"bytes": path.stat().st_size, "xxh3_64": file_checksum(path)}
        return {**c.to_json(), "files": files}

    def _stats(self, results: list[ChunkResult], classes: list[str] | None) -> dict[str, Any]:
        kept = {c.name for c in self.plan.kept}
        stats: dict[str, Any] = {"columns": {name: s for name, s in combine_stats([r.stats for r in results]).items()
                                             if name in kept}}
        label = next((c for c in self.plan.fixed if c.name == "label" and c.shape == ()), None)
        if label is not None and np.dtype(label.dtype).kind in "iub":
            stats["label_histogram"] = label_histogram(np.load(self.path / label.files[0], mmap_mode="r"), classes)
        return stats

    def publish(self) -> Path:
        return publish(self.path, self.out, self.force)


def _tiles(plan: Plan) -> bool:
    """Whether the plan's chunks cover rows 0..num_keys-1 in order, each once, none empty."""
    if plan.chunk_rows <= 0 or plan.num_keys < 0:
        return False
    ranges = [plan.chunk_range(c) for c in range(plan.num_chunks)]
    edges = [0] + [r.stop for r in ranges]
    return all(len(r) > 0 and r.start == edges[k] for k, r in enumerate(ranges)) and edges[-1] == plan.num_keys


def _few(values: list[int]) -> str:
    return ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")


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


class _Writes:
    """A file object numpy does not take for a real file, so ``np.save`` writes through Python's
    ``write``: a full disk is then ENOSPC, not numpy's "N requested and M written" without an errno."""

    def __init__(self, f: BinaryIO):
        self.write = f.write


def save_npy(f: BinaryIO, arr: np.ndarray) -> None:
    """``np.save(f, arr)``, the same bytes, with a full disk reported as an OSError that has its errno."""
    np.save(_Writes(f), arr, allow_pickle=False)  # type: ignore[arg-type]


def resume_hint(path: Path) -> str:
    return (f"the finished chunks are kept in {path}: re-run the same command to resume once there "
            f"is room, or delete it with 'prebake clear {path}'")


def settle_disk_full(out: Path, e: DiskFullError) -> DiskFullError:
    """After a full disk stopped the build of ``out``: delete what no re-run can resume (the whole
    partial build when no chunk was journaled, else the shards of unjournaled chunks) and say so."""
    path = partial_path(out)
    hint = resume_hint(path)
    if not str(e).endswith(hint) or not (path / JOURNAL).is_file():
        return e  # the up-front checks: nothing was left behind
    done = PartialCache._read_journal(path / JOURNAL)
    if not done:
        remove_partial(path)
        return DiskFullError(f"{str(e)[: -len(hint) - 2]}; no chunk had finished, so {path} was removed: "
                             "make room, then build again")
    shards = path / SHARDS
    for f in sorted(shards.iterdir()) if shards.is_dir() else []:
        parts = f.name.split(".")
        if f.name.endswith(".tmp") or len(parts) < 4 or not parts[-3].isdigit() or int(parts[-3]) not in done:
            f.unlink(missing_ok=True)  # rows no journal entry vouches for: redone on resume anyway
    return e
