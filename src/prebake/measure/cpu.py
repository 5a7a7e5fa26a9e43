"""Where a training job's CPU time goes, for :func:`prebake.watch`: the input pipeline against the step.

An input pipeline can starve a CPU-bound step without making it wait: its worker processes (or
threads) take the cores the step's own threads would use, so every step is slower while the next
batch is always ready. ``watch`` samples, at the edges of each window:

- the CPU time of this process's *other Python threads* (a Loader's gather threads, a DataLoader's
  pin-memory thread; not the loop's thread and not torch's compute threads, which are not Python
  threads), read from ``/proc/self/task/<tid>/stat``;
- the CPU time of its *child processes* (DataLoader workers), live ones from ``/proc/<pid>/stat``
  (and their own reaped children), exited ones from ``os.times()``;
- this process's CPU time (``time.process_time``: the loop's thread, torch's threads, all of it);
- how busy the whole machine was (``/proc/stat``).

The first two are the input pipeline's. Off Linux only the process and its exited children are
known; the input pipeline's share is then reported as not sampled (None).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
BUSY = 0.9  # the machine's cores this busy or more: a core the input pipeline takes is one the step lacks


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds at one instant (differences of two samples give a window's use)."""

    wall: float
    process: float
    threads: float | None  # the other Python threads of this process; None off Linux
    children: float | None  # child processes, live and exited; None off Linux
    machine_busy: float | None  # seconds of all cores not idle, from /proc/stat
    machine_total: float | None


@dataclass(frozen=True)
class CpuUse:
    """A window's CPU use: ``input_seconds`` by the input pipeline, ``job_seconds`` by the whole job."""

    wall: float
    input_seconds: float | None
    job_seconds: float
    machine_busy: float | None  # fraction of all cores busy (any process), 0..1
    cores: int

    @property
    def input_cores(self) -> float | None:
        """Cores the input pipeline kept busy on average."""
        return None if self.input_seconds is None or self.wall <= 0 else self.input_seconds / self.wall

    @property
    def busy(self) -> float:
        """How busy the machine's cores were (0..1); from this job's own CPU time where /proc/stat is missing."""
        if self.machine_busy is not None:
            return self.machine_busy
        return self.job_seconds / max(self.wall, 1e-9) / self.cores

    def contended(self, share: float) -> bool:
        """The cores were (nearly) all busy, and the input pipeline held at least ``share`` of them: a core it
        takes is one the step lacks."""
        cores = self.input_cores
        return cores is not None and self.busy >= BUSY and cores / self.cores >= share


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sample() -> CpuSample:
    """Cumulative CPU times now; call it from the training loop's thread (that thread is the step's, not input)."""
    linux = (PROC / "self" / "stat").exists()
    busy, total = _machine() if linux else (None, None)
    reaped = os.times()
    return CpuSample(time.perf_counter(), time.process_time(), _other_threads() if linux else None,
                     (reaped.children_user + reaped.children_system + _live_children()) if linux else None,
                     busy, total)


def use(a: CpuSample, b: CpuSample) -> CpuUse:
    """The CPU use between samples ``a`` and ``b``."""
    children = None if a.children is None or b.children is None else max(0.0, b.children - a.children)
    threads = None if a.threads is None or b.threads is None else max(0.0, b.threads - a.threads)
    busy = None
    if a.machine_total is not None and b.machine_total is not None and b.machine_total > a.machine_total:
        busy = (b.machine_busy - a.machine_busy) / (b.machine_total - a.machine_total)  # type: ignore[operator]
    inp = None if children is None or threads is None else children + threads
    return CpuUse(b.wall - a.wall, inp, (b.process - a.process) + (children or 0.0), busy, cores())


def _ticks(stat: str, first: int, count: int) -> float:
    """Fields ``first..first+count`` of a ``/proc/.../stat`` line (after the command name), in seconds."""
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(fields[first + k]) for k in range(count)) / TICK


def _other_threads() -> float:
    """CPU seconds of this process's Python threads other than the calling one (utime + stime)."""
    me = threading.get_native_id()
    total = 0.0
    for t in threading.enumerate():
        tid = getattr(t, "native_id", None)
        if tid is None or tid == me:
            continue
        try:
            total += _ticks((PROC / "self" / "task" / str(tid) / "stat").read_text(), 11, 2)
        except (OSError, IndexError, ValueError):  # the thread ended just now
            continue
    return total


def _live_children() -> float:
    """CPU seconds of the live descendants of this process, each with its own reaped children."""
    parent: dict[int, int] = {}
    spent: dict[int, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            parent[int(entry.name)] = int(fields[1])
            spent[int(entry.name)] = _ticks(stat, 11, 4)  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):  # the process ended while the table was read
            continue
    children: dict[int, list[int]] = {}
    for pid, pp in parent.items():
        children.setdefault(pp, []).append(pid)
    mine: set[int] = set()
    frontier = [os.getpid()]
    while frontier:
        kids = [c for c in children.get(frontier.pop(), []) if c not in mine]
        mine.update(kids)
        frontier += kids
    return sum(spent[c] for c in mine)


def _machine() -> tuple[float | None, float | None]:
    """(busy, total) CPU seconds of all cores since boot, from the first line of /proc/stat."""
    try:
        values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None, None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - idle) / TICK, total / TICK
