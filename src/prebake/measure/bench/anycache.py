"""``prebake bench`` on any cache or view: the Loader against DataLoaders over the same items.

The items are a cache's own (any columns: audio, volumes, ragged columns, strings), or the windows
or elements of a ragged column (:class:`~prebake.Windows`, :class:`~prebake.Elements`). Pipelines,
each handing over the same batch dicts on the device:

- ``prebake.Loader`` from the memory maps, and with ``preload="ram"`` (and ``"device"`` on CUDA);
- a DataLoader over the same view handed whole batches (a ``BatchSampler``: ``view[indices]`` is one
  gather per column), with ``workers`` worker processes;
- a DataLoader over the same view, item by item, stacking fixed columns and keeping ragged ones as
  lists (what a per-item ``Dataset`` gives), with ``workers`` worker processes.

Before timing, every pipeline's first batches in one shared order are checked to hold the same
values. The summary gives each column's dtype, shape per sample (or the range of a ragged
column's rows) and bytes per sample, and the bytes per second the Loader delivered of it.
"""

from __future__ import annotations

import functools
import gc
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils.data

from ...cache.reader import Cache, open_cache
from ...errors import OptionError
from ...load.loader import Loader, check_device
from ...load.views import Elements, Items, View, Windows
from .common import BenchOptions, Row, machine, memcpy_gbps, warm_page_cache
from .timing import Timed, time_rounds

ITEMS_CAP = 20_000  # default limit: the per-item DataLoader's epoch stays a few seconds
EPOCH_BYTES_CAP = 2 << 30  # and an epoch reads at most 2 GiB
CHECKED_BATCHES = 3


@dataclass
class AnyResult:
    cache: str
    view: str
    items: int
    batch_size: int
    device: str
    machine: dict[str, Any]
    memcpy_gbps: float
    rows: list[Row]
    columns: list[dict[str, Any]]
    rounds: int

    @property
    def reference(self) -> Row | None:
        return next((r for r in self.rows if r.key == "prebake" and r.samples_per_s), None)

    def ratio(self, row: Row) -> float | None:
        ref = self.reference
        return ref.samples_per_s / row.samples_per_s if ref and ref.samples_per_s and row.samples_per_s else None

    def ratio_spread(self, row: Row) -> tuple[float, float] | None:
        ref = self.reference
        pairs = [a / b for a, b in zip(ref.per_round, row.per_round) if b > 0] if ref else []
        return (min(pairs), max(pairs)) if pairs else None

    def as_dict(self) -> dict[str, Any]:
        rows = [{**r.__dict__, "prebake_loader_speedup": self.ratio(r), "speedup_min_max": self.ratio_spread(r)}
                for r in self.rows]
        return {**{k: v for k, v in self.__dict__.items() if k != "rows"}, "rows": rows}


def make_view(cache: Cache, opts: BenchOptions) -> View:
    """The items to time: the cache's own, or a view of one of its ragged columns."""
    if opts.view is None:
        return Items(cache, opts.columns)
    if opts.view not in ("windows", "elements"):
        raise OptionError(f"view={opts.view!r}: the bench's views are 'windows' and 'elements' (or none: the "
                          "cache's items); pass --windows COLUMN LENGTH or --elements COLUMN")
    rows = [n for n, s in cache.specs.items() if s.ragged and not s.shaped]
    whole = f"run prebake bench {cache.path} without --windows or --elements to time its whole items"
    choice = (f"pick one of {rows}, or {whole}" if rows else "the cache has no ragged column of rows (its columns "
              f"{', '.join(cache.columns)} have one shape per item, or vary beyond their first axis): {whole}")
    if opts.column is None:
        raise OptionError(f"view={opts.view!r} needs the ragged column of rows it cuts, given by --windows COLUMN "
                          f"LENGTH or --elements COLUMN (column= in BenchOptions); {choice}")
    if opts.column not in rows:
        flag = f"--windows {opts.column} {opts.length}" if opts.view == "windows" else f"--elements {opts.column}"
        raise OptionError(f"{flag}: column {opts.column!r} of {cache.path} is not a ragged column of rows, which a "
                          f"view cuts; {choice}")
    if opts.view == "windows":
        return Windows(cache, opts.column, opts.length, context=opts.context, columns=opts.columns)
    return Elements(cache, opts.column, columns=opts.columns)


def describe_view(view: View) -> str:
    return "the cache's items" if isinstance(view, Items) else repr(view)


def run_any(path: str | os.PathLike[str], opts: BenchOptions,
            progress: Callable[[str], None] | None = None) -> AnyResult:
    """Time the Loader and the DataLoaders over the items of the cache at ``path`` (or its view)."""
    cache = open_cache(path)
    view = make_view(cache, opts)
    device = check_device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    warm_page_cache([cache.path / f for f in _files(cache)])
    n = min(opts.limit or default_limit(view), len(view))
    if n < 1:
        raise OptionError(f"{describe_view(view)} of {cache.path} holds no item to time; choose another view or cache")
    items = np.arange(n, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This DataLoader will create")  # 4 workers on a small machine
        pipes = pipelines(view, items, opts, device)
        checked = check_same(pipes, view, items, opts, device)
        if progress:
            progress(f"{describe_view(view)}: {n:,} items, the same values from all {len(pipes)} pipelines; timing")
        timed = [Timed(name, make(None), count) for _, name, make in pipes]
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        time_rounds(timed, opts.seconds, opts.rounds, opts.min_batches, opts.warmup, sync, progress)
    rows = [Row(key, t.name, t.samples_per_s, t.samples, t.seconds, per_round=t.per_round)
            for (key, _, _), t in zip(pipes, timed)]
    del timed, pipes
    gc.collect()  # persistent DataLoader workers exit here
    loader_rate = rows[0].samples_per_s or 0.0
    columns = [{**c, "loader_gb_per_s": c["bytes_per_sample"] * loader_rate / 1e9} for c in checked]
    return AnyResult(str(cache.path), describe_view(view), n, opts.batch_size, str(device), machine(device),
                     memcpy_gbps(), rows, columns, opts.rounds)


def _files(cache: Cache) -> list[str]:
    from ...cache.format import committed_files

    return list(committed_files(cache.manifest))


def default_limit(view: View) -> int:
    """All items, up to :data:`ITEMS_CAP` and an epoch of :data:`EPOCH_BYTES_CAP`."""
    if len(view) == 0:
        return 0
    sample = sum(_nbytes(v) for v in view[np.array([0])].values())
    return max(1, min(len(view), ITEMS_CAP, EPOCH_BYTES_CAP // max(sample, 1)))


def _nbytes(value: Any) -> int:
    if isinstance(value, list):
        return sum(_nbytes(v) for v in value)
    return int(getattr(value, "nbytes", 0))


def count(batch: dict[str, Any]) -> int:
    return len(next(iter(batch.values())))


Make = Callable[[np.ndarray | None], Callable[[], Iterator[dict[str, Any]]]]


def pipelines(view: View, items: np.ndarray, opts: BenchOptions, device: torch.device) -> list[tuple[str, str, Make]]:
    """``(key, name, make)``: ``make(order)`` gives the epochs of a pipeline over ``items`` (shuffled each epoch), or,
    given ``order``, its first epoch in that order."""
    def loader(preload: str | None) -> Make:
        def make(order: np.ndarray | None) -> Callable[[], Iterator[dict[str, Any]]]:
            ld = Loader(view, opts.batch_size, indices=items if order is None else order, shuffle=order is None,
                        device=device, preload=preload)
            return lambda: iter(ld)
        return make

    w = opts.workers
    out: list[tuple[str, str, Make]] = [("prebake", "prebake.Loader, memmap", loader(None)),
                                        ("prebake-ram", "prebake.Loader, preload='ram'", loader("ram"))]
    if device.type == "cuda":
        out.append(("prebake-device", "prebake.Loader, preload='device'", loader("device")))
    out += [("dataloader-batches", f"DataLoader x{w}, whole batches (view[indices], a BatchSampler)",
             lambda order: _dataloader(view, items, order, opts, device, whole=True)),
            ("dataloader-items", f"DataLoader x{w}, item by item (view[i], stacked)",
             lambda order: _dataloader(view, items, order, opts, device, whole=False))]
    return [p for p in out if opts.only is None or p[0] in opts.only]


def _dataloader(view: View, items: np.ndarray, order: np.ndarray | None, opts: BenchOptions, device: torch.device,
                whole: bool) -> Callable[[], Iterator[dict[str, Any]]]:
    sampler: Any = torch.utils.data.SubsetRandomSampler(items.tolist()) if order is None else order.tolist()
    w = opts.workers if order is None else 0  # the check of the values needs no worker processes
    common: dict[str, Any] = {"num_workers": w, "persistent_workers": w > 0, "pin_memory": device.type == "cuda",
                              "prefetch_factor": 2 if w > 0 else None}
    if whole:
        batches = torch.utils.data.BatchSampler(sampler, opts.batch_size, drop_last=False)
        dl = torch.utils.data.DataLoader(view, batch_size=None, sampler=batches, **common)
    else:
        ragged = {k for k, v in view[np.array([0])].items() if isinstance(v, list)}
        dl = torch.utils.data.DataLoader(_PerItem(view), batch_size=opts.batch_size, sampler=sampler,
                                         collate_fn=functools.partial(stack, ragged=ragged), **common)

    def epoch() -> Iterator[dict[str, Any]]:
        for batch in dl:
            yield {k: to_device(v, device) for k, v in batch.items()}
    return epoch


class _PerItem(torch.utils.data.Dataset):
    """``view[i]`` one item at a time: what a per-item Dataset gives a DataLoader (no ``__getitems__``)."""

    def __init__(self, view: View):
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.view[i]


def stack(items: list[dict[str, Any]], ragged: set[str]) -> dict[str, Any]:
    """Collate items: fixed values stacked into one tensor (str and bytes stay numpy); ``ragged`` ones a list."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [np.asarray(item[key]) for item in items]
        if key in ragged:
            out[key] = [torch.from_numpy(v) for v in values]
        elif values[0].dtype.kind in "SUO":
            out[key] = np.stack(values)
        else:
            out[key] = torch.from_numpy(np.stack(values))
    return out


def to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    return value


def check_same(pipes: list[tuple[str, str, Make]], view: View, items: np.ndarray, opts: BenchOptions,
               device: torch.device) -> list[dict[str, Any]]:
    """Every pipeline's first batches in one shared order hold the view's values for those items; returns the
    per-column summary."""
    order = np.random.default_rng(1).permutation(items)[: CHECKED_BATCHES * opts.batch_size]
    for _, name, make in pipes:
        got = make(order)()
        for k, batch in zip(range(CHECKED_BATCHES), got):
            want = view[order[k * opts.batch_size:(k + 1) * opts.batch_size]]
            _compare(name, k, batch, want)
        del got
    first = view[order[: opts.batch_size]]
    return [_column(key, value, len(next(iter(first.values())))) for key, value in first.items()]


def _compare(name: str, k: int, batch: dict[str, Any], want: dict[str, Any]) -> None:
    if set(batch) != set(want):
        raise RuntimeError(f"{name}: batch {k} has the keys {sorted(batch)}, the view's items {sorted(want)}")
    for key, value in want.items():
        got = batch[key]
        pairs = list(zip(got, value)) if isinstance(value, list) else [(got, value)]
        if (isinstance(value, list) and len(got) != len(value)) or not all(_equal(a, b) for a, b in pairs):
            raise RuntimeError(f"{name}: batch {k} column {key!r} differs from the view's items: the pipeline "
                               "is wrong, not the data")


def _equal(a: Any, b: Any) -> bool:
    a = a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


def _column(key: str, value: Any, n: int) -> dict[str, Any]:
    """One line of the summary: dtype, shape per sample (or a ragged column's rows), bytes per sample."""
    if isinstance(value, list):
        rows = [len(v) for v in value]
        first = np.asarray(value[0])
        return {"column": key, "dtype": str(first.dtype), "shape": f"ragged: {min(rows)}-{max(rows)} x "
                f"{tuple(first.shape[1:])}", "bytes_per_sample": _nbytes(value) / max(n, 1)}
    arr = np.asarray(value)
    return {"column": key, "dtype": str(arr.dtype), "shape": str(tuple(arr.shape[1:])),
            "bytes_per_sample": arr.nbytes / max(n, 1)}
