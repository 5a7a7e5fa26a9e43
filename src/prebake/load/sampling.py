"""Which items each batch holds: a pure function of (seed, epoch, rank, world_size).

The epoch order is a permutation of the items (or of a subset, such as one
federated client's indices) drawn from ``numpy.random.default_rng([seed, epoch])``.
Ranks take interleaved slices of it, ``order[rank::world_size]``, so across all
ranks every item is seen exactly once per epoch.

When the items do not divide evenly by ``world_size``, some ranks hold one item
more than others. To keep every rank at the same number of steps (a DDP step
count that differs between ranks hangs the collective ops), each rank makes
``ceil(q / batch_size)`` batches, where ``q = n // world_size`` is the smallest
rank's share; a rank with one item more puts it in its last batch, which then
holds up to ``batch_size + 1`` items. ``DistributedSampler`` instead repeats items
to pad every rank to the same count; prebake never repeats. With
``drop_last=True`` every batch holds exactly ``batch_size`` items and the
``n - world_size * batch_size * steps`` left over at the end of the order are
skipped this epoch (different ones each epoch when shuffling).

With fewer items than ranks (``0 < n < world_size``, without ``drop_last``) some ranks
would hold no item at all and make 0 steps while the others make 1, which hangs the
first collective op. That configuration is refused when the loader is made
(:class:`~prebake.errors.SamplingError`), rather than repeating items or handing a
rank an empty batch. With ``drop_last=True`` every rank makes the same
``n // world_size // batch_size`` steps, which may be 0 on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError, SamplingError
from .params import flag, whole


@dataclass(frozen=True)
class Sampling:
    """How a loader walks its items: everything the batch order depends on."""

    num_items: int
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    drop_last: bool = False
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        for name, least in (("num_items", 0), ("batch_size", 1), ("seed", 0), ("rank", 0), ("world_size", 1)):
            object.__setattr__(self, name, whole(getattr(self, name), name, least))  # plain ints: a state is JSON
        for name in ("shuffle", "drop_last"):
            object.__setattr__(self, name, flag(getattr(self, name), name))
        if not 0 <= self.rank < self.world_size:
            raise OptionError(f"rank={self.rank} is outside world_size={self.world_size} (0 <= rank < world_size); "
                              "pass the rank of this process, or leave rank and world_size out to take them from "
                              "torch.distributed")
        if 0 < self.num_items < self.world_size and not self.drop_last:
            raise SamplingError(
                f"{self.num_items} items cannot be shared by {self.world_size} ranks: "
                f"{self.world_size - self.num_items} of them would get no item and make fewer steps than the "
                "others, which hangs DDP's collective ops; use at most "
                f"{self.num_items} ranks for this data, give the loader more items, or pass drop_last=True "
                "(then every rank makes 0 steps)"
            )

    def steps(self) -> int:
        """Batches per epoch on every rank."""
        share = self.num_items // self.world_size
        if self.drop_last:
            return share // self.batch_size
        return -(-share // self.batch_size)  # 0 < num_items < world_size was refused in __post_init__

    def epoch_order(self, epoch: int, items: np.ndarray | None = None) -> np.ndarray:
        """All items of ``epoch`` in order (before the split over ranks)."""
        base = np.arange(self.num_items, dtype=np.int64) if items is None else np.asarray(items, dtype=np.int64)
        if not self.shuffle:
            return base
        return base[np.random.default_rng([self.seed, epoch]).permutation(len(base))]

    def batches(self, epoch: int, items: np.ndarray | None = None) -> list[np.ndarray]:
        """This rank's batches of ``epoch``, as arrays of item indices (in the order they are drawn)."""
        mine = self.epoch_order(epoch, items)[self.rank :: self.world_size]
        steps, b = self.steps(), self.batch_size
        if steps == 0:
            return []
        if self.drop_last:
            return [mine[k * b : (k + 1) * b] for k in range(steps)]
        return [mine[k * b : (k + 1) * b] for k in range(steps - 1)] + [mine[(steps - 1) * b :]]
