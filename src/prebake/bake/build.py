"""``prebake.build``: source -> transforms -> parallel workers -> committed cache.

One call per split:

1. fingerprint the inputs; an identical committed cache is a no-op;
2. fork the worker pool, then take the output's lock (children never hold it,
   so a killed builder cannot wedge the next one);
3. probe the first good item for the column specs and preallocate (or resume)
   the partial directory;
4. run the pending chunks, journaling them as they become durable;
5. seal and publish.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock
import numpy as np

from ..cache.files import lock_holder, read_manifest, remove_paths, write_lock_holder
from ..cache.format import LOCK_SUFFIX, MANIFEST, PARTIAL_SUFFIX, REPLACED_SUFFIX, ColumnSpec, partial_path
from ..cache.ownership import check_output, owned_cache, remove_cache, remove_partial
from ..cache.splits import check_splits
from ..errors import BuildLockedError, DiskFullError, FormatError, PrebakeError, SourceError, WorkerDiedError, opt
from ..identity import fingerprint as fpr
from ..identity import reads
from ..sources import DatasetSource, Source, SourceOptions, detect
from ..sources.base import import_ahead
from ..sources.hf import sources as hf_sources
from ..sources.notes import note_lines
from ..steps.image import ToCHW
from ..steps.pipeline import Pipeline
from . import direct
from .buildlog import write_build_log
from .commit import publish
from .incremental import hash_identities, reuse_plan
from .partial import PartialCache, prior_plan, settle_disk_full
from .placed import lay_out
from .plan import BuildPlan, ChunkResult
from .pool import WorkerPool
from .rewrite import SchemaSoFar
from .skips import check_column_sets, check_dtypes, check_skipped
from .stage_runner import StageRunner, plan_stages
from .stream import StreamAhead, write_ahead
from .watchdog import Watchdog, watch_this_process
from .worker import Job, probe, run_chunk

log = logging.getLogger("prebake")

#: ``progress(split, items_done, items_total)``, called in the parent process.
ProgressFn = Callable[[str, int, int], None]

_CHUNK_BYTES = 16 << 20  # ~16 MB of rows per chunk: big enough to amortise, small enough to balance
_PLACED_CHUNK_BYTES = 64 << 20  # the same where the workers place columns (see _placed_rows)
_CHECKPOINT_S = 1.0  # journal finished chunks at most this often (each checkpoint fsyncs)


@dataclass(frozen=True)
class BuildOptions:
    """Everything that shapes a build of one source, checked (see :func:`prebake.build` for each)."""

    pipeline: Pipeline = field(default_factory=Pipeline)  # the compiled steps: per item, then the stages
    workers: int | None = None  # processes; None = all cores; 0 or 1 = in this process
    force: bool = False
    strict: bool = False
    allow_empty: bool = False  # commit a cache even when every item is bad
    ragged: tuple[str, ...] = ()  # columns whose first axis varies per item
    lock_timeout: float | None = None  # seconds to wait for another build of the same output
    chunk_rows: int | None = None  # rows per work unit; None = about 16 MB of rows
    content_hash: bool = False  # identify source files by their bytes, not size/mtime/ctime (CLI --content-hash)
    executor: str = "local"  # "local": the fork pool; "ray": Ray tasks and actors (bake/ray_executor.py)
    ray_address: str | None = None  # the Ray cluster: "auto", "HOST:PORT"; None: RAY_ADDRESS, else a local Ray
    watchdog: float = 120.0  # log the stack of a worker that has been on one item this long (s); 0: off
    dtypes: tuple[tuple[str, str], ...] = ()  # (column, dtype): every item of the column is cast to it
    max_skipped: float | None = None  # more bad items than this (a count, or a fraction below 1) fails the build

    @property
    def stages(self) -> tuple[Any, ...]:
        return self.pipeline.stages


@dataclass
class BuildReport:
    """What one split's build did.

    ``split`` ("" without splits) was built into ``out``; ``action`` is "built", "resumed",
    "rebuilt" or "up to date", for ``reasons``. ``num_items`` were committed, ``skipped``
    lists the bad items (index, key, reason), ``reused`` items were copied unchanged from
    the previous cache, in ``seconds``. ``warnings``: what the build could not check (a
    dataset without ``fingerprint()``), also logged. ``remainder``: the transforms of a MONAI
    ``Compose`` from its first random one on, not baked: apply them per batch (None without one).
    """

    split: str
    out: Path
    action: str  # "built", "resumed", "rebuilt" or "up to date"
    reasons: list[str] = field(default_factory=list)
    num_items: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    reused: int = 0  # items copied unchanged from the previous cache instead of baked
    warnings: list[str] = field(default_factory=list)  # e.g. a dataset whose data identity is unknown
    remainder: Any = None  # a MONAI Compose's random transforms, not baked: apply them per batch

    @property
    def kept(self) -> int:
        """Items in the cache (``num_items``): K of ``kept K of N, skipped S``."""
        return self.num_items

    @property
    def total(self) -> int:
        """Items of the source: the kept ones and the skipped ones."""
        return self.num_items + len(self.skipped)


def kept_line(report: BuildReport) -> str:
    """``kept K of N, skipped S``: the last line of every build."""
    where = f"{report.split}: " if report.split else ""
    return f"{where}kept {report.kept:,} of {report.total:,}, skipped {len(report.skipped):,}"


def skipped_summary(report: BuildReport, manifest: str, show: int = 10) -> list[str]:
    """Lines that summarise the bad items of ``report``: counts by kind of reason, then the first few."""
    n = len(report.skipped)
    where = f"{report.split}: " if report.split else ""
    lines = [f"{where}skipped {n} bad item{'s' if n != 1 else ''} of {report.out}:"]
    kinds = Counter(re.split(r"[:(]", s["reason"], maxsplit=1)[0].strip() for s in report.skipped)
    lines += [f"  {count:>6} x {kind}" for kind, count in kinds.most_common()]
    lines += [f"  {s['key']}: {s['reason']}" for s in report.skipped[:show]]
    if n > show:
        lines.append(f"  ... and {n - show} more (see 'skipped' in {manifest})")
    return lines


def resolve_sources(source: Any, kind: str | None = None, options: SourceOptions | None = None) -> dict[str, Source]:
    """A path, a Source, or any map-style dataset -> ``{split: Source}``."""
    if isinstance(source, Source):
        return {"": source}
    if isinstance(source, (str, os.PathLike)):
        return detect(source, kind=kind, options=options)
    hf = hf_sources(source, options)  # a Hugging Face Dataset or DatasetDict (None for anything else)
    if hf is not None:
        return hf
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return {"": DatasetSource(source)}
    raise TypeError(f"cannot build from {type(source).__name__}: pass a path, a Source or a map-style dataset")


def select_split(sources: Mapping[str, Source], split: str | None) -> dict[str, Source]:
    """Just ``split`` of ``sources`` (all of them when None), or a SourceError naming the splits there are."""
    if split is None:
        return dict(sources)
    if split not in sources:
        have = sorted(sources) if list(sources) != [""] else "none"
        raise SourceError(f"the source has no split {split!r}; its splits: {have}")
    return {split: sources[split]}


def build_all(sources: Mapping[str, Source], out: str | os.PathLike[str], opts: BuildOptions,
              progress: ProgressFn | None = None) -> list[BuildReport]:
    """Build every split: ``{"": src}`` into ``out``, named splits into ``out/<split>``."""
    out = Path(out)
    return [build_one(src, out / split if split else out, opts, progress, split) for split, src in sources.items()]


def build_one(src: Source, out: Path, opts: BuildOptions, progress: ProgressFn | None = None,
              split: str = "") -> BuildReport:
    t0 = time.perf_counter()
    out = Path(os.path.abspath(out))
    _check_out(out)
    direct.check_setting()
    steps = opts.pipeline
    steps.check_inputs(src)
    ragged = tuple(sorted(set(opts.ragged) | set(src.ragged_columns) | set(steps.ragged_outputs())))
    src = src.with_content_hash() if opts.content_hash else src
    described = src.describe()
    fp = fpr.make(described, steps.describe(),
                  {"ragged": list(ragged), **_identity_option(opts)})
    warnings = [described["unverified"]] if described.get("unverified") else []
    for w in warnings:
        log.warning("%s: %s", out, w)
    if src.origin is not None:
        fp["origin"] = src.origin  # beside the digest, not in it: how ls opens the source again
    if stale_reasons(out, fp, opts.force) is None and not leftovers(out):
        return _up_to_date(split, out, t0, warnings, opts.max_skipped)
    check_splits(out, src.keys(), opts.force)  # a rebuild must not lose items a saved split names
    out.parent.mkdir(parents=True, exist_ok=True)
    job = Job(src, steps, opts.strict)
    with _executor(job, opts, len(src)) as pool, _locked(out, opts.lock_timeout):
        reasons = stale_reasons(out, fp, opts.force)  # again: another builder may have finished it
        if reasons is None:
            remove_leftovers(out)  # safe: we hold the lock, nobody else builds this output
            return _up_to_date(split, out, t0, warnings, opts.max_skipped)
        if (out / MANIFEST).exists():
            log.info("rebuilding %s: %s", out, "; ".join(reasons))
        try:
            manifest, action, reused = _bake(job, out, fp, opts, pool, progress, split, ragged)
        except DiskFullError as e:
            raise settle_disk_full(out, e) from None
        if action == "resumed":
            reasons = ["resuming a build that was interrupted"]
    log.debug("%s %s: %d items, %d skipped", action, out, manifest["num_items"], len(manifest["skipped"]))
    for line in note_lines(manifest.get("notes", [])):  # what the readers kept only part of (sources/notes.py)
        log.warning("%s: %s", out, line)
        warnings.append(line)
    report = BuildReport(split, out, action, reasons, manifest["num_items"], manifest["skipped"],
                         time.perf_counter() - t0, reused, warnings)
    write_build_log(report, fp)
    return report


def _bake(job: Job, out: Path, fp: dict[str, Any], opts: BuildOptions, pool: Any,
          progress: ProgressFn | None, split: str, ragged: tuple[str, ...]) -> tuple[dict[str, Any], str, int]:
    sealed = partial_path(out) / MANIFEST
    if sealed.exists() and _digest_of(sealed.parent) == fp["digest"] and not opts.force \
            and not reads.stale_at(sealed.parent):
        publish(sealed.parent, out)  # a crash hit between seal and publish
        return read_manifest(out), "resumed", 0
    reads.forget()  # what this process opened before this build is not this build's
    ids = hash_identities(_identities(job.source, fp))
    reusable = None if opts.force or reads.stale_at(out) else reuse_plan(out, fp, ids)
    staged: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    item, prior = None, None
    if opts.stages:  # the stages' output specs come from running them on the first item
        item_specs, item = probe(job, ragged, dict(opts.dtypes), opts.allow_empty)
        stage_specs, staged, dropped = plan_stages(opts.stages, item_specs, item)
        specs = [*item_specs, *stage_specs]
        kept = sorted((c for c in specs if c.name not in dropped), key=lambda c: c.name)
        reuse = reusable[0] if reusable and sorted(reusable[1], key=lambda c: c.name) == kept else None
    elif reusable:
        reuse, specs = reusable
    else:
        prior = None if opts.force else prior_plan(out, fp["digest"])  # a resume reads no item to plan again
        (specs, item), reuse = ((list(prior.columns), None) if prior else probe(job, ragged, dict(opts.dtypes),
                                                                                   opts.allow_empty)), None
    check_dtypes(opts.dtypes, specs, out)
    sizes = _Predicted(job, specs)
    rows = opts.chunk_rows or (prior.chunk_rows if prior else _chunk_rows(specs, item, opts.stages)
                               if not sizes() else _placed_rows(specs, sizes(), len(job.source), _pool_size(pool)))
    plan = BuildPlan(fp["digest"], len(job.source), rows, tuple(specs), staged, dropped, ragged, opts.dtypes)
    partial = PartialCache.start(out, plan, fresh=opts.force)
    if partial.done and reads.changed_since(partial.done.values()):  # its chunks read files that changed since
        partial = PartialCache.start(out, plan, fresh=True)
    action = "resumed" if partial.done else ("rebuilt" if (out / MANIFEST).exists() else "built")
    if partial.done:
        log.info("resuming %s: %d of %d chunks already done", out, len(partial.done), plan.num_chunks)
    if reuse is not None:
        log.info("%s: copying %d unchanged items from the old cache", out, int((reuse >= 0).sum()))
    job.partial = partial
    runner = StageRunner(opts.stages, partial, progress, split) if opts.stages else None
    if runner is not None and opts.executor == "ray":
        pool.adopt_stages(runner)  # Ray actors run them, inside pool.imap_unordered; runner keeps the totals
    # a resumed build rewrites at commit; one in this process places, but streams nothing (write_ahead)
    fresh = not partial.done
    with write_ahead(partial.path, plan, fresh, _lay_out(partial, sizes()) if fresh else None,
                     streams=pool is not None) as stream:
        _run(job, partial, pool, progress, split, reuse, None if opts.executor == "ray" else runner, stream)
        if isinstance(pool, WorkerPool):
            pool.release()  # every chunk is in: the workers exit while this process commits
        if stream is not None:
            stream.finish()
        if runner is not None and runner.items:
            log.info("%s: %s", out, runner.summary())
        keys = job.source.keys
        check_column_sets([b for r in partial.done.values() for b in r.bad], [c.name for c in plan.item_columns],
                          plan.num_keys, lambda i: keys()[i])
        _refuse_empty(partial, job.source, opts.allow_empty)
        check_skipped(out, [b for r in partial.done.values() for b in r.bad], plan.num_keys, opts.max_skipped,
                      lambda i: keys()[i], partial.path)
        fp = reads.settle(fp, out, (r.reads for r in partial.done.values()), opts.content_hash,
                          reads.carried(out, fp, reuse is not None))
        manifest = partial.seal(list(job.source.keys()), job.source.classes, fp, ids, stream)
    partial.publish()
    return manifest, action, 0 if reuse is None else int((reuse >= 0).sum())


def _identities(source: Source, fp: dict[str, Any]) -> list[str] | None:
    """The items' identities from the file table the fingerprint already holds (:meth:`Source.item_identities_from`),
    else from the source again: every file's identity taken once a build, not twice (with ``--content-hash``, every
    byte read once, not twice)."""
    files = fp["inputs"]["source"].get("files")
    listed = source.item_identities_from(files) if isinstance(files, dict) and _derives(source) else None
    return listed if listed is not None else source.item_identities()


def _derives(source: Source) -> bool:
    """Whether ``source``'s identities may come from its file table: the class that gives its ``item_identities``
    gives ``item_identities_from`` too, and its ``describe`` is prebake's. A subclass that changes either (a user's
    identities, a table of other identities) is asked its own way."""
    cls = type(source)
    owner = next((c for c in cls.__mro__ if "item_identities" in c.__dict__), None)
    return owner is not None and "item_identities_from" in owner.__dict__ and \
        getattr(cls.describe, "__module__", "").startswith("prebake.")


class _Predicted:
    """``()``: the elements of each item of the columns the workers can place (bake/placed.py), read once when first
    asked: those whose item sizes the source can tell (:meth:`Source.predicted_sizes`) and differ, where the steps
    keep every item's elements as read (only ``ToCHW``) and no stage runs."""

    def __init__(self, job: Job, specs: Sequence[ColumnSpec]):
        self.job, self.specs = job, specs
        self.sizes: dict[str, np.ndarray] | None = None

    def __call__(self) -> dict[str, np.ndarray]:
        if self.sizes is None:
            self.sizes = {}
            job = self.job
            if not job.steps.stages and all(isinstance(s, ToCHW) for s in job.steps.items):
                for c in self.specs:
                    sizes = job.source.predicted_sizes(c.name)
                    if sizes is not None and len(sizes) == len(job.source) and len(sizes) and (sizes != sizes[0]).any():
                        self.sizes[c.name] = np.asarray(sizes, np.int64)
        return self.sizes


def _placed_rows(specs: Sequence[ColumnSpec], sizes: Mapping[str, np.ndarray], items: int, workers: int) -> int:
    """Rows per chunk of a build whose workers place columns of these predicted ``sizes``: about
    _PLACED_CHUNK_BYTES of them, and at least 4 chunks per worker. A chunk's end waits for its last block to reach
    the disk (bake/placed.py), so its rows are more than _CHUNK_BYTES gives (benchmarks/realdata.py's photos,
    2 workers: 1.96 s at 32 rows a chunk, 1.80 s at 64, 1.74 s at 128)."""
    dtypes = {c.name: np.dtype(c.dtype).itemsize for c in specs}
    per_item = sum(float(s.mean()) * dtypes[name] for name, s in sizes.items())
    rows = int(_PLACED_CHUNK_BYTES // max(1.0, per_item))
    return max(1, min(rows, 1024, -(-items // (4 * max(1, workers)))))


def _pool_size(pool: Any) -> int:
    """The workers of ``pool``: a fork pool's processes, a Ray executor's task slots (None: this process)."""
    if pool is None:
        return 1
    slots = getattr(pool, "slots", None)
    return slots if isinstance(slots, int) and slots > 0 else len(getattr(pool, "workers", ())) or workers_default()


def _lay_out(partial: PartialCache, sizes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The byte offsets of the columns laid out for the workers to place (bake/placed.py), from ``sizes``
    (:class:`_Predicted`)."""
    out = {}
    for c in partial.plan.item_columns:
        if c.name in sizes and len(sizes[c.name]) == partial.plan.num_keys:
            offsets = lay_out(partial.path, c, sizes[c.name])
            if offsets is not None:
                out[c.name] = offsets
    return out


def _run(job: Job, partial: PartialCache, pool: Any, progress: ProgressFn | None, split: str,
         reuse: np.ndarray | None, runner: StageRunner | None = None, stream: StreamAhead | None = None) -> None:
    """Bake the pending chunks, journaling finished ones at most every _CHECKPOINT_S.

    With stages, each chunk a worker finished goes through them here before it is journaled,
    while the workers go on with the next chunks."""
    plan, pending = partial.plan, partial.pending()
    done_items = sum(len(plan.chunk_range(c)) for c in partial.done)
    if progress:
        progress(split, done_items, plan.num_keys)
    varying = {name for r in partial.done.values() for name, s in r.spills.items() if s}
    # a task is sent when a worker takes it: it carries the columns spilled by then (bake/spill.py's Fitter)
    tasks = [(partial.out, plan, c, _slice(reuse, plan.chunk_range(c)), varying) for c in pending]
    if pool is None:
        results: Iterator[ChunkResult] = (_run_here(job, c, r, set(v)) for _, _, c, r, v in tasks)
    else:
        results = pool.imap_unordered(_pool_chunk, tasks, describe=_describe_task)
    buffer: list[ChunkResult] = []
    last, schema = time.monotonic(), SchemaSoFar(plan, job.source.keys, partial.path)
    for r in partial.done.values():
        schema.add(r)
    try:
        for r in results:
            if runner is not None:
                runner.process(r, _slice(reuse, plan.chunk_range(r.chunk)))
            buffer.append(r)
            if stream is not None:
                stream.add(r)
            varying.update(name for name, s in r.spills.items() if s)
            schema.add(r)  # items that cannot share a column stop the build now, not after the last chunk
            done_items += len(plan.chunk_range(r.chunk))
            if progress:
                progress(split, done_items, plan.num_keys)
            if time.monotonic() - last >= _CHECKPOINT_S:
                partial.record(buffer)
                buffer, last = [], time.monotonic()
    except WorkerDiedError as e:
        saved = len(partial.done) + len(buffer)
        err = WorkerDiedError(f"{e}; the build stopped, {saved} of {plan.num_chunks} chunks are saved in "
                              f"{partial.path}: re-run the same command to resume")
        err.exitcode = e.exitcode
        raise err from None
    finally:
        partial.record(buffer)  # keep finished work even when a strict error stops the build


def _chunk_rows(specs: Sequence[Any], item: Mapping[str, Any] | None, stages: Sequence[Any]) -> int:
    """Rows per chunk: about _CHUNK_BYTES of baked item, a ragged column counted at the first item's length.

    Counting a ragged column as one row made 200 clips of ~80 frames one 200 MB chunk: one
    worker decoded every clip while the other idled, and the stages waited for all of it
    (examples/talking_head/bench.py). A chunk holds at least the largest stage's batch.
    """
    ragged = any(c.ragged for c in specs)
    per_item = sum(c.row_bytes * (len(item[c.name]) if c.ragged and item is not None and c.name in item else 1)
                   for c in specs)
    rows = max(1 if ragged else 32, min(1024, _CHUNK_BYTES // max(1, per_item)))
    return max([rows, *(s.batch_size for s in stages)])


def _check_out(out: Path) -> None:
    """``out`` and its existing parents must be directories (or not exist yet), and everything at
    ``out`` and beside it under prebake's names must be provably prebake's (cache/ownership.py)."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "OUT" if p == out else f"a parent of OUT ({out})"
                raise PrebakeError(f"{p} is a file, and {what} must be a directory: choose another output "
                                   "directory, or move the file away")
            break
    check_output(out)


def _refuse_empty(partial: PartialCache, source: Source, allow_empty: bool) -> None:
    """Every item bad: fail (and remove the partial build, which holds nothing) unless allowed."""
    bad = [b for r in partial.done.values() for b in r.bad]
    if allow_empty or len(bad) < partial.plan.num_keys or partial.plan.num_keys == 0:
        return
    keys = source.keys()
    shown = "; ".join(f"{keys[i]}: {reason}" for i, reason in sorted(bad)[:3])
    remove_paths([partial.path])
    raise SourceError(f"all {len(bad):,} items of the source are bad, so no cache was written ({shown}"
                      f"{'; ...' if len(bad) > 3 else ''}); fix the inputs, or pass {opt('allow_empty')} "
                      "to commit an empty cache").counted(0, len(bad), len(bad))


def stale_reasons(out: Path, fp: dict[str, Any], force: bool) -> list[str] | None:
    """None if ``out`` is a committed cache of exactly these inputs, else the reasons to (re)build.

    Anything at ``out`` that prebake cannot prove it wrote is a ForeignOutputError, ``force`` or not."""
    manifest = owned_cache(out)
    if force:
        return [opt("force")]
    if manifest is None:
        return ["no cache yet"]
    old = manifest["fingerprint"]
    if old.get("digest") == fp["digest"]:
        return reads.changes(old.get("inputs", {})) or None  # the files the bake read, checked one by one
    return fpr.explain(old.get("inputs", {}), fp["inputs"])


def leftovers(out: Path) -> list[Path]:
    """What a build killed after its commit leaves: an old cache swapped out, or one moved aside."""
    sealed_partial = partial_path(out)
    found = [sealed_partial] if (sealed_partial / MANIFEST).exists() else []
    replaced = out.with_name(out.name + REPLACED_SUFFIX)
    return found + ([replaced] if replaced.exists() or replaced.is_symlink() else [])


def remove_leftovers(out: Path) -> None:
    """Delete :func:`leftovers`, each only if it is provably prebake's (else a ForeignOutputError)."""
    for p in leftovers(out):
        if p.name.endswith(PARTIAL_SUFFIX):
            remove_partial(p)
        else:
            remove_cache(p)


def _digest_of(cache_dir: Path) -> str | None:
    try:
        return read_manifest(cache_dir)["fingerprint"]["digest"]
    except (OSError, ValueError, KeyError, FormatError):
        return None


def _up_to_date(split: str, out: Path, t0: float, warnings: list[str], max_skipped: float | None = None
                ) -> BuildReport:
    m = read_manifest(out)
    log.debug("%s is up to date (%d items)", out, m["num_items"])
    keys = {s["index"]: s["key"] for s in m["skipped"]}
    check_skipped(out, [(s["index"], s["reason"]) for s in m["skipped"]], m["num_items"] + len(m["skipped"]),
                  max_skipped, keys.__getitem__, None)
    return BuildReport(split, out, "up to date", [], m["num_items"], m["skipped"], time.perf_counter() - t0,
                       warnings=warnings)


def _identity_option(opts: BuildOptions) -> dict[str, Any]:
    """``content_hash`` and ``dtypes`` enter the options only when set, so other fingerprints keep their digest."""
    return {**({"content_hash": True} if opts.content_hash else {}),
            **({"dtypes": dict(opts.dtypes)} if opts.dtypes else {})}


@contextmanager
def _locked(out: Path, timeout: float | None) -> Iterator[None]:
    """One builder per output. flock is released by the kernel when its holder dies."""
    lock = filelock.FileLock(str(out) + LOCK_SUFFIX)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        holder = lock_holder(out)
        log.info("another process%s is building %s; waiting for it", f" (pid {holder})" if holder else "", out)
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except filelock.Timeout:
            raise BuildLockedError(
                f"{out} is being built by another process{f' (pid {holder})' if holder else ''} (lock "
                f"{lock.lock_file}); waited {timeout}s: wait for that build to finish, or raise "
                f"{opt('lock_timeout')}"
            ) from None
    write_lock_holder(out)
    try:
        yield
    finally:
        lock.release()


# -- worker processes -------------------------------------------------------------------------

_JOB: Job | None = None  # set in the parent just before the pool forks; children inherit it


def _executor(job: Job, opts: BuildOptions, num_items: int) -> Any:
    """The fork pool (yields None to bake in this process), or Ray tasks (``executor="ray"``)."""
    if opts.executor != "ray":
        return _worker_pool(job, opts.workers, num_items, opts.watchdog)
    from .ray_executor import ray_executor

    return ray_executor(opts.workers, opts.ray_address, _adopt_job, (job,))


def _adopt_job(job: Job) -> None:
    """In a Ray worker process: the job that :func:`_pool_chunk` bakes (a forked worker inherits it)."""
    global _JOB
    _JOB = job


@contextmanager
def _worker_pool(job: Job, workers: int | None, num_items: int, watchdog: float = 0.0) -> Iterator[Any]:
    n = workers_default() if workers is None else workers
    keys = job.source.keys
    if n <= 1 or num_items < 2 or "fork" not in mp.get_all_start_methods():
        with watch_this_process(watchdog, lambda i: keys()[i]):
            yield None  # in this process: no fork, simplest to debug
        return
    global _JOB
    _JOB = job
    # what the reads and steps import, once here rather than in every worker (benchmarks/startup.py)
    import_ahead((*job.source.imports(), *(m for s in job.steps.items for m in getattr(s, "imports", ()))))
    dog = Watchdog(n, watchdog, lambda i: keys()[i]) if watchdog else None
    pool = WorkerPool(n, initializer=_init_worker, initargs=(os.getpid(),), watchdog=dog)  # notices a worker that dies
    try:
        yield pool
    finally:
        pool.close()
        _JOB = None


def _run_here(job: Job, chunk: int, reuse: np.ndarray | None, varying: set[str]) -> ChunkResult:
    """A chunk baked in this process with one torch thread, as a forked worker bakes it (pool._one_thread_each):
    a step's float result can depend on the thread count (the order of a reduction's partial sums, a MONAI
    NormalizeIntensityd's mean), so a cache's bytes then do not depend on the worker count
    (tests/faults/test_monai.py). The thread count is restored for the stages, which run here between chunks."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else 1
    if torch is None or before == 1:
        return run_chunk(job, chunk, reuse, varying)
    torch.set_num_threads(1)
    try:
        return run_chunk(job, chunk, reuse, varying)
    finally:
        torch.set_num_threads(before)


def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # pool.close() ends it quietly, whatever the parent installed (Ray)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this worker when the builder dies, so no orphan keeps working."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: orphans exit when the task pipe closes
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _slice(reuse: np.ndarray | None, rows: range) -> np.ndarray | None:
    return None if reuse is None else reuse[rows.start : rows.stop]


Task = tuple[Path, BuildPlan, int, "np.ndarray | None", set[str]]  # out, plan, chunk, reuse, columns spilled so far


def _describe_task(task: Task) -> str:
    out, plan, chunk = task[:3]
    rows = plan.chunk_range(chunk)
    return f"chunk {chunk} (items {rows.start}..{rows.stop - 1}) of {out}"


def _pool_chunk(task: Task) -> ChunkResult:
    out, plan, chunk, reuse = task[:4]
    varying = task[4] if len(task) > 4 else ()  # Ray's executor sends the first four
    job = _JOB
    assert job is not None, "worker started without a job"
    if job.partial is None or job.partial.plan != plan:
        job.partial, job._columns = PartialCache(out, plan, {}), None
    return run_chunk(job, chunk, reuse, varying)


def workers_default() -> int:
    return os.cpu_count() or 1


__all__: Sequence[str] = ("BuildOptions", "BuildReport", "build_all", "build_one", "resolve_sources", "select_split")
