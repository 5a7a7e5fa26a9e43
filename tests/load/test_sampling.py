"""Batch order: every item exactly once per epoch across ranks, equal steps per rank, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prebake.errors import SamplingError
from prebake.load.sampling import Sampling


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 9), world=st.integers(1, 4), shuffle=st.booleans(),
       seed=st.integers(0, 3), epoch=st.integers(0, 3))
def test_each_item_exactly_once_per_epoch_with_equal_steps(n, batch, world, shuffle, seed, epoch):
    if n < world:  # some rank would have no item: refused, never unequal steps
        with pytest.raises(SamplingError, match=f"{n} items cannot be shared by {world} ranks"):
            Sampling(n, batch, shuffle, seed, False, 0, world)
        return
    ranks = [Sampling(n, batch, shuffle, seed, False, r, world) for r in range(world)]
    batches = [s.batches(epoch) for s in ranks]
    seen = np.concatenate([b for rank in batches for b in rank])
    assert sorted(seen.tolist()) == list(range(n))  # exactly once, across ranks
    assert len({len(rank) for rank in batches}) == 1  # the same number of steps on every rank
    for s, rank in zip(ranks, batches):
        assert len(rank) == s.steps()
        assert all(1 <= len(b) <= batch + 1 for b in rank)
        assert all(len(b) == batch for b in rank[:-1])


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 9), world=st.integers(1, 4), seed=st.integers(0, 3))
def test_drop_last_gives_full_batches_and_no_repeats(n, batch, world, seed):
    batches = [Sampling(n, batch, True, seed, True, r, world).batches(1) for r in range(world)]
    flat = [i for rank in batches for b in rank for i in b.tolist()]
    assert len(flat) == len(set(flat)) == world * (n // world // batch) * batch
    assert all(len(b) == batch for rank in batches for b in rank)


def test_subsets_are_covered_and_order_depends_only_on_seed_and_epoch():
    items = np.array([3, 17, 42, 5, 8, 99, 1000])
    s = Sampling(len(items), 2, shuffle=True, seed=7)
    first = np.concatenate(s.batches(0, items))
    assert sorted(first.tolist()) == sorted(items.tolist())
    assert np.array_equal(first, np.concatenate(Sampling(len(items), 2, True, 7).batches(0, items)))
    assert not np.array_equal(first, np.concatenate(s.batches(1, items)))  # a new epoch, a new order
    assert not np.array_equal(first, np.concatenate(Sampling(len(items), 2, True, 8).batches(0, items)))
    assert np.concatenate(Sampling(len(items), 3, shuffle=False).batches(5, items)).tolist() == items.tolist()


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="rank=2 is outside world_size=2"):
        Sampling(10, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size=0 is below 1; batch_size must be a whole number >= 1"):
        Sampling(10, 0)
