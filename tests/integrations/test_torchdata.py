"""prebake inside torchdata's StatefulDataLoader: a Cache or a view resumes exactly mid-epoch (with and without
worker processes), prebake.BatchSampler draws the Loader's batches, and Loader and sampler states are one format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("torchdata")

from torchdata.stateful_dataloader import StatefulDataLoader

import prebake
from benchmarks.trials.integrations import roundtrip, small_cache, take
from prebake.errors import OptionError, ResumeError
from prebake.integrations.torchdata import BatchSampler

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return small_cache(tmp_path_factory.mktemp("td") / "c", 23)


def _loader(data, workers=0, **kw):
    return StatefulDataLoader(data, sampler=BatchSampler(data, 4, seed=7, **kw), batch_size=None, num_workers=workers)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop", [0, 2, 6, 9])  # 6 batches an epoch: before any, mid-epoch, at its end, in the next
def test_a_cache_in_a_stateful_dataloader_resumes_exactly(cache, workers, stop):
    full = take(_loader(cache, workers), 12)
    first = _loader(cache, workers)
    got = take(first, stop)
    second = _loader(cache, workers)
    second.load_state_dict(roundtrip(first.state_dict()))
    assert got + take(second, 12 - stop) == full
    assert sorted(i for b in full[:6] for i in b) == list(range(23)) and full[:6] != full[6:]


def test_a_view_resumes_exactly_too(tmp_path):
    clips = prebake.write_arrays(tmp_path / "clips", {"i": [np.arange(k) + 10 * k for k in range(1, 8)]})
    view = prebake.Elements(clips, "i")
    full = take(_loader(view), 8)
    first = _loader(view)
    got = take(first, 3)
    second = _loader(view)
    second.load_state_dict(roundtrip(first.state_dict()))
    assert got + take(second, 5) == full


def test_the_sampler_draws_the_loaders_batches_on_every_rank(cache):
    for rank in range(3):
        kw = {"seed": 2, "rank": rank, "world_size": 3}
        ours = list(BatchSampler(cache, 4, **kw))
        loader = [b["i"].tolist() for b in prebake.Loader(cache, 4, **kw)]
        assert ours == loader


def test_loader_and_sampler_states_resume_each_other(cache):
    """One format: a sampler's state resumes a Loader over the same items, and a Loader's resumes a sampler."""
    epochs = [_epoch(cache, e) for e in (0, 1)]
    sampler, loader = BatchSampler(cache, 4, seed=1), prebake.Loader(cache, 4, seed=1)
    it = iter(sampler)
    for _ in range(2):
        next(it)
    loader.load_state_dict(roundtrip(sampler.state_dict()))
    assert [b["i"].tolist() for b in loader] == epochs[0][2:]
    it = iter(loader)
    for _ in range(3):
        next(it)
    other = BatchSampler(cache, 4, seed=1)
    other.load_state_dict(roundtrip(loader.state_dict()))
    assert list(other) == epochs[1][3:]


def _epoch(cache, epoch):
    s = BatchSampler(cache, 4, seed=1)
    s.set_epoch(epoch)
    return list(s)


@pytest.mark.parametrize("make", [lambda c: prebake.Loader(c, 4), lambda c: BatchSampler(c, 4)])
def test_state_conventions(cache, make):
    """torch's Stateful protocol; state_dict before the first batch, mid-epoch and after the last one; JSON and
    weights_only checkpoints; the next iter() after load_state_dict starts where the state was."""
    from torch.distributed.checkpoint.stateful import Stateful
    from torchdata.stateful_dataloader import Stateful as TorchdataStateful

    obj = make(cache)
    assert isinstance(obj, Stateful) and isinstance(obj, TorchdataStateful)
    assert (obj.state_dict()["epoch"], obj.state_dict()["batch"]) == (0, 0)
    it = iter(obj)
    next(it)
    assert (obj.state_dict()["epoch"], obj.state_dict()["batch"]) == (0, 1)
    for _ in it:
        pass
    assert (obj.state_dict()["epoch"], obj.state_dict()["batch"]) == (1, 0)
    assert roundtrip(obj.state_dict()) == json.loads(json.dumps(obj.state_dict())) == obj.state_dict()


@pytest.mark.parametrize("change, words", [({"seed": 8}, "seed"), ({"batch": 99}, "batch=99"),
                                            ({"indices": "0123"}, "subset")])
def test_a_state_of_other_items_is_refused(cache, change, words):
    first = _loader(cache)
    take(first, 2)
    state = first.state_dict()
    state["_index_sampler_state"].update(change)
    second = _loader(cache)
    second.load_state_dict(state)
    with pytest.raises(ResumeError, match=words):
        take(second, 1)


def test_a_state_from_another_build_of_the_cache_is_refused(tmp_path):
    a = small_cache(tmp_path / "a", 23, seed=0)
    first = _loader(a)
    take(first, 2)
    b = small_cache(tmp_path / "b", 23, seed=1)
    second = _loader(b)
    second.load_state_dict(first.state_dict())
    with pytest.raises(ResumeError, match="rebuilt"):
        take(second, 1)


def test_plain_stateful_dataloader_over_a_cache_resumes_too(cache):
    """torchdata's own stateful RandomSampler and per-item collate, over a Cache (fork workers)."""
    def make():
        return StatefulDataLoader(cache, batch_size=5, shuffle=True, num_workers=2,
                                  generator=torch.Generator().manual_seed(0))

    full = take(make(), 5)
    first = make()
    got = take(first, 2)
    second = make()
    second.load_state_dict(first.state_dict())
    assert got + take(second, 3) == full


@pytest.mark.parametrize("bad, words", [(np.arange(5), "BatchSampler walks a prebake Cache"),
                                         ("cache", "BatchSampler walks")])
def test_bad_data_is_refused(bad, words):
    with pytest.raises(OptionError, match=words):
        BatchSampler(bad, 4)
