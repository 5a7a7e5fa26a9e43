"""What every benchmark shares: its options, a result row, the machine it ran on, and where its JSON goes."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class BenchOptions:
    batch_size: int = 256
    image_size: int | None = None  # default: the cache's image size
    device: str | None = None  # default: cuda when available, else cpu
    seconds: float = 3.0  # timed seconds per pipeline, over all rounds
    rounds: int = 5  # timed rounds per pipeline, interleaved with the others' (see timing.py)
    min_batches: int = 20  # batches per round at least (whole epochs)
    warmup: int = 1  # rounds per pipeline not counted (worker start-up, first page faults)
    limit: int | None = None  # items used (default: all, or fewer to keep the seed offline file <= 4 GiB)
    workers: int = 4  # DataLoader workers of every DataLoader pipeline (the original setting)
    only: list[str] | None = None  # pipeline keys to run (default: all)
    peers: bool = True
    workdir: Path | None = None  # where the seed offline file and peer formats go (default: a temp dir)
    view: str | None = None  # any-cache bench: None (the cache's items), "windows" or "elements"
    column: str | None = None  # the ragged column a view cuts
    length: int = 16  # windows: rows per window
    context: int = 0  # windows: rows of context before each window
    columns: list[str] | None = None  # columns read (default: all)


@dataclass
class Row:
    key: str
    name: str
    samples_per_s: float | None = None  # the median of the rounds
    samples: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    per_round: list[float] = field(default_factory=list)  # samples/s of each timed round

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.per_round), max(self.per_round)) if self.per_round else None


def spread_text(row: Row) -> str:
    """``"(12,000-14,000)"``: the slowest and fastest round."""
    s = row.spread
    return f"({s[0]:,.0f}-{s[1]:,.0f})" if s else ""


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have exited (DataLoader and bake workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def machine(device: str | torch.device | None = None) -> dict[str, Any]:
    """What a benchmark ran on, for its JSON: shared by `prebake bench` and benchmarks/."""
    from ..._version import __version__

    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "processor": _cpu_name(), "platform": platform.platform(),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
                            "prebake": __version__}
    if hasattr(os, "getloadavg"):  # 1, 5 and 15 min: how busy a shared machine was
        info["load_average"] = os.getloadavg()
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def ratios_to(results: dict[str, dict[str, Any]], base: str = "prebake", parts: tuple[str, ...] = ("data", "train"),
              key: str = "samples_per_s") -> dict[str, float]:
    """``{"prebake/original data": 39.8, ...}``: ``base``'s ``results[path][part][key]`` over every other
    path's, for the examples' benchmarks (each path a dict of parts, each part a dict of figures)."""
    if base not in results:
        return {}
    mine = results[base]
    return {f"{base}/{path} {part}": mine[part][key] / r[part][key]
            for path, r in results.items() if path != base for part in parts}


def device_tag(device: str | torch.device) -> str:
    """The suffix of a results file: ``cpu-2core`` or the GPU's name, e.g. ``nvidia-h100-80gb-hbm3``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(dev).lower()).strip("-")
    return f"cpu-{os.cpu_count()}core"


def write_results(record: dict[str, Any], out: Path, save: Path | None = None, root: Path | None = None) -> list[Path]:
    """Write ``record`` as JSON to ``out`` (a run directory), and to ``save`` too when given (a benchmark asked
    to save its results): a run never overwrites committed results unless asked. Paths under ``root`` are written
    relative to it. Returns the files written."""
    text = json.dumps(record, indent=1, default=str)
    if root is not None:
        text = text.replace(str(Path(root).resolve()) + os.sep, "")
    written = []
    for path in (out, save):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n")
            written.append(Path(path))
    return written


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memcpy_gbps(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Best-of-``repeats`` bandwidth of one large copy (bytes copied per second), the faster of
    numpy's single-threaded copy and torch's multi-threaded one."""
    src = np.ones(nbytes, np.uint8)
    dst = np.zeros_like(src)
    best = float("inf")
    for copy in (lambda: np.copyto(dst, src), lambda: torch.from_numpy(dst).copy_(torch.from_numpy(src))):
        copy()
        for _ in range(repeats):
            t = time.perf_counter()
            copy()
            best = min(best, time.perf_counter() - t)
    return nbytes / best / 1e9


def warm_page_cache(paths: list[Path], chunk: int = 16 << 20) -> None:
    """Read files once so every pipeline is timed from the page cache. The seed file and the peers'
    formats are written just before they are timed, so they start warm too; without this the first
    pipeline alone would pay for reading the cache from disk."""
    buf = bytearray(chunk)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
