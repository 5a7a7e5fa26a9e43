"""The Ray executor: a build's chunks as Ray tasks, its stages as Ray actors, on a cluster.

``prebake.build(..., executor="ray")`` (``prebake build --executor ray``) bakes with
:class:`RayExecutor` instead of the fork pool. It has the pool's interface,
``imap_unordered(fn, tasks, describe=)``, so the journal, resume, fingerprint and commit
of :mod:`prebake.bake.build` are the same code, and a Ray build and a local build of
the same inputs are byte-identical::

    driver (prebake.build)                      Ray workers, on any node
    fingerprint, lock, probe, <out>.partial/
    ray.put(Job) once  ───────────────────────▶ object store (CIFAR's arrays: zero-copy reads)
    one task per chunk (num_cpus=1) ──────────▶ run_chunk: rows into <out>.partial/ (mmap, msync)
           ◀──────────────────────────────────  ChunkResult: bad rows and stats, a few hundred bytes
    [stages] ≤ 2 chunks in flight per actor ──▶ stage actor (num_gpus=1, one per GPU): reads the
           ◀──────────────────────────────────  chunk's inputs from <out>.partial/, writes its outputs
    journal (fsync), progress, seal, publish

**What travels.** The :class:`~prebake.bake.worker.Job` (the source and the transforms) is
pickled by Ray's cloudpickle once, into the object store; each Ray worker process fetches
it once per build and keeps its column maps open across chunks (and the Job until the
next build replaces it: Ray has no hook to drop it when a build ends, and its workers end
with the driver). Arrays that came through the object store are read-only, so a transform
that writes into an item's array fails there. A task carries its chunk number, the plan
and the rows to reuse. User modules loaded from a file (``--dataset path/to/file.py:make``)
travel by value; a ``module:function`` must be importable on every node (installed, or on
a ``PYTHONPATH`` every node shares).

**Failures.** A task whose worker process dies is run again (:data:`MAX_RETRIES` times);
it rewrites the same rows and shards, so the bytes do not change. A chunk whose retries
are spent stops the build with a :class:`~prebake.errors.WorkerDiedError`; the finished
chunks are journaled and the same command resumes them, on Ray or locally.

**Stages.** With GPUs in the cluster, one actor per GPU (``num_gpus=1``, at most one per
chunk); without, one CPU actor (``num_cpus=1``). Each runs
:class:`~prebake.bake.stage_runner.StageRunner` on the chunks the tasks finished, at most
:data:`STAGE_BACKLOG` in flight per actor (one running, one waiting, so a device never
waits for the driver). The tasks never wait for the stages: a baked chunk's rows are on
disk, so baking ahead costs nothing. A chunk is journaled only after its stage outputs
are written, as in a local build.

**Storage.** ``<out>.partial/`` must be on one POSIX filesystem that every node mounts at
the same path, with shared ``mmap`` writes coherent across nodes (two chunks next to each
other share a page, and a node writes back whole pages), ``rename`` atomic within a
directory, and ``msync``/``fsync`` that reach the server (a task syncs its own rows before
it reports the chunk; the driver syncs the shards and the journal): Lustre, IBM Storage
Scale (GPFS) and CephFS do this; NFS does not (its clients write back whole pages), and
one node's local disk always does. The build lock is the driver's alone.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import OptionError, PrebakeError, WorkerDiedError, opt
from ..identity.plugins import file_modules

log = logging.getLogger("prebake")

MAX_RETRIES = 3  # a chunk task (or stage call) whose process dies is run again this often
STAGE_BACKLOG = 2  # chunks in flight per stage actor: one running, one waiting


def import_ray() -> Any:
    """The ``ray`` module, or an OptionError with the install command."""
    try:
        import ray
    except ImportError:
        raise OptionError(f"{opt('executor', 'ray')} needs Ray: pip install 'prebake[ray]' "
                          "(or pip install 'ray>=2.9')") from None
    return ray


def connect(address: str | None, cpus: int | None = None) -> Any:
    """Ray, initialised: the session this process already has, else the cluster at ``address``
    (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``), else ``RAY_ADDRESS``'s, else a new local one
    with ``cpus`` CPUs (None: all). Ray stays up for the rest of the process, as Ray Data's does."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    local = address is None and not os.environ.get("RAY_ADDRESS")
    try:
        if local:
            with _environ(RAY_worker_niceness=str(WORKER_NICENESS)):
                ray.init(num_cpus=cpus or None, include_dashboard=False)
        else:
            ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or os.environ.get("RAY_ADDRESS")
        said = str(e).split(". ")[0].rstrip(".")  # Ray's first sentence; its advice names Ray's own flags
        raise PrebakeError(f"cannot connect to the Ray cluster at {where!r} ({said}); start one "
                           f"with Ray's 'ray start' command, or give its address with {opt('ray_address')}") from None
    return ray


#: A local Ray that prebake starts runs its workers at the builder's priority, as the fork pool's
#: are. Ray's default, nice 15, lets every other busy process on the machine go first (the last
#: row of benchmarks/scale.py); a cluster started with 'ray start' keeps its own setting.
WORKER_NICENESS = 0


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Environment variables set for the length of the block (Ray reads its settings from them at init)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: os.environ.get(k, v) for k, v in values.items()})  # the user's own setting wins
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def ray_executor(workers: int | None, address: str | None, initializer: Callable[..., None],
                 initargs: tuple[Any, ...]) -> Iterator[RayExecutor]:
    """A :class:`RayExecutor` for the length of a build."""
    pool = RayExecutor(workers, address, initializer, initargs)
    try:
        yield pool
    finally:
        pool.close()


class RayExecutor:
    """Chunk tasks on a Ray cluster, with the fork pool's :meth:`imap_unordered`.

    ``initializer(*initargs)`` runs once per Ray worker process and build (it hands the
    worker the Job); ``initargs`` go through the object store once. ``workers`` chunk tasks
    are in flight at a time (None or 0: the cluster's CPUs).
    """

    def __init__(self, workers: int | None, address: str | None, initializer: Callable[..., None],
                 initargs: tuple[Any, ...]):
        self.ray = ray = connect(address, workers)
        resources = ray.cluster_resources()
        self.slots = workers if workers else max(1, int(resources.get("CPU", 1)))
        for module in file_modules():  # importable only here: ship their code with the pickles
            ray.cloudpickle.register_pickle_by_value(module)
        self._init = [ray.put((initializer, initargs))]  # in a list, so a task gets the reference, not the value
        self._token = uuid.uuid4().hex
        self._task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_run_task)
        self.stages: StageActors | None = None
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        log.info("ray: %d chunk tasks at a time on %d CPUs across %d node%s", self.slots,
                 int(resources.get("CPU", 0)), nodes, "" if nodes == 1 else "s")

    def adopt_stages(self, runner: Any) -> None:
        """Run ``runner``'s stages (a driver-side :class:`~prebake.bake.stage_runner.StageRunner`) in Ray actors,
        inside :meth:`imap_unordered`; ``runner`` keeps the totals for its summary and progress."""
        self.stages = StageActors(self.ray, runner)

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any],
                       describe: Callable[[Any], str] = repr) -> Iterator[Any]:
        """``fn(task)`` for every task, as Ray tasks; results as they finish (after the stages, if adopted).

        ``tasks`` are :mod:`prebake.bake.build`'s ``(out, plan, chunk, reuse)`` tuples. An
        exception ``fn`` raised is raised here as itself; a task whose worker died more than
        :data:`MAX_RETRIES` times raises :class:`WorkerDiedError` naming ``describe(task)``.
        """
        todo = deque(tasks)
        baking: dict[Any, Any] = {}  # object ref -> task
        try:
            while todo or baking or (self.stages is not None and self.stages.busy()):
                while todo and len(baking) < self.slots:
                    task = todo.popleft()
                    baking[self._task.remote(self._token, self._init, fn, task)] = task
                refs = [*baking, *(self.stages.refs() if self.stages is not None else ())]
                [ref], _ = self.ray.wait(refs, num_returns=1)
                if ref in baking:
                    task = baking.pop(ref)
                    result = get(self.ray, ref, f"the Ray worker baking {describe(task)}")
                    if self.stages is None:
                        yield result
                    else:
                        self.stages.put(task, result)
                else:
                    assert self.stages is not None
                    staged = self.stages.take(ref, describe)
                    if staged is not None:
                        yield staged
        finally:
            for ref in baking:  # a failure or Ctrl-C: stop what is still baking
                self.ray.cancel(ref)

    def close(self) -> None:
        """Stop the stage actors and release the Job's object."""
        if self.stages is not None:
            self.stages.close()
        self._init = []


def get(ray: Any, ref: Any, who: str) -> Any:
    """``ray.get(ref)``; the task's own exception re-raised as itself, a dead process as WorkerDiedError."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        if not isinstance(cause, Exception):
            raise PrebakeError(f"{who} failed: {e}") from None
        if hasattr(cause, "add_note"):
            cause.add_note(f"raised in {who}")
        raise cause from None
    except ray.exceptions.RayError as e:  # the worker process or its node died, every try
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        err = WorkerDiedError(f"{who} died {MAX_RETRIES + 1} times ({type(e).__name__}: {reason})")
        err.exitcode = None
        raise err from None


def _run_task(token: str, init: list[Any], fn: Callable[[Any], Any], task: Any) -> Any:
    """A chunk task, in a Ray worker process: the build's initializer once, then ``fn(task)``."""
    if _WORKER.get("token") != token:
        import ray

        initializer, initargs = ray.get(init[0])
        initializer(*initargs)
        _WORKER["token"] = token
    return fn(task)


_WORKER: dict[str, str] = {}  # the build this Ray worker process was initialised for


# -- stage actors ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Actor:
    handle: Any
    where: str = "?"
    in_flight: int = 0
    items: int = 0
    seconds: float = 0.0
    util: list[float] = field(default_factory=list)


class StageActors:
    """The stage actors of one build, fed from :meth:`RayExecutor.imap_unordered` with backpressure."""

    def __init__(self, ray: Any, runner: Any):
        self.ray, self.runner = ray, runner
        plan = runner.plan
        gpus = int(ray.cluster_resources().get("GPU", 0))
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        n = max(1, min(gpus, plan.num_chunks))
        # A dead actor is replaced here, not restarted by Ray: a restart needs its arguments kept in the store.
        self._cls = ray.remote(max_restarts=0, **resources)(StageWorker)
        self._stages = ray.put(list(runner.stages))  # once in the object store, however many actors
        self.actors = self._start(n)
        self.waiting: deque[tuple[Any, Any]] = deque()  # (task, result): baked, for an actor
        self.running: dict[Any, tuple[Any, Any, _Actor]] = {}  # object ref -> (task, result, actor)
        self.tries: dict[int, int] = {}  # chunk -> stage calls that died on it
        log.info("ray: stages %s on %d actor%s: %s", ", ".join(s.name for s in runner.stages), n,
                 "" if n == 1 else "s", "; ".join(a.where for a in self.actors))

    def _start(self, n: int) -> list[_Actor]:
        """``n`` new actors, started together."""
        actors = [_Actor(self._cls.remote(self._stages, self.runner.partial.out, self.runner.plan)) for _ in range(n)]
        for a, where in zip(actors, get(self.ray, [a.handle.where.remote() for a in actors], "a new stage actor")):
            a.where = where
        return actors

    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def refs(self) -> list[Any]:
        return list(self.running)

    def put(self, task: Any, result: Any) -> None:
        """A baked chunk: to the least busy actor with room, else it waits for one."""
        self.waiting.append((task, result))
        self._feed()

    def _feed(self) -> None:
        while self.waiting:
            actor = min(self.actors, key=lambda a: a.in_flight)
            if actor.in_flight >= STAGE_BACKLOG:
                return
            task, result = self.waiting.popleft()
            actor.in_flight += 1
            self.running[actor.handle.process.remote(result, task[3])] = (task, result, actor)

    def take(self, ref: Any, describe: Callable[[Any], str]) -> Any:
        """The staged result of a finished actor call, the totals and progress updated; None when the
        actor died (the chunk is in line again)."""
        task, baked, actor = self.running.pop(ref)
        actor.in_flight -= 1
        try:
            result, items, seconds, util = get(self.ray, ref, f"the stage actor ({actor.where}) on {describe(task)}")
        except WorkerDiedError:
            self._replace(actor, task, baked, describe)
            return None
        for totals in (self.runner, actor):
            totals.items += items
            totals.seconds += seconds
            totals.util.extend(util)
        if self.runner.progress:
            self.runner.progress(self.runner.key, self.runner.items, self.runner.plan.num_keys)
        self._feed()
        return result

    def _replace(self, actor: _Actor, task: Any, baked: Any, describe: Callable[[Any], str]) -> None:
        """A stage actor died: a new one takes its place, and the chunk goes back in line (its outputs are
        written again, to the same bytes)."""
        chunk = task[2]
        self.tries[chunk] = self.tries.get(chunk, 0) + 1
        if self.tries[chunk] > MAX_RETRIES:
            err = WorkerDiedError(f"the stage actor ({actor.where}) died {self.tries[chunk]} times on {describe(task)}")
            err.exitcode = None
            raise err
        for k, a in enumerate(self.actors):
            if a is actor:  # its other calls fail too; one replacement is enough
                log.warning("ray: the stage actor on %s died on %s; starting another", actor.where, describe(task))
                self.actors[k] = self._start(1)[0]
        self.waiting.appendleft((task, baked))
        self._feed()

    def close(self) -> None:
        for a in self.actors:
            if a.items:
                util = f", GPU utilisation {sum(a.util) / len(a.util):.0f}%" if a.util else ""
                log.info("ray: stage actor on %s: %d items in %.1f s%s", a.where, a.items, a.seconds, util)
            self.ray.kill(a.handle)


class StageWorker:
    """A Ray actor (one per GPU) that runs the stages on chunks in ``<out>.partial/``, as the local build does."""

    def __init__(self, stages: list[Any], out: Any, plan: Any):
        from .partial import PartialCache
        from .stage_runner import StageRunner

        self.runner = StageRunner(stages, PartialCache(out, plan, {}), None, "")

    def where(self) -> str:
        """The node and the device, for logs."""
        import ray

        devices = sorted({str(s.resolved_device()) for s in self.runner.stages})
        names = []
        for d in devices:
            if d.startswith("cuda"):
                import torch

                names.append(f"{d} ({torch.cuda.get_device_name(d)})")
            else:
                names.append(d)
        return f"{ray.util.get_node_ip_address()} {', '.join(names)}"

    def process(self, result: Any, reuse: Any) -> tuple[Any, int, float, list[float]]:
        """``result`` with its stage columns written; and the items, seconds and GPU utilisation samples it took."""
        r = self.runner
        items, seconds, samples = r.items, r.seconds, len(r.util)
        r.process(result, reuse)
        return result, r.items - items, r.seconds - seconds, r.util[samples:]
