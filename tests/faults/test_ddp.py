"""DDP with fewer items than ranks: ranks made [1, 1, 1, 0] steps and hung the collective."""

from __future__ import annotations

import numpy as np
import pytest

import prebake
from benchmarks.trials.ddp import ddp_subsets
from prebake.errors import SamplingError


def test_fewer_items_than_ranks_is_refused_when_the_loader_is_made(tmp_path):
    cache = prebake.write_arrays(tmp_path / "c", {"x": np.arange(3)})
    with pytest.raises(SamplingError, match="3 items cannot be shared by 4 ranks: 1 of them would get no item"):
        prebake.Loader(cache, 2, rank=3, world_size=4)
    with pytest.raises(SamplingError):
        prebake.Loader(cache, 2, rank=0, world_size=4)  # every rank refuses, not only the empty one
    steps = [len(prebake.Loader(cache, 2, rank=r, world_size=4, drop_last=True)) for r in range(4)]
    assert steps == [0, 0, 0, 0]  # drop_last: the same (zero) steps everywhere
    assert [len(prebake.Loader(cache, 2, rank=r, world_size=3)) for r in range(3)] == [1, 1, 1]


def test_ddp_and_subset_trials(tmp_path):
    row = ddp_subsets(tmp_path, trials=60, seed=4)
    assert row.failures == 0, row.examples
