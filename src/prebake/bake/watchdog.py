"""Say where a build is stuck: the item a worker has been on for too long, and its Python stack.

A transform that waits forever (a deadlock in native code, a network read, a lock) leaves the
workers alive, so nothing dies and the build would wait in silence. Each worker notes the item
it is baking in a shared slot (:func:`working_on`, one store per item); the building process
reads the slots and, when one has not moved for ``seconds``, logs a WARNING naming the item
and the worker's Python stack, then again after twice as long, and so on. A forked worker's
stack comes from :mod:`faulthandler` on SIGUSR1, written to a file the parent reads: it works
while the worker is blocked inside C code. A build in this process is watched by a thread
that formats the main thread's frames.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import opt

log = logging.getLogger("prebake")

_SLOT: tuple[Any, int] | None = None  # (the shared item slots, this process's slot) while baking
_STACK_WAIT_S = 2.0  # how long a worker gets to write its stack after SIGUSR1


def working_on(index: int) -> None:
    """Note that this process is now baking item ``index`` (-1: between items)."""
    if _SLOT is not None:
        _SLOT[0][_SLOT[1]] = index


class Watchdog:
    """Shared item slots for ``n`` workers, and the parent's memory of when each last moved."""

    def __init__(self, n: int, seconds: float, describe_item: Callable[[int], str] = str):
        self.seconds = float(seconds)
        self.describe_item = describe_item
        self.items = mp.get_context("fork").RawArray("q", [-1] * n)  # inherited by forked workers
        self._files = [tempfile.TemporaryFile() for _ in range(n)]
        self._seen: list[tuple[int, float, float]] = [(-1, time.monotonic(), self.seconds)] * n

    def enter_worker(self, k: int) -> None:
        """In worker ``k``, after the fork: note items in slot ``k``; SIGUSR1 writes the stack to its file."""
        global _SLOT
        _SLOT = (self.items, k)
        faulthandler.register(signal.SIGUSR1, file=self._files[k], all_threads=True)

    def stalled(self) -> Iterator[tuple[int, int, float]]:
        """``(slot, item, seconds on it)`` of each slot due a report now; each is reported again after twice as long."""
        now = time.monotonic()
        for k, item in enumerate(self.items):
            seen, since, due = self._seen[k]
            if item != seen:
                self._seen[k] = (item, now, self.seconds)
            elif item >= 0 and now - since >= due:
                self._seen[k] = (item, since, due * 2)
                yield k, item, now - since

    def report(self, k: int, item: int, seconds: float, who: str, stack: str) -> None:
        log.warning("watchdog: %s has been on item %d (%s) for %.0f s, and is still working on it; its Python "
                    "stack, most recent call first:\n%s\nIf an item needs that long, raise %s; %s turns this report "
                    "off", who, item, self.describe_item(item), seconds,
                    stack.rstrip() or "  (the worker wrote no stack)",
                    opt("watchdog"), opt("watchdog", 0))

    def worker_stack(self, k: int, pid: int) -> str:
        """Ask worker ``k`` (process ``pid``) for its stack, and read what it wrote."""
        fd = self._files[k].fileno()
        start = os.fstat(fd).st_size
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            return ""
        size, deadline = start, time.monotonic() + _STACK_WAIT_S
        while time.monotonic() < deadline:  # faulthandler writes from the signal handler, in a few writes
            time.sleep(0.05)
            now = os.fstat(fd).st_size
            if now > start and now == size:
                break
            size = now
        text = os.pread(fd, size - start, start).decode("utf-8", "replace")
        return "\n".join(_until(text.splitlines(), "in _worker_main"))

    def close(self) -> None:
        for f in self._files:
            f.close()


@contextmanager
def watch_this_process(seconds: float, describe_item: Callable[[int], str]) -> Iterator[None]:
    """Watch a build that bakes in this process: a thread reports the main thread's stack when it stalls."""
    global _SLOT
    if not seconds:
        yield
        return
    dog = Watchdog(1, seconds, describe_item)
    _SLOT, stop, main = (dog.items, 0), threading.Event(), threading.get_ident()
    thread = threading.Thread(target=_watch, args=(dog, stop, main), name="prebake-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _SLOT = None
        dog.close()


def _until(lines: list[str], marker: str) -> Iterator[str]:
    """The lines of a stack up to the worker's main loop: the frames below it are the fork's, not the work's."""
    for line in lines:
        yield line
        if line.rstrip().endswith(marker):
            return


def _watch(dog: Watchdog, stop: threading.Event, main: int) -> None:
    while not stop.wait(min(1.0, dog.seconds / 4)):
        for k, item, seconds in dog.stalled():
            frame = sys._current_frames().get(main)
            stack = "".join(reversed(traceback.format_stack(frame))) if frame is not None else ""
            dog.report(k, item, seconds, f"this process ({os.getpid()})", stack)
