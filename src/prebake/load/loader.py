"""``prebake.Loader``: whole batches from a cache or a view, one gather per column per batch.

For each batch the indices are sorted into file order, each column is gathered in one call
from its memory map (the fastest way to read a memmap), and the drawn order is restored. A
view (``load/views.py``: windows, elements) plans the rows of a batch from its offsets, so a
batch of windows is also one gather per column. Gathers run on background threads,
``prefetch`` batches ahead; the batch order does not depend on the thread count. On a CUDA
device the gathers are pinned and copied on a side stream; the consumer's stream waits on an
event, so the loop never blocks the host on the copy. ``preload="device"`` keeps the columns
in device memory, and a batch is then a device-side ``index_select`` per column, with only
the row positions (a few integers per sample) sent from the host. Preloaded columns are made
once per :class:`Cache` object (:meth:`Cache.preloaded`), so Loaders over the same object,
one per federated client say, share one copy.

Which items a batch holds comes from :mod:`prebake.load.sampling`.
"""

from __future__ import annotations

import inspect
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..cache.reader import Cache, open_cache, torch_dtype_ok
from ..errors import OptionError, ResumeError, ViewError
from .convert import one_gather_thread, read_plan, resolve
from .gather import Buffers, Pieces, read_device, read_host, reorder_host, take_rows, values_of
from .sampling import Sampling
from .views import Items, View, subset_id

Batch = dict[str, Any]
_STATE_KEYS = ("num_items", "batch_size", "shuffle", "seed", "drop_last", "rank", "world_size")


def _distributed_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return (dist.get_rank() if rank is None else rank), (dist.get_world_size() if world_size is None else world_size)
    return (0 if rank is None else rank), (1 if world_size is None else world_size)


def check_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device, or an OptionError now if this machine does not have it."""
    d = torch.device(device or "cpu")
    if d.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise OptionError(f"device={str(device)!r}, but this machine has no CUDA device (torch {torch.__version__}, "
                              f"{build}); pass device='cpu', or choose what exists: "
                              "device='cuda' if torch.cuda.is_available() else 'cpu'")
        if d.index is not None and d.index >= count:
            raise OptionError(f"device={str(device)!r}, but this machine has {count} CUDA device(s), "
                              f"cuda:0..cuda:{count - 1}")
    elif d.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError(f"device={str(device)!r}, but MPS is not available here; pass device='cpu'")
    return d


def _as_view(data: Cache | View | str | os.PathLike[str], columns: Sequence[str] | None, pad: bool) -> View:
    if isinstance(data, View):
        if pad:
            raise ViewError(f"pad=True pads whole ragged items of a cache; the items of {data!r} already have one "
                            "length: leave pad out")
        return data
    return Items(data if isinstance(data, Cache) else open_cache(data), columns, pad)


class Loader:
    """Iterate a cache or a view in whole batches: ``for batch in Loader(cache, 256): batch["image"]``.

    Yields dicts of tensors on ``device`` (uint8 images stay uint8 until ``transform``).
    Columns torch cannot hold (str, bytes) arrive as numpy arrays on the host. A ragged
    column of a cache arrives as a list of per-item tensors, or with ``pad=True`` as one
    zero-padded ``(B, longest, ...)`` tensor plus ``<column>_lengths``. A full pass advances
    the epoch; :meth:`set_epoch` sets it. :meth:`state_dict` taken mid-epoch resumes, through
    :meth:`load_state_dict`, with exactly the remaining batches.

    Args:
        data: a :class:`Cache`, a cache path, or a view (:class:`~prebake.Windows`,
            :class:`~prebake.Elements`).
        batch_size: samples per batch (see :mod:`prebake.load.sampling` for uneven DDP shares).
        shuffle: draw a new order each epoch, from ``(seed, epoch)``.
        seed: the seed of the order.
        drop_last: make every batch exactly ``batch_size``, skipping the rest of the epoch.
        indices: a subset of ``data``'s items (a federated client, a split); a view, not a copy.
        columns: the columns to read; default: all of ``data``'s.
        device: where batches go: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``...; CUDA batches are
            copied through pinned memory on a side stream. A device this machine does not have
            is an error here, not at the first batch.
        transform: called on each batch (a dict) before it is yielded, e.g. an augment pipeline.
            A transform with a ``generator`` parameter is called as ``transform(batch,
            generator=g)`` with a ``torch.Generator`` on ``device`` seeded from ``(seed, rank,
            epoch, batch number)``: its draws do not depend on the batches before, so a resumed
            run augments its remaining batches exactly as the uninterrupted run did. It runs
            inside ``next()``; ``iter(loader)`` (an :class:`Epoch`) tells how long it took, and
            :func:`prebake.watch` counts that as the device's work, not as waiting for data.
        transform_in_threads: on a CPU device, run ``transform`` on the gather threads, so that it
            overlaps the training step instead of being waited for in ``next()``. Batches are then
            transformed several at a time: give the transform a ``generator`` parameter (above),
            or make it deterministic. On CUDA the transform is queued on the device from the
            consumer's thread, as without this flag.
        rank: this process's DDP rank; default from ``torch.distributed``, else 0.
        world_size: the number of DDP ranks; default from ``torch.distributed``, else 1.
        preload: ``None`` (read the memory maps), ``"ram"`` or ``"device"`` (copy the columns
            there once, shared by every Loader over the same Cache object).
        prefetch: batches gathered ahead of the one being consumed.
        threads: gather threads (one while volume-sized rows convert on torch's threads: see ``convert``).
        pad: for a cache's ragged columns, pad each batch to its longest item (see above).
        convert: elementwise conversions done in the gather threads, as each item is read:
            ``{column: torch.float32}`` or ``{column: op}`` with an op such as
            ``prebake.augment.IntensityWindow(-1000, 1000)`` (see :mod:`prebake.load.convert`).
            On a CPU this is the cheap place for an int16 -> float32 window: one pass instead of
            three, on the Loader's threads. Rows of at least 128 Ki elements (a volume) convert on
            torch's threads, so the Loader then gathers on one thread (see
            :func:`prebake.load.convert.one_gather_thread`). For a GPU keep the cache's dtype (half
            the bytes to copy) and convert on the device in ``transform``.
    """

    def __init__(self, data: Cache | View | str | os.PathLike[str], batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, indices: Sequence[int] | np.ndarray | None = None,
                 columns: Sequence[str] | None = None, device: str | torch.device | None = None,
                 transform: Callable[[Batch], Batch] | None = None, rank: int | None = None,
                 world_size: int | None = None, preload: str | None = None, prefetch: int = 2,
                 threads: int = 2, pad: bool = False, convert: Mapping[str, Any] | None = None,
                 transform_in_threads: bool = False):
        self.view = _as_view(data, columns, pad)
        self.cache = self.view.cache
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices is not None and len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(self.view)):
            raise IndexError(f"indices must lie in 0..{len(self.view) - 1} for {self.view!r}")
        rank, world_size = _distributed_defaults(rank, world_size)
        n = len(self.view) if self.indices is None else len(self.indices)
        self.sampling = Sampling(n, batch_size, shuffle, seed, drop_last, rank, world_size)
        self.columns = list(columns) if columns is not None else self.view.columns
        self.view.plan(np.zeros(0, np.int64), self.columns)  # checks the columns now, not at the first batch
        self.device = check_device(device)
        self.transform = transform
        self._takes_generator = _takes_generator(transform)
        self.transform_in_threads = bool(transform_in_threads)
        self.prefetch, self.threads = max(1, prefetch), max(1, threads)
        self.epoch, self._start = 0, 0
        self._on_device = preload == "device"
        self._data = self._preload(preload)
        if convert and self._on_device:
            raise OptionError("convert runs in the host gather, and preload='device' gathers on the device; "
                              "convert there in transform, or preload='ram'")
        self.convert = resolve(convert, self.columns, {k: values_of(v).dtype for k, v in self._data.items()})
        self._buffers = Buffers(keep=self.prefetch + self.threads + 2)  # batches in flight, and one being used

    def _preload(self, preload: str | None) -> dict[str, Any]:
        if preload is None:
            return {name: self.cache.column(name) for name in self.columns}
        if preload not in ("ram", "device"):
            raise ValueError(f"preload must be None, 'ram' or 'device', got {preload!r}")
        device = self.device if preload == "device" else None
        return {name: self.cache.preloaded(name, device) for name in self.columns}  # one copy per Cache

    # -- epochs and resume -------------------------------------------------------------------

    def __len__(self) -> int:
        return self.sampling.steps()

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._start = int(epoch), 0

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is, and what it walks: the sampling, the view, and an xxh3 of ``indices``."""
        return {"epoch": self.epoch, "batch": self._start, **{k: getattr(self.sampling, k) for k in _STATE_KEYS},
                "dataset": self.view.identity(), "indices": subset_id(self.indices)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state``; raises :class:`~prebake.errors.ResumeError` if it was saved by a loader over
        other items (another subset, view or sampling), which would skip or repeat items."""
        mismatch = [k for k in _STATE_KEYS if state.get(k) != getattr(self.sampling, k)]
        if mismatch:
            raise ResumeError(f"cannot resume: the state was saved with different {', '.join(mismatch)} "
                              f"({', '.join(f'{k}={state.get(k)!r}' for k in mismatch)}, this loader has "
                              f"{', '.join(f'{k}={getattr(self.sampling, k)!r}' for k in mismatch)})")
        own = self.state_dict()
        if "indices" not in state or state["indices"] != own["indices"]:
            raise ResumeError(f"cannot resume: the state was saved over another subset of items (indices "
                              f"{_subset_text(state.get('indices', '(not recorded)'))}, this loader's "
                              f"{_subset_text(own['indices'])}); build the loader with the indices= of the "
                              "run that saved the state (one state per federated client)")
        if state.get("dataset") != own["dataset"]:
            raise ResumeError(f"cannot resume: the state was saved over {state.get('dataset', '(not recorded)')}, "
                              f"this loader reads {own['dataset']}; build the loader over the same view")
        self.epoch, self._start = int(state["epoch"]), int(state["batch"])

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Epoch:
        return Epoch(self)

    def _batches(self, timing: list[float]) -> Iterator[Batch]:
        epoch = self.epoch
        batches = self.sampling.batches(epoch, self.indices)
        produced = self._produce(batches[self._start:], epoch)
        try:
            for k, batch in zip(range(self._start, len(batches)), produced):
                self._start = k + 1  # counted when handed over: a state_dict taken now resumes after it
                if self.transform is None or self._threaded():
                    yield batch
                    continue
                t = time.perf_counter()
                batch = self._apply(batch, epoch, k)
                timing[0] = time.perf_counter() - t
                yield batch
        finally:
            produced.close()  # stops the gather threads when the loop ends early
        self.epoch, self._start = self.epoch + 1, 0

    def _produce(self, batches: list[np.ndarray], epoch: int) -> Iterator[Batch]:
        if self._on_device:
            for idx in batches:  # preload="device": the gathers happen on the device, in the drawn order
                got = read_device(self.view.plan(idx, self.columns), self._data, self.device)
                yield {k: _device_pieces(v) for k, v in got.items()}
            return
        yield from _Prefetcher(self, batches, epoch, self._start)

    def _threaded(self) -> bool:
        return self.transform_in_threads and self.device.type == "cpu" and not self._on_device

    def _apply(self, batch: Batch, epoch: int, step: int) -> Batch:
        """``transform`` on batch number ``step`` of this epoch, with its own generator when it takes one."""
        assert self.transform is not None
        if not self._takes_generator:
            return self.transform(batch)
        return self.transform(batch, generator=batch_generator(self.sampling, epoch, step, self.device))


class Epoch(Iterator[Batch]):
    """One pass over a :class:`Loader`'s batches (what ``iter(loader)`` returns).

    ``last_transform_seconds`` is how long ``transform`` took inside the ``next()`` that
    returned the latest batch: 0 without a transform, or when it ran on the gather threads
    (``transform_in_threads``). :func:`prebake.watch` counts that time as the transform's,
    not as waiting for data: it is work on the training device (on a CUDA device, the time
    to queue its kernels), as it would be in the loop body.
    """

    def __init__(self, loader: Loader):
        self._timing = [0.0]  # shared with the generator, which holds no reference back: no cycle, so a loop
        self._batches = loader._batches(self._timing)  # that breaks early frees (and stops) it at once

    @property
    def last_transform_seconds(self) -> float:
        return self._timing[0]

    def __iter__(self) -> Epoch:
        return self

    def __next__(self) -> Batch:
        return next(self._batches)

    def close(self) -> None:
        """Stop the gather threads now (a loop that breaks early; garbage collection does it too)."""
        self._batches.close()


def _takes_generator(transform: Callable[..., Any] | None) -> bool:
    """Whether ``transform`` has a parameter named ``generator`` (a module's ``forward`` is looked at)."""
    if transform is None:
        return False
    fn = transform.forward if isinstance(transform, torch.nn.Module) else transform
    try:
        return "generator" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def batch_generator(sampling: Sampling, epoch: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of one batch's transform: seeded from (seed, rank, epoch, step) alone."""
    seed = np.random.SeedSequence([sampling.seed, sampling.rank, epoch, step, 0x7472616E73]).generate_state(1, np.uint64)
    return torch.Generator(device).manual_seed(int(seed[0]) >> 1)


def _subset_text(digest: str | None) -> str:
    return "all items" if digest is None else f"xxh3 {digest}"


def _device_pieces(value: Any) -> Any:
    if isinstance(value, Pieces):
        if isinstance(value.flat, torch.Tensor):
            return list(value.flat.split(value.lengths.tolist()))
        return reorder_host(value, np.arange(len(value.lengths)))
    return value


class _Prefetcher:
    """Gathers batches on a thread pool, ``prefetch`` ahead, and hands them over in order."""

    def __init__(self, loader: Loader, batches: list[np.ndarray], epoch: int = 0, first: int = 0):
        self.loader, self.batches, self.epoch, self.first = loader, batches, epoch, first
        self.transform = loader.transform is not None and loader._threaded()
        self.cuda = loader.device.type == "cuda"
        self.stream = torch.cuda.Stream(loader.device) if self.cuda else None
        self.buffers = loader._buffers

    def __iter__(self) -> Iterator[Batch]:
        loader = self.loader
        threads = 1 if loader.convert and one_gather_thread(loader.convert, loader._data) else loader.threads
        pool = ThreadPoolExecutor(threads, thread_name_prefix="prebake-loader")
        pending: deque[Future[Batch]] = deque()
        todo = iter(self.batches)
        try:
            for k, idx in enumerate(todo, self.first):
                pending.append(pool.submit(self._load, idx, k))
                if len(pending) > self.loader.prefetch:
                    yield self._ready(pending.popleft().result())
            while pending:
                yield self._ready(pending.popleft().result())
        finally:  # early stop or garbage collection: drop what is queued, let running gathers end
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _load(self, idx: np.ndarray, step: int = 0) -> Batch:
        batch = self._gather(idx)
        return self.loader._apply(batch, self.epoch, step) if self.transform else batch

    def _gather(self, idx: np.ndarray) -> Batch:
        view = self.loader.view
        key = view.sort_key(idx)
        convert = self.loader.convert
        if key is None:  # the view reads each sample as one long run of rows: in the drawn order
            plan = view.plan(idx, self.loader.columns)
            got = read_plan(plan, self.loader._data, self.buffers, convert, None)[0] if convert else \
                read_host(plan, self.loader._data, self.buffers)
            return {k: self._finish(v, None) for k, v in got.items()}
        order = np.argsort(key, kind="stable")
        inverse = np.argsort(order, kind="stable")
        plan = view.plan(idx[order], self.loader.columns)  # sorted gathers
        if not convert:
            return {k: self._finish(v, inverse) for k, v in read_host(plan, self.loader._data, self.buffers).items()}
        got, drawn = read_plan(plan, self.loader._data, self.buffers, convert, order)
        return {k: self._finish(v, None if k in drawn else inverse) for k, v in got.items()}

    def _finish(self, value: Any, inverse: np.ndarray | None) -> Any:
        """One output of the gather, in the drawn order (``inverse`` restores it after a sorted gather), on the
        device; str and bytes stay numpy on the host."""
        flat = value.flat if isinstance(value, Pieces) else value
        if not torch_dtype_ok(flat.dtype):
            return reorder_host(value, inverse)
        if isinstance(value, Pieces):
            return self._pieces(torch.from_numpy(flat), value.lengths.tolist(), inverse)
        if not self.cuda:  # np.take: torch's CPU index_select took 16 ms for 8 x 16 x 3 x 64 x 64 uint8, np.take 0.09 ms
            return torch.from_numpy(value if inverse is None else take_rows(value, inverse, self.buffers))
        return self._to_device(torch.from_numpy(value), inverse)

    def _pieces(self, host: torch.Tensor, lengths: list[int], inverse: np.ndarray | None) -> Any:
        """Whole ragged items: one copy of them all, cut into per-item views, in the drawn order."""
        order = range(len(lengths)) if inverse is None else inverse
        if not self.cuda:
            pieces = host.split(lengths)
            return [pieces[j] for j in order]
        pinned = host.pin_memory()
        with torch.cuda.stream(self.stream):
            pieces = pinned.to(self.loader.device, non_blocking=True).split(lengths)
            event = torch.cuda.Event()
            event.record(self.stream)
        return _OnStream([pieces[j] for j in order], event, pinned)

    def _to_device(self, host: torch.Tensor, inverse: np.ndarray | None) -> Any:
        """A CUDA copy through pinned memory on the side stream; the drawn order is restored on the device."""
        pinned = host.pin_memory()  # torch's caching host allocator reuses pinned blocks
        with torch.cuda.stream(self.stream):
            dev = pinned.to(self.loader.device, non_blocking=True)
            if inverse is not None:
                dev = dev.index_select(0, torch.from_numpy(inverse).to(self.loader.device, non_blocking=True))
            event = torch.cuda.Event()
            event.record(self.stream)
        return _OnStream(dev, event, pinned)

    @staticmethod
    def _ready(batch: Batch) -> Batch:
        """On CUDA, make the consumer's stream wait for the copy (no host sync)."""
        for name, value in batch.items():
            if isinstance(value, _OnStream):
                tensors = value.value if isinstance(value.value, list) else [value.value]
                for t in tensors[:1]:
                    torch.cuda.current_stream(t.device).wait_event(value.event)
                for t in tensors:
                    t.record_stream(torch.cuda.current_stream(t.device))
                batch[name] = value.value
        return batch


class _OnStream:
    """A device tensor (or a list of views of one) still being written by a side stream, with the event
    that marks its end."""

    def __init__(self, value: Any, event: Any, pinned: torch.Tensor):
        self.value, self.event, self.pinned = value, event, pinned  # keep the pinned source alive
