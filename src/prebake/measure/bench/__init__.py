"""``prebake bench``: samples/s of the prebake Loader against the seeds' pipelines and peer
libraries, in one run, on the same data, all producing the same normalised float32 batches.

Each pipeline is timed in its steady state, with its files in the page cache: ``warmup`` batches
are drawn first (worker start-up, first page faults), then batches are drawn for ``seconds``,
across epochs when one ends. On CUDA
the clock stops after a synchronize. The machine's memcpy bandwidth is measured in the same run,
as the physical limit of any host-side pipeline.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import platform
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...cache.format import committed_files
from ...cache.reader import Cache, open_cache
from . import pipelines as P
from .peers import PEERS, PeerUnavailable

log = logging.getLogger(__name__)
OFFLINE_FILE_CAP = 4 << 30  # default --limit keeps the seed's float32 file under 4 GiB


@dataclass
class BenchOptions:
    batch_size: int = 256
    image_size: int | None = None  # default: the cache's image size
    device: str | None = None  # default: cuda when available, else cpu
    seconds: float = 3.0  # timed seconds per pipeline
    warmup: int = 3  # batches drawn before the clock starts
    limit: int | None = None  # items used (default: all, or fewer to keep the seed offline file <= 4 GiB)
    workers: int = 4  # DataLoader workers of every DataLoader pipeline (the seed's setting)
    only: list[str] | None = None  # pipeline keys to run (default: all)
    peers: bool = True
    workdir: Path | None = None  # where the seed offline file and peer formats go (default: a temp dir)


@dataclass
class Row:
    key: str
    name: str
    samples_per_s: float | None = None
    samples: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchResult:
    cache: str
    items: int
    image_size: int
    cache_image_size: int
    batch_size: int
    device: str
    machine: dict[str, Any]
    memcpy_gbps: float
    rows: list[Row]
    raw_source: str

    @property
    def reference(self) -> Row | None:
        return next((r for r in self.rows if r.key == "prebake" and r.samples_per_s), None)

    def ratio(self, row: Row) -> float | None:
        ref = self.reference
        if ref is None or not row.samples_per_s:
            return None
        return ref.samples_per_s / row.samples_per_s  # type: ignore[operator]

    def output_gbps(self, row: Row) -> float | None:
        """Bytes of normalised float32 output produced per second."""
        return None if not row.samples_per_s else row.samples_per_s * 3 * self.image_size ** 2 * 4 / 1e9

    def as_dict(self) -> dict[str, Any]:
        rows = [{**r.__dict__, "prebake_loader_speedup": self.ratio(r), "output_gbps": self.output_gbps(r)}
                for r in self.rows]
        ref = self.reference
        frac = self.output_gbps(ref) / self.memcpy_gbps if ref and self.memcpy_gbps else None
        return {**{k: v for k, v in self.__dict__.items() if k != "rows"}, "rows": rows,
                "loader_output_fraction_of_memcpy": frac}


def machine(device: str | torch.device | None = None) -> dict[str, Any]:
    """What a benchmark ran on, for its JSON: shared by `prebake bench` and benchmarks/."""
    from ..._version import __version__

    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "processor": _cpu_name(), "platform": platform.platform(),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
                            "prebake": __version__}
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


def _endless(epoch: Callable[[], Any]) -> Iterator[P.Batch]:
    while True:
        yield from epoch()


def time_pipeline(pipe: P.Pipeline, data: P.BenchData, opts: BenchOptions) -> tuple[int, float]:
    """(samples, seconds) in the steady state; checks that the output is what every pipeline owes."""
    it = _endless(pipe.epoch)
    try:
        for _ in range(opts.warmup):
            x, y = next(it)
            _check(pipe.name, x, y, data)
        sync = torch.cuda.synchronize if data.device.type == "cuda" else (lambda: None)
        sync()
        samples, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < opts.seconds:
            x, y = next(it)
            samples += len(y)
        sync()
        return samples, time.perf_counter() - t0
    finally:
        it.close()


def _check(name: str, x: torch.Tensor, y: torch.Tensor, data: P.BenchData) -> None:
    want = (3, data.size, data.size)
    if x.dtype != torch.float32 or tuple(x.shape[1:]) != want or x.device.type != data.device.type:
        raise RuntimeError(f"{name} gave {x.dtype} {tuple(x.shape)} on {x.device}, expected float32 "
                           f"N x {want} on {data.device}: the pipeline is wrong, not the data")
    if len(y) != len(x) or y.device.type != data.device.type:
        raise RuntimeError(f"{name} gave {len(y)} labels on {y.device} for {len(x)} images")


def _raw_images(cache: Cache, n: int) -> tuple[np.ndarray, str]:
    """The images the seed's online pipeline starts from: the cache's CIFAR source when it is still
    there (32 px, as torchvision holds it), else the cached images themselves."""
    src = (cache.manifest.get("fingerprint") or {}).get("inputs", {}).get("source") or {}
    root, split = src.get("root"), (src.get("params") or {}).get("split")
    if src.get("kind") in ("cifar", "cifar-bin") and root and Path(root).is_dir():
        from ...bake.build import resolve_sources, select_split

        try:
            sources = select_split(resolve_sources(root, kind=src["kind"]), split)
            images = next(iter(sources.values())).images  # type: ignore[attr-defined]
            if len(images) >= n:
                return np.ascontiguousarray(images[:n].transpose(0, 2, 3, 1)), f"CIFAR source {root} ({split})"
        except Exception as e:  # noqa: BLE001 - the source moved or changed: fall back, and say so
            log.warning("could not read the cache's source %s (%s); the online pipeline starts from the "
                        "cached images", root, e)
    images = np.asarray(cache.column("image")[:n])
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)), f"the cached images ({cache.path})"


def _check_cache(cache: Cache) -> int:
    spec = cache.specs.get("image")
    if spec is None or "label" not in cache.specs or np.dtype(spec.dtype) != np.uint8 or len(spec.shape) != 3 \
            or spec.shape[0] != 3:
        got = ", ".join(f"{n}: {s.dtype} {list(s.shape)}" for n, s in cache.specs.items())
        raise ValueError(f"prebake bench needs a cache with an 'image' column of uint8 3 x H x W images and a "
                         f"'label' column, like a CIFAR-10 build; {cache.path} has {got}. Build one with "
                         "'prebake build cifar-10-batches-py cache/cifar10'")
    return int(spec.shape[-1])


def _default_limit(n: int, size: int) -> int:
    return max(1, min(n, OFFLINE_FILE_CAP // (3 * size * size * 4)))


def _plan(data: P.BenchData, opts: BenchOptions) -> list[tuple[str, Callable[[], P.Pipeline]]]:
    plan: list[tuple[str, Callable[[], P.Pipeline]]] = [
        ("prebake", lambda: P.prebake_loader(data, None)),
        ("prebake-ram", lambda: P.prebake_loader(data, "ram")),
    ]
    if data.device.type == "cuda":
        plan.append(("prebake-device", lambda: P.prebake_loader(data, "device")))
    plan += [("dataloader", lambda: P.dataloader_over_cache(data)),
             ("seed-offline", lambda: P.seed_offline(data)),
             ("seed-online", lambda: P.seed_online(data))]
    if opts.peers:
        plan += [(key, functools.partial(make, data)) for key, make in PEERS.items()]
    return [(k, f) for k, f in plan if opts.only is None or k in opts.only]


def run_bench(path: str | os.PathLike[str], opts: BenchOptions,
              progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run every pipeline on the cache at ``path``; see the module docstring."""
    cache = open_cache(path)
    cache_size = _check_cache(cache)
    warm_page_cache([cache.path / f for f in committed_files(cache.manifest)])
    size = opts.image_size or cache_size
    device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n = min(opts.limit or _default_limit(len(cache), size), len(cache))
    raw, raw_source = _raw_images(cache, n)
    tmp = opts.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="prebake-bench-")) if tmp else Path(opts.workdir)  # type: ignore[arg-type]
    workdir.mkdir(parents=True, exist_ok=True)
    data = P.BenchData(cache, raw, np.asarray(cache.column("label")[:n], dtype=np.int64), size,
                       opts.batch_size, device, opts.workers, workdir)
    rows = []
    try:
        with warnings.catch_warnings():
            # the seed's 4 workers exceed the cores of a small machine; torch warns per DataLoader
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            for key, make in _plan(data, opts):
                rows.append(_run_one(key, make, data, opts, progress))
    finally:
        if tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    return BenchResult(str(cache.path), n, size, cache_size, opts.batch_size, str(device), machine(device),
                       memcpy_gbps(), rows, raw_source)


def _run_one(key: str, make: Callable[[], P.Pipeline], data: P.BenchData, opts: BenchOptions,
             progress: Callable[[str], None] | None) -> Row:
    try:
        pipe = make()
    except PeerUnavailable as e:
        if progress:
            progress(f"skipped {key}: {e}")
        return Row(key, key, skipped=str(e))
    if progress:
        progress(f"timing {pipe.name} for {opts.seconds:g} s")
    samples, seconds = time_pipeline(pipe, data, opts)
    row = Row(key, pipe.name, samples / seconds, samples, seconds, pipe.setup_seconds, notes=pipe.notes)
    del pipe
    gc.collect()  # persistent DataLoader workers exit here, before the next pipeline is timed
    return row
