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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size} (0 <= rank < world_size)")

    def steps(self) -> int:
        """Batches per epoch on every rank."""
        share = self.num_items // self.world_size
        if self.drop_last:
            return share // self.batch_size
        if share == 0:  # fewer items than ranks: each rank with an item makes one batch
            return 1 if self.rank < self.num_items else 0
        return -(-share // self.batch_size)

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
