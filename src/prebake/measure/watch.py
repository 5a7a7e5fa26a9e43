"""``prebake.watch``: is this training loop waiting for data?

Wrap any iterable of batches::

    for batch in prebake.watch(loader, every=100):
        train_step(batch)

For each step it times the two halves of the loop: *wait*, the time blocked in
``next()`` for the next batch, and *compute*, the time the loop body takes
before asking for the next one. ``wait / (wait + compute)`` is the input-bound
fraction: near 0 the accelerator is fed; near 1 it idles while the input
pipeline works.

A :class:`prebake.Loader` with a ``transform`` runs it inside ``next()``, on the
training device. That time is counted apart, as *transform* (``transform_seconds``,
``transform_fraction``), not as waiting: it is the device's work, as it would be in
the loop body. On a CUDA device it is the time that queues the kernels (their
run is compute, like the model's); on a CPU it is the ops themselves, which
there share the cores with the model. So the input-bound fraction means the same on
both: the share of the step the loop waits for the input pipeline.

A pipeline can also starve a CPU-bound step without making it wait: its worker processes or
threads take the cores the step's own threads would use, so each step is slower while the next
batch is always ready. ``watch`` samples CPU times at the edges of each window
(:mod:`prebake.measure.cpu`): when the machine's cores were all busy and the input pipeline
held at least ``INPUT_BOUND`` of them, the report says so beside the wait fraction and calls
the loop input-bound (``contended``; ``input_cores``: cores the input pipeline kept busy).

CUDA runs asynchronously, so host timings alone would credit queued GPU work to
whichever call happens to block. ``watch`` calls ``torch.cuda.synchronize()``
only at measurement points (every ``every`` steps and at the end) and charges
that wait to compute; inside a window it adds no syncs, so it does not change
the loop it measures. A window's figures are exact at its edges.

GPU utilisation is sampled through NVML (``pip install nvidia-ml-py``) at most
every 0.1 s when the batches live on a CUDA device; without NVML it is ``None``.
Reports go to the ``prebake.watch`` logger (to stderr when logging is not
configured), or to ``report=`` (for example ``print`` or a metrics logger), and
are returned as :class:`WatchReport` dataclasses.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import OptionError
from ..load.params import function, shown, whole
from . import cpu
from .cpu import CpuUse

logger = logging.getLogger("prebake.watch")
_GPU_SAMPLE_PERIOD = 0.1  # seconds; NVML itself averages over 1/6 s to 1 s
INPUT_BOUND = 0.2  # a loop waiting this fraction of its time or more is called input-bound
FED = 0.05  # below this fraction it is called compute-bound


@dataclass(frozen=True)
class WatchReport:
    """Figures for a window of steps (or the whole run when ``final``).

    ``steps`` and ``samples`` in the window; ``wait_seconds`` spent in ``next()`` of the
    loader, less ``transform_seconds``, the part of it a :class:`prebake.Loader` spent in its
    ``transform``; ``compute_seconds`` in the loop body; ``gpu_util`` in percent through
    NVML, or None without it; ``cpu``, where the window's CPU time went
    (:class:`~prebake.measure.cpu.CpuUse`: the input pipeline's CPU seconds against the whole
    job's, and how busy the machine's cores were), or None when not sampled.
    """

    steps: int
    samples: int
    wait_seconds: float
    compute_seconds: float
    gpu_util: float | None  # mean NVML utilisation in percent; None when not sampled
    final: bool = False
    transform_seconds: float = 0.0
    cpu: CpuUse | None = None  # where the window's CPU time went; None when not sampled

    @property
    def seconds(self) -> float:
        return self.wait_seconds + self.transform_seconds + self.compute_seconds

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def input_bound_fraction(self) -> float:
        """The share of step time spent blocked on the next batch."""
        return self.wait_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def transform_fraction(self) -> float:
        """The share of step time spent in the Loader's ``transform`` inside ``next()``."""
        return self.transform_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def contended(self) -> bool:
        """The input pipeline's CPU competed with the step: every core busy, ``INPUT_BOUND`` or more of them
        held by the input pipeline (its worker processes and threads)."""
        return self.cpu is not None and self.cpu.contended(INPUT_BOUND)

    @property
    def input_cores(self) -> float | None:
        """Cores the input pipeline kept busy on average; None when not sampled."""
        return None if self.cpu is None else self.cpu.input_cores

    @property
    def verdict(self) -> str:
        f = self.input_bound_fraction
        if f >= INPUT_BOUND or self.contended:
            return "input-bound"
        return "compute-bound" if f < FED else "partly input-bound"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds, "samples_per_s": self.samples_per_s,
                "input_bound_fraction": self.input_bound_fraction, "transform_fraction": self.transform_fraction,
                "input_cores": self.input_cores, "contended": self.contended, "verdict": self.verdict}

    def __str__(self) -> str:
        gpu = "GPU util not sampled" if self.gpu_util is None else f"GPU util {self.gpu_util:.0f}%"
        what = "total" if self.final else "window"
        ops = f", {100 * self.transform_fraction:.0f}% in the Loader's transform" if self.transform_seconds else ""
        return (f"prebake.watch {what}: {self.steps:,} steps, {self.samples_per_s:,.0f} samples/s, "
                f"{100 * self.input_bound_fraction:.0f}% of step time waiting for data{self._cpu_text()} "
                f"({self.verdict}){ops}, {gpu}")

    def _cpu_text(self) -> str:
        cores = self.input_cores
        if self.cpu is None or cores is None:
            return ""
        text = f", input pipeline on {cores:.1f} of {self.cpu.cores} cores ({100 * self.cpu.busy:.0f}% busy)"
        return text + ": its CPU competes with the step" if self.contended else text


def count_samples(batch: Any) -> int:
    """The batch size: the length of the first tensor or array found in the batch."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()), None)
    elif isinstance(batch, (tuple, list)) and batch and not isinstance(batch[0], (int, float)):
        batch = batch[0]
    shape = getattr(batch, "shape", None)
    return int(shape[0]) if shape else 1


def _cuda_device(batch: Any) -> torch.device | None:
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (tuple, list)) else [batch]
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_cuda:
            return v.device
    return None


class _Window:
    """Running sums for one window."""

    def __init__(self) -> None:
        self.steps = self.samples = 0
        self.wait = self.compute = self.transform = 0.0
        self.gpu: list[float] = []

    def report(self, final: bool, cpu: CpuUse | None) -> WatchReport:
        util = sum(self.gpu) / len(self.gpu) if self.gpu else None
        return WatchReport(self.steps, self.samples, self.wait, self.compute, util, final, self.transform, cpu)


class Watch:
    """The iterable returned by :func:`watch`; ``.report`` and ``.reports`` hold the results.

    ``iterable``, ``every``, ``report`` and ``count`` are :func:`watch`'s.
    """

    def __init__(self, iterable: Iterable[Any], every: int | None = None,
                 report: Callable[[WatchReport], Any] | None = None,
                 count: Callable[[Any], int] = count_samples):
        if not isinstance(iterable, Iterable):
            raise OptionError(f"watch(iterable={shown(iterable)}): a {type(iterable).__name__} is not iterable; wrap "
                              "the loader the loop iterates, e.g. prebake.watch(loader)")
        if every is not None:
            every = whole(every, "every", 1, fix=": every must be a positive number of steps or None (no window "
                          "reports, only the total); pass every=100 for example")
        if function(count, "count") is None:
            raise OptionError("count=None: count must be a function batch -> number of samples; leave it out "
                              "for the default (the first tensor's length)")
        self.iterable, self.every, self.count = iterable, every, count
        self._emit = function(report, "report") or _log
        self.reports: list[WatchReport] = []
        self.report: WatchReport | None = None
        self._device: torch.device | None = None
        self._last_gpu_sample = 0.0
        self._nvml_ok = True
        self._cpu_start = self._cpu_window = cpu.sample()  # replaced at each pass's start

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        total, window = _Window(), _Window()
        self._cpu_start = self._cpu_window = cpu.sample()  # in the loop's thread: its CPU is the step's
        it = iter(self.iterable)
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                transform = min(getattr(it, "last_transform_seconds", 0.0), t1 - t0)  # a prebake.Loader's
                yield batch
                t2 = time.perf_counter()
                self._step(batch, t1 - t0 - transform, transform, t2 - t1, total, window)
                if self.every and window.steps >= self.every:
                    self._close(window, total, final=False)
                    window = _Window()
        finally:
            self._close(window, total, final=True)
            close = getattr(it, "close", None)
            if close is not None:  # an early break also stops the wrapped loader's threads or generator
                close()

    def _step(self, batch: Any, wait: float, transform: float, compute: float, total: _Window,
              window: _Window) -> None:
        n = self.count(batch)
        if self._device is None:
            self._device = _cuda_device(batch)
        util = self._gpu_util()
        for w in (total, window):
            w.steps, w.samples, w.wait, w.compute = w.steps + 1, w.samples + n, w.wait + wait, w.compute + compute
            w.transform += transform
            if util is not None:
                w.gpu.append(util)

    def _close(self, window: _Window, total: _Window, final: bool) -> None:
        if self._device is not None:  # a measurement point: let queued GPU work finish, charge it to compute
            t = time.perf_counter()
            torch.cuda.synchronize(self._device)
            dt = time.perf_counter() - t
            window.compute, total.compute = window.compute + dt, total.compute + dt
        now = cpu.sample()
        window_cpu, self._cpu_window = cpu.use(self._cpu_window, now), now
        if final:
            self.report = total.report(True, cpu.use(self._cpu_start, now))
            self._emit(self.report)
        elif window.steps:
            r = window.report(False, window_cpu)
            self.reports.append(r)
            self._emit(r)

    def _gpu_util(self) -> float | None:
        if self._device is None or not self._nvml_ok:
            return None
        now = time.perf_counter()
        if now - self._last_gpu_sample < _GPU_SAMPLE_PERIOD:
            return None
        self._last_gpu_sample = now
        try:
            return float(torch.cuda.utilization(self._device))  # NVML, mapped through CUDA_VISIBLE_DEVICES
        except Exception as e:  # noqa: BLE001 - NVML missing or unsupported: report None, keep training
            self._nvml_ok = False
            logger.info("GPU utilisation not sampled (%s); install it with: pip install nvidia-ml-py", e)
            return None


def _log(r: WatchReport) -> None:
    if not logging.getLogger().handlers and not logger.handlers:  # logging not configured: still show it
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    logger.info("%s", r)


def watch(iterable: Iterable[Any], *, every: int | None = None,
          report: Callable[[WatchReport], Any] | None = None,
          count: Callable[[Any], int] = count_samples) -> Watch:
    """Wrap ``iterable`` and measure wait vs compute per step; see the module docstring.

    ``every``: also report every N steps. ``report``: called with each
    :class:`WatchReport` (default: the ``prebake.watch`` logger). ``count``: the
    number of samples in a batch (default: the first tensor's length). After the
    loop, ``.report`` is the whole run and ``.reports`` the windows.
    """
    return Watch(iterable, every, report, count)
