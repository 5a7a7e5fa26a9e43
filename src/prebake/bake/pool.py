"""Forked worker processes that notice when one of them dies.

``multiprocessing.Pool`` replaces a worker that dies (the out-of-memory killer's
SIGKILL, a SIGBUS) and silently loses its task, so a build waited forever for a
result that never came (14 of 14 trials). Here every worker has its own pipe and
runs one task at a time, and the parent waits on the pipes *and* on the process
sentinels: a death is seen the moment it happens, with the task it interrupted and
the signal that ended it.
"""

from __future__ import annotations

import copy
import ctypes
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ..errors import PrebakeError, WorkerDiedError
from .watchdog import Watchdog, working_on

log = logging.getLogger("prebake")

_JOIN_S = 5.0  # how long a terminated worker gets to exit before SIGKILL

#: What a signal that ends a worker usually means, for the error message.
_CAUSES = {
    signal.SIGKILL: "killed with SIGKILL: the kernel's out-of-memory killer does this when RAM runs out "
                    "(see 'dmesg'); use fewer workers or smaller items",
    signal.SIGBUS: "SIGBUS: a write to a memory-mapped file failed, which usually means the disk is full",
    signal.SIGSEGV: "SIGSEGV: native code in a decoder or in your transform crashed",
    signal.SIGTERM: "terminated with SIGTERM by another process",
    signal.SIGXFSZ: "SIGXFSZ: a file grew past the file size limit (ulimit -f)",
}


def death_cause(exitcode: int | None) -> str:
    """A worker's exit code in words."""
    if exitcode is None:
        return "ended for an unknown reason"
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return f"killed by signal {-exitcode}"
        return _CAUSES.get(sig, f"killed by {sig.name}")
    return f"exited with status {exitcode} (a call to os._exit or a crash of the interpreter)"


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: Any = None
    busy: bool = False


class WorkerPool:
    """``n`` forked processes; :meth:`imap_unordered` like ``multiprocessing.Pool``'s, minus the hang.

    With a :class:`~prebake.bake.watchdog.Watchdog`, a worker that stays on one item too long is
    reported (its item and Python stack) while the pool waits.
    """

    def __init__(self, n: int, initializer: Callable[..., None], initargs: tuple[Any, ...] = (),
                 watchdog: Watchdog | None = None):
        ctx = mp.get_context("fork")
        self.watchdog = watchdog
        self.workers: list[_Worker] = []
        for k in range(n):
            parent_end, child_end = ctx.Pipe(duplex=True)
            p = ctx.Process(target=_worker_main, args=(child_end, k, watchdog, initializer, initargs), daemon=True)
            p.start()
            child_end.close()
            self.workers.append(_Worker(p, parent_end))

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any],
                       describe: Callable[[Any], str] = repr) -> Iterator[Any]:
        """``fn(task)`` for every task, results as they finish.

        A worker's exception is raised here. A worker that dies raises
        :class:`WorkerDiedError`, naming ``describe(task)`` and the cause.
        """
        todo = deque(tasks)
        while todo or any(w.busy for w in self.workers):
            for w in self.workers:
                if not w.busy and todo:
                    w.task, w.busy = todo.popleft(), True
                    w.conn.send((fn, w.task))
            yield from self._collect(describe)

    def _collect(self, describe: Callable[[Any], str]) -> Iterator[Any]:
        """Wait for any worker; yield the results that arrived, then raise what went wrong, if anything."""
        by_handle: dict[Any, _Worker] = {}
        for w in self.workers:
            by_handle[w.conn] = w
            by_handle[w.process.sentinel] = w
        ready = wait(list(by_handle), timeout=None if self.watchdog is None else min(1.0, self.watchdog.seconds / 4))
        if not ready and self.watchdog is not None:
            self._report_stalls(describe)
        results, failure = [], None
        for w in {id(by_handle[h]): by_handle[h] for h in ready}.values():
            if w.conn.poll():  # a result first: a worker may finish a task and then die
                try:
                    status, value = w.conn.recv()
                except (EOFError, OSError):
                    status, value = "dead", None  # died mid-send: its exit code says how
                if status == "ok":
                    results.append(value)
                    w.busy, w.task = False, None
                elif status == "error":
                    failure = failure or value
            if failure is None and not w.process.is_alive():
                w.process.join()
                failure = self._death(w, describe)
        yield from results
        if failure is not None:
            raise failure

    def _report_stalls(self, describe: Callable[[Any], str]) -> None:
        assert self.watchdog is not None
        for k, item, seconds in self.watchdog.stalled():
            w = self.workers[k]
            stack = self.watchdog.worker_stack(k, w.process.pid)
            self.watchdog.report(k, item, seconds, f"worker process {w.process.pid} (in {describe(w.task)})", stack)

    @staticmethod
    def _death(w: _Worker, describe: Callable[[Any], str]) -> WorkerDiedError:
        code = w.process.exitcode
        doing = f"while baking {describe(w.task)}" if w.busy else "between two tasks"
        err = WorkerDiedError(f"worker process {w.process.pid} died {doing}: {death_cause(code)}")
        err.exitcode = code
        return err

    def release(self) -> None:
        """Stop every worker (SIGTERM) without waiting: the build's last chunk is in, and the workers' exit (their
        memory given back) overlaps the commit; :meth:`close` reaps them."""
        for w in self.workers:
            if w.process.is_alive():
                w.process.terminate()

    def close(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after a grace period) and reap them."""
        for w in self.workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in self.workers:
            w.process.join(_JOIN_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        if self.watchdog is not None:
            self.watchdog.close()


def _worker_main(conn: Connection, k: int, watchdog: Watchdog | None, initializer: Callable[..., None],
                 initargs: tuple[Any, ...]) -> None:
    _one_thread_each()
    keep_heap()
    if watchdog is not None:
        watchdog.enter_worker(k)
    initializer(*initargs)
    while True:
        try:
            fn, task = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe: nothing more to do
        try:
            reply: tuple[str, Any] = ("ok", fn(task))
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent, which raises it
            reply = ("error", _sendable(e))
        working_on(-1)
        conn.send(reply)


def _one_thread_each() -> None:
    """One compute thread per worker, before any of the job's code runs (as torch's DataLoader workers do).

    A child forked after the parent ran a multi-threaded torch op inherits the parent's OpenMP
    pool state, and its first parallel region waits forever for threads that do not exist in it
    (tests/faults/test_hangs.py); one thread never enters such a region. The variables reach
    libraries that the child loads itself. The workers are the build's parallelism.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_HEAP_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def keep_heap() -> None:
    """Let glibc's malloc keep freed memory for the next item: blocks under 32 MB from the heap, up to 64 MB of free
    heap kept (the largest values its own dynamic rule reaches).

    A worker allocates an item's arrays, frees them, and allocates the next item's of another size. By default
    glibc maps a block larger than any freed so far afresh and gives the top of the heap back past twice that, so
    photos of every size kept faulting in new pages: benchmarks/realdata.py's 2,400 photos, 5 A/B pairs in fresh
    processes, 61,800-112,800 minor faults in the workers and a median build of 2.67 s, against 13,900-14,400 and
    2.44 s with this. Nothing changes where the user set malloc's own variables, or where malloc is not glibc's."""
    if any(v in os.environ for v in _HEAP_ENV):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # fixing either threshold turns glibc's dynamic rule off: set both
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def _sendable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling (with the worker's traceback as a note), else a PrebakeError saying what it was."""
    where = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:  # what the pipe will do: serialise it, and rebuild it from its reduced form (deepcopy does that here)
        pickle.dumps(e)
        copy.deepcopy(e)
    except Exception:  # noqa: BLE001 - any pickling failure: send the text instead
        e = PrebakeError(f"{type(e).__name__} in worker process {os.getpid()}: {e}")
    if hasattr(e, "add_note"):
        e.add_note(f"raised in worker process {os.getpid()}:\n{where}")
    return e
