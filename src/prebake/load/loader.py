"""``prebake.Loader``: whole batches from a cache or a view, one gather per column per batch.

For each batch the indices are sorted into file order, each column is gathered in one call
from its memory map (the fastest way to read a memmap), and the drawn order is restored. A
view (``load/views.py``: windows, elements) plans the rows of a batch from its offsets, so a
batch of windows is also one gather per column. On a CUDA device gathers run on background
threads, ``prefetch`` batches ahead, pinned and copied on a side stream; the consumer's stream
waits on an event, so the loop never blocks the host on the copy. On a CPU they run in the
loop's own thread: there the step's own threads use every core, and gather threads only
compete with them (see :func:`gather_threads`). The batch order does not depend on the thread
count. ``preload="device"`` keeps the columns in device memory, and a batch is then a
device-side ``index_select`` per column, with only the row positions (a few integers per
sample) sent from the host. Preloaded columns are made
once per :class:`Cache` object (:meth:`Cache.preloaded`), so Loaders over the same object,
one per federated client say, share one copy.

Which items a batch holds comes from :mod:`prebake.load.sampling`.
"""

from __future__ import annotations

import inspect
import os
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..cache.indices import item_indices, shown
from ..cache.reader import Cache, open_cache
from ..errors import IteratorSupersededError, OptionError, ViewError
from .convert import resolve
from .gather import Buffers, read_device, values_of
from .params import check_device, flag, function, gather_threads, names, whole
from .prefetch import Batch, _Prefetcher, device_pieces
from .sampling import Sampling
from .state import (
    SAMPLING_KEYS,
    cache_identity,
    check_position,
    check_sampling,
    check_shape,
)
from .views import Items, View, refuse_shaped_convert, subset_id


def _distributed_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return ((dist.get_rank() if rank is None else rank),
                (dist.get_world_size() if world_size is None else world_size))
    return (0 if rank is None else rank), (1 if world_size is None else world_size)


def _as_view(data: Cache | View | str | os.PathLike[str], columns: Sequence[str] | None, pad: bool) -> View:
    if not isinstance(data, (Cache, View, str, os.PathLike)):
        raise OptionError(f"data={shown(data)} is a {type(data).__name__}; a Loader reads a prebake Cache, a cache "
                          "path, or a view (prebake.Windows, prebake.Elements): build a cache from it with "
                          "prebake.write_arrays(path, ...) or prebake.build(...), then Loader(prebake.open(path), ...)")
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
    zero-padded ``(B, longest, ...)`` tensor plus ``<column>_lengths``.

    Epochs work as with ``DataLoader`` + ``DistributedSampler``, whatever the loop:

    - handing out the last batch of an epoch finishes it, so the next ``iter(loader)`` starts
      the next epoch, also for loops that stop at ``len(loader)`` and never ask for one more
      batch (Lightning, Accelerate, ``for step in range(len(loader))``, ``zip``, ``islice``);
    - ``iter(loader)`` on an unfinished epoch (a loop that broke early) *restarts* that epoch
      from its first batch, with the same epoch number and order, as a DataLoader does;
    - :meth:`set_epoch` makes the next ``iter()`` start that epoch;
    - :meth:`load_state_dict` is the one way to resume mid-epoch: the next ``iter()`` yields
      exactly the batches :meth:`state_dict` had not handed out yet;
    - one pass at a time: a new ``iter()`` (or ``set_epoch``, ``load_state_dict``) supersedes
      the iterator in progress, whose gather threads stop and whose ``next()`` then raises
      :class:`~prebake.errors.IteratorSupersededError`. Two passes at once need two Loaders;
    - :attr:`epoch` is the epoch being iterated: inside the loop body, that of the batch in
      hand, its last batch included.

    Args:
        data: a :class:`Cache`, a cache path, or a view (:class:`~prebake.Windows`,
            :class:`~prebake.Elements`).
        batch_size: samples per batch, an int >= 1 (see :mod:`prebake.load.sampling` for uneven DDP shares).
        shuffle: draw a new order each epoch, from ``(seed, epoch)``.
        seed: the seed of the order, an int >= 0.
        drop_last: make every batch exactly ``batch_size``, skipping the rest of the epoch.
        indices: a subset of ``data``'s items (a federated client, a split); a view, not a copy. Whole
            numbers in ``0..len(data)-1``, or a boolean mask with one entry per item (``cache.targets == k``).
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
        prefetch: batches gathered ahead of the one being consumed by the gather threads, at least 1.
        threads: ``"auto"`` (see :func:`gather_threads`: none on a CPU device, where gathers run inside
            ``next()`` in the loop's thread; 2 on CUDA or with ``transform_in_threads``), or a number of gather
            threads, at least 1 (one while volume-sized rows convert on torch's threads: see ``convert``).
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
                 threads: int | str = "auto", pad: bool = False, convert: Mapping[str, Any] | None = None,
                 transform_in_threads: bool = False):
        self.view = _as_view(data, names(columns, "columns"), flag(pad, "pad"))
        self.cache = self.view.cache
        what = str(self.cache.path) if isinstance(self.view, Items) else repr(self.view)
        self.indices = None if indices is None else item_indices(indices, len(self.view), what, name="indices",
                                                                 negative=False)
        rank, world_size = _distributed_defaults(rank, world_size)
        n = len(self.view) if self.indices is None else len(self.indices)
        self.sampling = Sampling(n, batch_size, shuffle, seed, drop_last, rank, world_size)
        self.columns = list(columns) if columns is not None else self.view.columns
        self.view.plan(np.zeros(0, np.int64), self.columns)  # checks the columns now, not at the first batch
        self.device = check_device(device)
        self.transform = function(transform, "transform")
        self._takes_generator = _takes_generator(transform)
        self.transform_in_threads = flag(transform_in_threads, "transform_in_threads")
        self.prefetch = whole(prefetch, "prefetch", 1)
        self.threads = gather_threads(threads, self.device, self.transform_in_threads)  # 0: in the loop's thread
        self._epoch, self._handed = 0, 0  # the epoch being iterated; its batches handed out so far
        self._fresh = True  # the next iter() starts at (_epoch, _handed) as they are, neither restarted nor advanced
        self._live: Callable[[], Epoch | None] = _no_epoch
        self._pass = 0  # the current iter(): an older one's next() is refused
        self._on_device = preload == "device"
        self._data = self._preload(preload)
        if convert and self._on_device:
            raise OptionError("convert runs in the host gather, and preload='device' gathers on the device; "
                              "convert there in transform, or preload='ram'")
        if isinstance(self.view, Items):  # a view that cuts boxes (Patches) converts what it gathers
            refuse_shaped_convert(convert, self.cache)
        self.convert = resolve(convert, self.columns, {k: values_of(v).dtype for k, v in self._data.items()})
        self._buffers = Buffers(keep=self.prefetch + self.threads + 2)  # batches in flight, and one being used

    def _preload(self, preload: str | None) -> dict[str, Any]:
        if preload is None:
            return {name: self.cache.column(name) for name in self.columns}
        if not isinstance(preload, str) or preload not in ("ram", "device"):
            raise OptionError(f"preload={shown(preload)}: preload must be None (read the memory maps), 'ram' or "
                              "'device' (copy the columns there once; the device is device=)")
        device = self.device if preload == "device" else None
        return {name: self.cache.preloaded(name, device) for name in self.columns}  # one copy per Cache

    # -- epochs and resume -------------------------------------------------------------------

    def __len__(self) -> int:
        return self.sampling.steps()

    @property
    def epoch(self) -> int:
        """The epoch being iterated: inside the loop body, the epoch of the batch in hand (its last batch
        too). After a pass that ran out (StopIteration), the epoch the next ``iter()`` starts; after a loop
        that stopped at ``len(loader)`` it still names the finished one until the next ``iter()``
        (:meth:`state_dict` names the next)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` start epoch ``epoch`` from its first batch (ends a pass in progress)."""
        epoch = whole(epoch, "epoch", 0, fix=": epochs count from 0 (the order is drawn from (seed, epoch)); "
                      "pass your loop's epoch counter, loader.set_epoch(epoch)")
        self._supersede()
        self._epoch, self._handed, self._fresh = epoch, 0, True

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is (``epoch``, and ``batch``: that epoch's batches already handed out; after the
        last one, the next epoch at batch 0), what it walks (sampling, view, an xxh3 of ``indices``) and which
        build of the cache (see :mod:`prebake.load.state`)."""
        finished = not self._fresh and self._handed >= len(self)
        epoch, batch = (self._epoch + 1, 0) if finished else (self._epoch, self._handed)
        return {"epoch": epoch, "batch": batch, **{k: getattr(self.sampling, k) for k in SAMPLING_KEYS},
                "dataset": self.view.identity(), "indices": subset_id(self.indices),
                "cache": cache_identity(self.cache)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state``: the next ``iter()`` yields exactly the batches of its epoch not yet handed out
        (and ends a pass in progress). Raises :class:`~prebake.errors.ResumeError` for a state saved by a loader
        over other items (another subset, view, sampling or build of the cache), or one that is corrupt."""
        own = self.state_dict()
        check_shape(state, own)
        check_sampling(state, own)
        epoch, batch = check_position(state, len(self))
        self._supersede()
        self._epoch, self._handed, self._fresh = epoch, batch, True

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Epoch:
        """A new pass: the next epoch when the last one handed out every batch, else the same epoch from its
        first batch (or, after :meth:`load_state_dict` or :meth:`set_epoch`, from where they put it)."""
        self._supersede()
        if not self._fresh:
            self._epoch, self._handed = (self._epoch + 1, 0) if self._handed >= len(self) else (self._epoch, 0)
        self._fresh = False
        epoch = Epoch(self, self._pass, self._epoch, self._handed)
        self._live = weakref.ref(epoch)
        return epoch

    def _supersede(self) -> None:
        """Make the current iterator (if any) stale, and stop its gather threads now."""
        self._pass += 1
        live, self._live = self._live(), _no_epoch
        if live is not None:
            live._stop()

    def _handed_out(self, ticket: int, count: int) -> None:
        if ticket == self._pass:
            self._handed = count

    def _ran_out(self, ticket: int) -> None:
        if ticket == self._pass:  # every batch handed out and one more asked for: the next iter() is the next epoch
            self._epoch, self._handed, self._fresh = self._epoch + 1, 0, True

    def _batches(self, epoch: int, first: int, timing: list[float]) -> Generator[Batch, None, None]:
        batches = self.sampling.batches(epoch, self.indices)
        produced = self._produce(batches[first:], epoch, first)
        try:
            for k, batch in zip(range(first, len(batches)), produced):
                if self.transform is None or self._threaded():
                    yield batch
                    continue
                t = time.perf_counter()
                batch = self._apply(batch, epoch, k)
                timing[0] = time.perf_counter() - t
                yield batch
        finally:
            produced.close()  # stops the gather threads when the loop ends early

    def _produce(self, batches: list[np.ndarray], epoch: int, first: int) -> Generator[Batch, None, None]:
        if self._on_device:
            view = self.view.at_epoch(epoch)
            for idx in batches:  # preload="device": the gathers happen on the device, in the drawn order
                got = read_device(view.plan(idx, self.columns), self._data, self.device)
                yield {k: device_pieces(v) for k, v in got.items()}
            return
        yield from _Prefetcher(self, batches, epoch, first)

    def _threaded(self) -> bool:
        return self.transform_in_threads and self.device.type == "cpu" and not self._on_device

    def _apply(self, batch: Batch, epoch: int, step: int) -> Batch:
        """``transform`` on batch number ``step`` of this epoch, with its own generator when it takes one."""
        assert self.transform is not None
        if not self._takes_generator:
            return self.transform(batch)
        return self.transform(batch, generator=batch_generator(self.sampling, epoch, step, self.device))


def _no_epoch() -> None:
    return None


class Epoch(Iterator[Batch]):
    """One pass over a :class:`Loader`'s batches (what ``iter(loader)`` returns).

    A newer ``iter(loader)`` (or ``set_epoch``, ``load_state_dict``) supersedes it: its gather
    threads stop, and its ``next()`` raises :class:`~prebake.errors.IteratorSupersededError`.

    ``last_transform_seconds`` is how long ``transform`` took inside the ``next()`` that
    returned the latest batch: 0 without a transform, or when it ran on the gather threads
    (``transform_in_threads``). :func:`prebake.watch` counts that time as the transform's,
    not as waiting for data: it is work on the training device (on a CUDA device, the time
    to queue its kernels), as it would be in the loop body.
    """

    def __init__(self, loader: Loader, ticket: int, epoch: int, first: int):
        self._loader, self._ticket, self._epoch, self._count = loader, ticket, epoch, first
        self._timing = [0.0]  # shared with the generator, which holds no reference to this object: a loop
        self._batches = loader._batches(epoch, first, self._timing)  # that breaks early frees (and stops) it
        self._ended = False

    @property
    def last_transform_seconds(self) -> float:
        return self._timing[0]

    def __iter__(self) -> Epoch:
        return self

    def __next__(self) -> Batch:
        if self._ended:
            raise StopIteration
        if self._ticket != self._loader._pass:  # refused at every call, never silently empty
            self._stop()
            raise IteratorSupersededError(
                f"this iterator of epoch {self._epoch} was superseded: iter(loader) was called again (or "
                "set_epoch / load_state_dict), which started a new pass and stopped this one's gather threads. "
                "A Loader runs one pass at a time: use the newest iterator, or make a second Loader over the "
                "same Cache for a second pass at the same time")
        try:
            batch = next(self._batches)
        except StopIteration:
            self._ended = True
            self._loader._ran_out(self._ticket)
            raise
        except BaseException:
            self._ended = True  # the epoch stays unfinished: the next iter() starts it again
            raise
        self._count += 1
        self._loader._handed_out(self._ticket, self._count)
        return batch

    def close(self) -> None:
        """Stop the gather threads now (a loop that breaks early; garbage collection does it too)."""
        self._ended = True
        self._stop()

    def _stop(self) -> None:
        try:  # not contextlib: a generator collected at interpreter exit finds module globals gone
            self._batches.close()
        except ValueError:  # running in another thread right now: refused at its next call
            pass


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
    entropy = [sampling.seed, sampling.rank, epoch, step, 0x7472616E73]
    seed = np.random.SeedSequence(entropy).generate_state(1, np.uint64)
    return torch.Generator(device).manual_seed(int(seed[0]) >> 1)
