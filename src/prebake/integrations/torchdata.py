"""prebake's batch order as a stateful sampler, for torchdata's ``StatefulDataLoader`` (and any DataLoader).

``BatchSampler`` draws the batches :class:`~prebake.Loader` draws (the same items in the same
batches, from ``(seed, epoch)``, sharded over DDP ranks with none repeated) and saves its position
the way the Loader does, so a :class:`~prebake.Cache` or a view (``prebake.Windows``,
``prebake.Elements``) resumes exactly inside ``StatefulDataLoader``::

    from torchdata.stateful_dataloader import StatefulDataLoader
    from prebake.integrations.torchdata import BatchSampler

    loader = StatefulDataLoader(cache, sampler=BatchSampler(cache, 256, seed=0), batch_size=None,
                                num_workers=2)
    state = loader.state_dict()          # mid-epoch, in a checkpoint
    ...
    loader.load_state_dict(state)        # a new process: the rest of that epoch, exactly

``batch_size=None`` hands each list of indices to ``cache[indices]``: one gather per column per batch
and no per-sample collate (``batch_sampler=BatchSampler(...)`` works too, through ``__getitems__``).
With worker processes the sampler runs ahead of the batches handed out; ``StatefulDataLoader``'s
own ``state_dict()`` accounts for that (take the state from it, not from the sampler).

The conventions are those of ``torch.distributed.checkpoint.stateful.Stateful`` and of
``StatefulDataLoader``, which :class:`~prebake.Loader` follows too: ``state_dict()`` at any time
(before the first batch, mid-epoch, after the last batch: then it names the next epoch) returns
plain ints, bools, strings and dicts (JSON, ``torch.load(weights_only=True)``); ``load_state_dict``
makes the next ``iter()`` yield exactly the batches not yet handed out; a state saved over other
items, another order or another build of the cache is a :class:`~prebake.errors.ResumeError`. A
``BatchSampler`` state and a ``Loader`` state over the same items are the same dict, so either can
resume the other. Plain ``StatefulDataLoader(cache, batch_size=..., shuffle=True)`` resumes exactly
too (torchdata's own stateful sampler), without prebake's DDP sharding or whole-batch gathers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch.utils.data

from ..cache.indices import item_indices
from ..cache.reader import Cache
from ..errors import OptionError
from ..load.loader import _distributed_defaults
from ..load.params import whole
from ..load.sampling import Sampling
from ..load.state import (
    SAMPLING_KEYS,
    cache_identity,
    check_position,
    check_sampling,
    check_shape,
)
from ..load.views import Items, View, subset_id


class BatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields each batch of ``data`` as a list of item indices, in :class:`~prebake.Loader`'s order.

    Args:
        data: the :class:`~prebake.Cache` or view the DataLoader reads (its length and identity).
        batch_size: samples per batch, an int >= 1.
        shuffle: draw a new order each epoch, from ``(seed, epoch)``.
        seed: the seed of the order, an int >= 0.
        drop_last: make every batch exactly ``batch_size``.
        indices: a subset of ``data``'s items (item indices or a boolean mask).
        rank: this process's DDP rank; default from ``torch.distributed``, else 0.
        world_size: the number of DDP ranks; default from ``torch.distributed``, else 1.
    """

    def __init__(self, data: Cache | View, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, indices: Sequence[int] | np.ndarray | None = None,
                 rank: int | None = None, world_size: int | None = None):
        if not isinstance(data, (Cache, View)):
            raise OptionError(f"data is a {type(data).__name__}; BatchSampler walks a prebake Cache or view "
                              "(prebake.open(path), prebake.Windows(...)): pass the dataset the DataLoader reads")
        self.view = Items(data) if isinstance(data, Cache) else data
        self.indices = None if indices is None else item_indices(indices, len(self.view), repr(self.view),
                                                                 name="indices", negative=False)
        rank, world_size = _distributed_defaults(rank, world_size)
        n = len(self.view) if self.indices is None else len(self.indices)
        self.sampling = Sampling(n, batch_size, shuffle, seed, drop_last, rank, world_size)
        self._epoch, self._handed, self._fresh, self._pass = 0, 0, True, 0

    def __len__(self) -> int:
        return self.sampling.steps()

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` start epoch ``epoch`` from its first batch."""
        self._epoch, self._handed, self._fresh = whole(epoch, "epoch", 0), 0, True
        self._pass += 1

    def __iter__(self) -> Iterator[list[int]]:
        """The next epoch when the last one handed out every batch, else the same one from its first batch (or
        from where :meth:`load_state_dict` put it), as :class:`~prebake.Loader` does."""
        if not self._fresh:
            self._epoch, self._handed = (self._epoch + 1, 0) if self._handed >= len(self) else (self._epoch, 0)
        self._fresh = False
        self._pass += 1
        return self._walk(self._pass, self._epoch, self._handed)

    def _walk(self, ticket: int, epoch: int, first: int) -> Iterator[list[int]]:
        batches = self.sampling.batches(epoch, self.indices)
        for k in range(first, len(batches)):
            if ticket != self._pass:
                return  # a newer iter(), set_epoch or load_state_dict took over
            self._handed = k + 1
            yield batches[k].tolist()

    def state_dict(self) -> dict[str, Any]:
        """The same dict as ``Loader.state_dict()`` over the same items (see the module docstring)."""
        finished = not self._fresh and self._handed >= len(self)
        epoch, batch = (self._epoch + 1, 0) if finished else (self._epoch, self._handed)
        return {"epoch": epoch, "batch": batch, **{k: getattr(self.sampling, k) for k in SAMPLING_KEYS},
                "dataset": self.view.identity(), "indices": subset_id(self.indices),
                "cache": cache_identity(self.view.cache)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the next ``iter()`` yields the batches ``state_dict`` had not handed out (a ResumeError for a
        state of other items, order or cache build, or a corrupt one)."""
        own = self.state_dict()
        check_shape(state_dict, own)
        check_sampling(state_dict, own)
        self._epoch, self._handed = check_position(state_dict, len(self))
        self._fresh = True
        self._pass += 1


__all__: Sequence[str] = ("BatchSampler",)
