"""A cache under construction in ``<out>.partial/``: started, resumed, written, journaled.

Life of a partial directory::

    start()   preallocate every fixed column as a full-size .npy (sparse file),
              write _plan.json; or, if _plan.json matches, resume from _journal.jsonl
    workers   write rows straight into the memory-mapped columns; ragged columns
              go to per-chunk shards in _shards/, items unlike the first to spill shards
    record()  fsync the data of finished chunks, then append them to the journal
    seal()    decide each column from every item, rewrite the columns that must change,
              drop skipped rows (copy, never in place), stitch ragged shards,
              checksum every file, write manifest.json (fsync)           (commit.py)
    publish() remove the journal, rename <out>.partial -> <out>, fsync the parent

A chunk enters the journal only after its rows are on disk, so a crash or
``kill -9`` at any point resumes to the same bytes. A directory without
``manifest.json`` is never opened as a cache.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.files import fsync_path, write_json
from ..cache.format import COMPACTED, JOURNAL, PARTIAL_SUFFIX, PLAN, REWRITTEN, SHARDS, ColumnSpec, partial_path
from ..cache.ownership import remove_partial
from ..errors import DiskFullError, PrebakeError
from . import commit
from .mapped import MappedColumns
from .plan import BuildPlan, ChunkResult, chunk_shards, shapes_shard, shard_files
from .space import NO_ROOM, allocate_npy, check_free, disk_full, npy_bytes


class PartialCache:
    """A cache under construction in ``<out>.partial/``."""

    def __init__(self, out: Path, plan: BuildPlan, done: dict[int, ChunkResult]):
        self.out = out
        self.path = partial_path(out)
        self.plan = plan
        self.done = done
        self._shards_fd: int | None = None
        self.force = False  # publish may drop a splits.json whose items are gone (with a WARNING)

    # -- start / resume -------------------------------------------------------------

    @classmethod
    def start(cls, out: Path, plan: BuildPlan, fresh: bool = False) -> PartialCache:
        """Resume the partial build of ``out`` if it has the same plan (and not ``fresh``), else start over."""
        path = partial_path(out)
        try:
            old = None if fresh else BuildPlan.from_json(json.loads((path / PLAN).read_text()))
        except (OSError, ValueError, KeyError):
            old = None
        if old == plan and cls._files_intact(path, plan):
            partial = cls(out, plan, read_journal(path / JOURNAL))
        else:
            cls._create(path, plan)
            partial = cls(out, plan, {})
        partial.force = fresh
        return partial

    @staticmethod
    def _create(path: Path, plan: BuildPlan) -> None:
        """A fresh partial directory with every fixed column allocated in full (see space.py).

        When the disk has no room for them, nothing is left behind: the error says how
        many bytes are needed and free.
        """
        remove_partial(path)  # only a directory that is provably a build prebake made
        (path / SHARDS).mkdir(parents=True)
        try:
            shapes = [(c, (plan.num_keys, *c.row_shape)) for c in plan.fixed]
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
    def _files_intact(path: Path, plan: BuildPlan) -> bool:
        if (path / COMPACTED).exists() or (path / REWRITTEN).exists():
            return True  # columns were already compacted or rewritten at commit; the journal is complete
        return all((path / c.files[0]).exists() for c in plan.fixed)

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
        return shard_files(self.path, name, chunk)

    def shards_fd(self) -> int:
        """The _shards directory this process opened; every shard is written relative to it.

        A worker orphaned by a killed build holds the old directory, so it can never drop
        a shard into the next build's fresh partial directory.
        """
        if self._shards_fd is None:
            self._shards_fd = os.open(self.path / SHARDS, os.O_RDONLY | os.O_DIRECTORY)
        return self._shards_fd

    def write_shard(self, spec: ColumnSpec, chunk: int, items: list[np.ndarray]) -> None:
        """Write a chunk's ragged items (of a ragged N-D column: flat, with their shapes)."""
        fd = self.shards_fd()
        files: list[Path] = list(self.shard_files(spec.name, chunk))
        arrays: list[np.ndarray]
        if spec.shaped:
            values = np.concatenate([a.reshape(-1) for a in items], dtype=spec.dtype) if items else \
                np.empty(0, dtype=spec.dtype)
            shapes = np.array([a.shape for a in items], dtype=np.int64).reshape(len(items), spec.ndim)
            arrays = [values, np.array([a.size for a in items], dtype=np.int64), shapes]
            files.append(shapes_shard(self.path, spec.name, chunk))
        else:
            values = np.concatenate(items, dtype=spec.dtype) if items else np.empty((0, *spec.row_shape), spec.dtype)
            arrays = [values, np.array([len(a) for a in items], dtype=np.int64)]
        for path, arr in zip(files, arrays):
            tmp = path.name + ".tmp"
            try:
                with open(tmp, "wb", opener=lambda p, flags: os.open(p, flags, 0o644, dir_fd=fd)) as f:
                    commit.save_npy(f, arr)
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
            for c in self.plan.columns:
                for p in chunk_shards(self.path, c, r):
                    fsync_path(p)
        with open(self.path / JOURNAL, "a") as f:
            f.write("".join(r.to_json() + "\n" for r in results))
            f.flush()
            os.fsync(f.fileno())
        for r in results:
            self.done[r.chunk] = r

    # -- commit (commit.py) ------------------------------------------------------------------

    def seal(self, keys: list[str], classes: list[str] | None, fingerprint: dict[str, Any],
             item_ids: np.ndarray | None = None, stream: Any = None) -> dict[str, Any]:
        """Finish every file, then write manifest.json inside the partial directory (:func:`.commit.seal`).

        A full disk keeps the finished chunks, and the error says how to resume.
        """
        self.close()
        try:
            return commit.seal(self.path, self.plan, self.done, keys, classes, fingerprint, item_ids, stream)
        except DiskFullError as e:
            raise DiskFullError(f"{e}; {self._resume_hint()}") from None
        except OSError as e:
            if e.errno in NO_ROOM:
                raise self._no_room(e, 0) from None
            raise

    def publish(self) -> Path:
        return commit.publish(self.path, self.out, self.force)


def prior_plan(out: Path, digest: str) -> BuildPlan | None:
    """The plan of the partial build of ``out`` when it is a build of the inputs ``digest`` names (its
    provisional specs then need no item read to be made again), else None."""
    try:
        plan = BuildPlan.from_json(json.loads((partial_path(out) / PLAN).read_text()))
    except (OSError, ValueError, KeyError, TypeError, PrebakeError):
        return None
    return plan if plan.digest == digest and not plan.staged else None


def read_journal(journal: Path) -> dict[int, ChunkResult]:
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
    done = read_journal(path / JOURNAL)
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
