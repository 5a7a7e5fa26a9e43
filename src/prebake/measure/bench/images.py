"""``prebake bench`` on an image cache: samples/s of the prebake Loader against the federated ViT
workload's original pipelines and peer libraries, in one run, on the same data, all producing the same
normalised float32 batches.

Every pipeline is made first, then timed over whole epochs in interleaved rounds with its files in
the page cache (see :mod:`prebake.measure.bench.timing`); on CUDA the clock stops after a
synchronize. The machine's memcpy bandwidth is measured in the same run, as the physical limit of
any host-side pipeline.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ...cache.format import committed_files
from ...cache.reader import Cache, open_cache
from ...errors import OptionError
from . import pipelines as P
from .common import BenchOptions, Row, machine, memcpy_gbps, warm_page_cache
from .peers import PEERS, PeerUnavailable
from .timing import Timed, time_rounds

log = logging.getLogger(__name__)
OFFLINE_FILE_CAP = 4 << 30  # default --limit keeps the offline pipeline's float32 file under 4 GiB
ITEMS_CAP = 50_000  # default --limit: an epoch of the slowest pipeline stays a few seconds


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
    rounds: int = 0

    @property
    def reference(self) -> Row | None:
        return next((r for r in self.rows if r.key == "prebake" and r.samples_per_s), None)

    def ratio(self, row: Row) -> float | None:
        ref = self.reference
        if ref is None or not row.samples_per_s:
            return None
        return ref.samples_per_s / row.samples_per_s  # type: ignore[operator]

    def ratio_spread(self, row: Row) -> tuple[float, float] | None:
        """(lowest, highest) of the Loader's samples/s over ``row``'s, round by round."""
        ref = self.reference
        pairs = [a / b for a, b in zip(ref.per_round, row.per_round) if b > 0] if ref else []
        return (min(pairs), max(pairs)) if pairs else None

    def output_gbps(self, row: Row) -> float | None:
        """Bytes of normalised float32 output produced per second."""
        return None if not row.samples_per_s else row.samples_per_s * 3 * self.image_size ** 2 * 4 / 1e9

    def as_dict(self) -> dict[str, Any]:
        rows = [{**r.__dict__, "prebake_loader_speedup": self.ratio(r), "speedup_min_max": self.ratio_spread(r),
                 "output_gbps": self.output_gbps(r)} for r in self.rows]
        ref = self.reference
        ref_gbps = self.output_gbps(ref) if ref else None
        frac = ref_gbps / self.memcpy_gbps if ref_gbps and self.memcpy_gbps else None
        return {**{k: v for k, v in self.__dict__.items() if k != "rows"}, "rows": rows,
                "loader_output_fraction_of_memcpy": frac}


def image_size(cache: Cache) -> int | None:
    """The image size of a cache this bench fits (uint8 3 x H x W ``image`` and a ``label``), else None."""
    spec = cache.specs.get("image")
    if spec is None or "label" not in cache.specs or spec.ragged or np.dtype(spec.dtype) != np.uint8 \
            or len(spec.shape) != 3 or spec.shape[0] != 3 or spec.shape[-1] is None:
        return None
    return int(spec.shape[-1])


def _check(name: str, x: torch.Tensor, y: torch.Tensor, data: P.BenchData) -> None:
    want = (3, data.size, data.size)
    if x.dtype != torch.float32 or tuple(x.shape[1:]) != want or x.device.type != data.device.type:
        raise RuntimeError(f"{name} gave {x.dtype} {tuple(x.shape)} on {x.device}, expected float32 "
                           f"N x {want} on {data.device}: the pipeline is wrong, not the data")
    if len(y) != len(x) or y.device.type != data.device.type:
        raise RuntimeError(f"{name} gave {len(y)} labels on {y.device} for {len(x)} images")


def _raw_images(cache: Cache, n: int) -> tuple[np.ndarray, str]:
    """The images the original online pipeline starts from: the cache's CIFAR source when it is still
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
    images = np.asarray(cast(np.ndarray, cache.column("image"))[:n])  # fixed: image_size() checked it
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)), f"the cached images ({cache.path})"


def _default_limit(n: int, size: int) -> int:
    return max(1, min(n, ITEMS_CAP, OFFLINE_FILE_CAP // (3 * size * size * 4)))


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
    """Make every pipeline over the image cache at ``path``, then time them; see the module docstring."""
    cache = open_cache(path)
    cache_size = image_size(cache)
    if cache_size is None:
        raise OptionError(f"the image bench needs a cache with an 'image' column of uint8 3 x H x W images and a "
                         f"'label' column; {cache.path} has {', '.join(cache.specs)}: run 'prebake bench "
                         f"{cache.path}' without --image-size (any cache), or build CIFAR-10 with 'prebake build'")
    warm_page_cache([cache.path / f for f in committed_files(cache.manifest)])
    size = opts.image_size or cache_size
    device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n = min(opts.limit or _default_limit(len(cache), size), len(cache))
    raw, raw_source = _raw_images(cache, n)
    tmp = opts.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="prebake-bench-")) if tmp else Path(opts.workdir)  # type: ignore[arg-type]
    workdir.mkdir(parents=True, exist_ok=True)
    data = P.BenchData(cache, raw, np.asarray(cast(np.ndarray, cache.column("label"))[:n], dtype=np.int64), size,
                       opts.batch_size, device, opts.workers, workdir)
    try:
        with warnings.catch_warnings():
            # the original 4 workers exceed the cores of a small machine; torch warns per DataLoader
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            rows = _time_all(_plan(data, opts), data, opts, progress)
    finally:
        gc.collect()  # persistent DataLoader workers exit before their files go
        if tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    return BenchResult(str(cache.path), n, size, cache_size, opts.batch_size, str(device), machine(device),
                       memcpy_gbps(), rows, raw_source, opts.rounds)


def _time_all(plan: list[tuple[str, Callable[[], P.Pipeline]]], data: P.BenchData, opts: BenchOptions,
              progress: Callable[[str], None] | None) -> list[Row]:
    rows, timed = [], []
    for key, make in plan:
        try:
            pipe = make()
        except PeerUnavailable as e:
            if progress:
                progress(f"skipped {key}: {e}")
            rows.append(Row(key, key, skipped=str(e)))
            continue
        rows.append(Row(key, pipe.name, setup_seconds=pipe.setup_seconds, notes=pipe.notes))
        timed.append(Timed(pipe.name, pipe.epoch, lambda b: len(b[1]),
                           functools.partial(_check_batch, pipe.name, data=data)))
    sync = torch.cuda.synchronize if data.device.type == "cuda" else (lambda: None)
    time_rounds(timed, opts.seconds, opts.rounds, opts.min_batches, opts.warmup, sync, progress)
    by_name = {t.name: t for t in timed}
    for row in rows:
        t = by_name.get(row.name)
        if t is not None:
            row.samples_per_s, row.samples, row.seconds, row.per_round = t.samples_per_s, t.samples, t.seconds, \
                t.per_round
    return rows


def _check_batch(name: str, batch: P.Batch, data: P.BenchData) -> None:
    _check(name, batch[0], batch[1], data)
