"""``prebake.Loader``: whole batches from a cache, one gather per column per batch.

For each batch the indices are sorted, each column is gathered in one call from
its memory map (in file order, the fastest way to read a memmap), and the
drawn order is restored. Gathers run on background threads, ``prefetch``
batches ahead; the batch order does not depend on the thread count. On a CUDA
device the gathers land in reused pinned buffers and are copied on a side
stream; the consumer's stream waits on an event, so the loop never blocks the
host on the copy. ``preload="device"`` keeps the columns in device memory, and
a batch is then a device-side ``index_select`` with no host work. Preloaded columns
are made once per :class:`Cache` object (:meth:`Cache.preloaded`), so Loaders over
the same object, one per federated client say, share one copy.

Which items a batch holds comes from :mod:`prebake.load.sampling`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..cache.reader import Cache, Ragged, open_cache
from ..errors import OptionError
from .sampling import Sampling

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


class Loader:
    """Iterate a cache in whole batches: ``for batch in Loader(cache, 256): batch["image"]``.

    Yields dicts of tensors on ``device`` (uint8 images stay uint8 until ``transform``).
    A full pass advances the epoch; :meth:`set_epoch` sets it. :meth:`state_dict`
    taken mid-epoch resumes, through :meth:`load_state_dict`, with exactly the
    remaining batches.

    Parameters:
        cache: a :class:`~prebake.Cache`, or the path of one.
        batch_size: items per batch (per rank under DDP).
        shuffle: a new permutation each epoch, drawn from ``(seed, epoch)``; False keeps the order.
        seed: the seed of those permutations; equal seeds give equal batches on any machine.
        drop_last: drop the last, smaller batch of each epoch.
        indices: read only these items (a federated client, a split); a view, not a copy.
        columns: the columns to load (default: all).
        device: where batches go: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``...; a device
            this machine does not have is an error here, not at the first batch.
        transform: a batched function of the batch dict on the device, such as
            :func:`prebake.augment.batch_transform`.
        rank: with world_size, this process's share under DDP (default: from ``torch.distributed``
            when it is initialised): every item once per epoch across ranks, equal steps.
        world_size: the number of ranks (default: from ``torch.distributed``, else 1).
        preload: None reads the memory maps; ``"ram"`` copies the columns into memory once;
            ``"device"`` keeps them on ``device``, so a batch is one device gather.
        prefetch: how many batches are gathered ahead of the one in use.
        threads: background threads that gather batches (the order never depends on it).
    """

    def __init__(self, cache: Cache | str | os.PathLike[str], batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, indices: Sequence[int] | np.ndarray | None = None,
                 columns: Sequence[str] | None = None, device: str | torch.device | None = None,
                 transform: Callable[[Batch], Batch] | None = None, rank: int | None = None,
                 world_size: int | None = None, preload: str | None = None, prefetch: int = 2,
                 threads: int = 2):
        self.cache = cache if isinstance(cache, Cache) else open_cache(cache)
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices is not None and len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(self.cache)):
            raise IndexError(f"indices must lie in 0..{len(self.cache) - 1} for {self.cache.path}")
        rank, world_size = _distributed_defaults(rank, world_size)
        n = len(self.cache) if self.indices is None else len(self.indices)
        self.sampling = Sampling(n, batch_size, shuffle, seed, drop_last, rank, world_size)
        self.columns = list(columns) if columns is not None else self.cache.columns
        self.device = check_device(device)
        self.transform = transform
        self.prefetch, self.threads = max(1, prefetch), max(1, threads)
        self.epoch, self._start = 0, 0
        self._data = self._preload(preload)

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
        return {"epoch": self.epoch, "batch": self._start,
                **{k: getattr(self.sampling, k) for k in _STATE_KEYS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mismatch = [k for k in _STATE_KEYS if state.get(k) != getattr(self.sampling, k)]
        if mismatch:
            raise ValueError(f"cannot resume: the state was saved with different {', '.join(mismatch)} "
                             f"({', '.join(f'{k}={state.get(k)!r}' for k in mismatch)})")
        self.epoch, self._start = int(state["epoch"]), int(state["batch"])

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        batches = self.sampling.batches(self.epoch, self.indices)
        produced = self._produce(batches[self._start:])
        try:
            for k, batch in zip(range(self._start, len(batches)), produced):
                self._start = k + 1  # counted when handed over: a state_dict taken now resumes after it
                yield self.transform(batch) if self.transform is not None else batch
        finally:
            produced.close()  # stops the gather threads when the loop ends early
        self.epoch, self._start = self.epoch + 1, 0

    def _produce(self, batches: list[np.ndarray]) -> Iterator[Batch]:
        if isinstance(next(iter(self._data.values()), None), torch.Tensor):
            for idx in batches:  # preload="device": everything happens on the device
                index = torch.from_numpy(idx).to(self.device, non_blocking=True)
                yield {name: col.index_select(0, index) for name, col in self._data.items()}
            return
        yield from _Prefetcher(self, batches)


class _Prefetcher:
    """Gathers batches on a thread pool, ``prefetch`` ahead, and hands them over in order."""

    def __init__(self, loader: Loader, batches: list[np.ndarray]):
        self.loader, self.batches = loader, batches
        self.cuda = loader.device.type == "cuda"
        self.stream = torch.cuda.Stream(loader.device) if self.cuda else None

    def __iter__(self) -> Iterator[Batch]:
        pool = ThreadPoolExecutor(self.loader.threads, thread_name_prefix="prebake-loader")
        pending: deque[Future[Batch]] = deque()
        todo = iter(self.batches)
        try:
            for idx in todo:
                pending.append(pool.submit(self._load, idx))
                if len(pending) > self.loader.prefetch:
                    yield self._ready(pending.popleft().result())
            while pending:
                yield self._ready(pending.popleft().result())
        finally:  # early stop or garbage collection: drop what is queued, let running gathers end
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _load(self, idx: np.ndarray) -> Batch:
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        inverse = torch.from_numpy(np.argsort(order, kind="stable"))
        out: Batch = {}
        for name, col in self.loader._data.items():
            if isinstance(col, Ragged):
                out[name] = [torch.from_numpy(np.array(col[i])).to(self.loader.device) for i in idx]
                continue
            host = torch.from_numpy(np.ascontiguousarray(col[sorted_idx]))  # one sorted gather
            out[name] = self._to_device(host, inverse)
        return out

    def _to_device(self, host: torch.Tensor, inverse: torch.Tensor) -> Any:
        if not self.cuda:
            return host.index_select(0, inverse)  # the drawn order, in a fresh tensor
        pinned = host.pin_memory()  # torch's caching host allocator reuses pinned blocks
        with torch.cuda.stream(self.stream):
            dev = pinned.to(self.loader.device, non_blocking=True)
            dev = dev.index_select(0, inverse.to(self.loader.device, non_blocking=True))
            event = torch.cuda.Event()
            event.record(self.stream)
        return _OnStream(dev, event, pinned)

    @staticmethod
    def _ready(batch: Batch) -> Batch:
        """On CUDA, make the consumer's stream wait for the copy (no host sync)."""
        for name, value in batch.items():
            if isinstance(value, _OnStream):
                torch.cuda.current_stream(value.tensor.device).wait_event(value.event)
                value.tensor.record_stream(torch.cuda.current_stream(value.tensor.device))
                batch[name] = value.tensor
        return batch


class _OnStream:
    """A device tensor still being written by a side stream, with the event that marks its end."""

    def __init__(self, tensor: torch.Tensor, event: Any, pinned: torch.Tensor):
        self.tensor, self.event, self.pinned = tensor, event, pinned  # keep the pinned source alive
