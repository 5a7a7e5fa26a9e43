"""Epochs as DataLoader + DistributedSampler give them, under the loops users write.

Handing out the last batch of an epoch finishes it; the next ``iter()`` starts the next epoch.
An ``iter()`` on an unfinished epoch (a loop that broke early) restarts it from its first batch;
``load_state_dict`` is the one way to resume mid-epoch. Each loop pattern runs over a cache, over
``Windows`` and over ``Elements``, on one rank and on several, and must see every item exactly once
per epoch, with ``loader.epoch`` naming that epoch inside the loop body.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import numpy as np
import pytest

import prebake
from prebake.errors import IteratorSupersededError

N = 53
EPOCHS = 3


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return prebake.write_arrays(tmp_path_factory.mktemp("epochs") / "c", {
        "x": np.arange(N, dtype=np.int64),
        "seq": [np.arange(i % 6, dtype=np.int32) + 100 * i for i in range(N)],
    })


def _data(cache, kind: str):
    if kind == "cache":
        return cache
    if kind == "windows":
        return prebake.Windows(cache, "seq", 2)
    return prebake.Elements(cache, "seq")


def _all_ids(data) -> list[int]:
    if isinstance(data, prebake.Windows):
        return (data.item * 1000 + data.start).tolist()
    if isinstance(data, prebake.Elements):
        return (data.item * 1000 + data.element).tolist()
    return list(range(len(data)))


def _ids(batch) -> list[int]:
    if "start" in batch:
        return (batch["item"] * 1000 + batch["start"]).tolist()
    if "element" in batch:
        return (batch["item"] * 1000 + batch["element"]).tolist()
    return batch["x"].tolist()


def _loader(data, rank: int = 0, world: int = 1, **kw) -> prebake.Loader:
    return prebake.Loader(data, 4, seed=7, rank=rank, world_size=world, **{"threads": 2, "prefetch": 2, **kw})


def _reference(data, epoch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Epoch ``epoch``'s batches, from a fresh loader told the epoch."""
    loader = _loader(data, rank, world)
    loader.set_epoch(epoch)
    return [_ids(b) for b in loader]


# -- the loop patterns: each returns, per epoch, (epoch numbers seen in the body, the batches) --------------

Pass = tuple[set[int], list[list[int]]]


def full_for(loader: prebake.Loader) -> Pass:
    epochs, got = set(), []
    for batch in loader:
        epochs.add(loader.epoch)
        got.append(_ids(batch))
    return epochs, got


def next_len_times(loader: prebake.Loader) -> Pass:
    """PyTorch Lightning, Accelerate and hand-written loops: exactly len(loader) next() calls."""
    epochs, got, it = set(), [], iter(loader)
    for _ in range(len(loader)):
        got.append(_ids(next(it)))
        epochs.add(loader.epoch)
    return epochs, got


def zip_range(loader: prebake.Loader) -> Pass:
    epochs, got = set(), []
    for _, batch in zip(range(len(loader)), loader):
        epochs.add(loader.epoch)
        got.append(_ids(batch))
    return epochs, got


def islice_len(loader: prebake.Loader) -> Pass:
    epochs, got = set(), []
    for batch in itertools.islice(loader, len(loader)):
        epochs.add(loader.epoch)
        got.append(_ids(batch))
    return epochs, got


def broken_then_full(loader: prebake.Loader) -> Pass:
    """A loop that breaks after two batches, then a whole pass: the epoch starts again from its first batch."""
    for k, _ in enumerate(loader):
        if k == 1:
            break
    return full_for(loader)


PATTERNS: dict[str, Callable[[prebake.Loader], Pass]] = {
    "for": full_for, "next len times": next_len_times, "zip range": zip_range, "islice": islice_len,
    "break then for": broken_then_full}


@pytest.mark.parametrize("kind", ["cache", "windows", "elements"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_every_loop_pattern_sees_each_item_once_per_epoch(cache, kind, pattern):
    data = _data(cache, kind)
    loader = _loader(data)
    for epoch in range(EPOCHS):
        epochs, got = PATTERNS[pattern](loader)
        assert epochs == {epoch}, f"epoch {epoch}: loader.epoch read {epochs} in the loop body"
        assert got == _reference(data, epoch), f"epoch {epoch}: other batches than a fresh loader's"
        assert sorted(i for b in got for i in b) == sorted(_all_ids(data))
    assert loader.state_dict()["epoch"] == EPOCHS and loader.state_dict()["batch"] == 0


@pytest.mark.parametrize("kind", ["cache", "windows", "elements"])
@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("pattern", ["for", "next len times", "zip range", "break then for"])
def test_ranks_together_see_each_item_once_per_epoch(cache, kind, world, pattern):
    data = _data(cache, kind)
    loaders = [_loader(data, r, world) for r in range(world)]
    for epoch in range(EPOCHS):
        seen: list[int] = []
        for rank, loader in enumerate(loaders):
            epochs, got = PATTERNS[pattern](loader)
            assert epochs == {epoch} and len(got) == len(loader) == len(loaders[0])
            assert got == _reference(data, epoch, rank, world)
            seen += [i for b in got for i in b]
        assert sorted(seen) == sorted(_all_ids(data)), f"epoch {epoch}: an item missing or repeated across ranks"


def test_the_issue_loop_gets_a_full_second_epoch(tmp_path):
    """The loop of the report: epoch 1 raised StopIteration at once."""
    prebake.write_arrays(tmp_path / "c", {"x": np.arange(100)})
    loader = prebake.Loader(prebake.open(tmp_path / "c"), 10, seed=0)
    orders = []
    for _ in range(3):
        it = iter(loader)
        orders.append(np.concatenate([next(it)["x"].numpy() for _ in range(len(loader))]))
    assert all(sorted(o.tolist()) == list(range(100)) for o in orders)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


def test_epoch_inside_the_last_batch_and_the_state_after_it(cache):
    loader = _loader(cache)
    it = iter(loader)
    for k in range(len(loader)):
        next(it)
        assert loader.epoch == 0  # the epoch being iterated, up to and with its last batch
        want = (1, 0) if k == len(loader) - 1 else (0, k + 1)
        assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == want
    with pytest.raises(StopIteration):
        next(it)
    assert loader.epoch == 1 and loader.state_dict()["batch"] == 0


def test_a_broken_loop_restarts_its_epoch_with_the_same_order(cache):
    loader = _loader(cache)
    first = []
    for batch in loader:
        first.append(_ids(batch))
        if len(first) == 3:
            break
    assert loader.epoch == 0 and loader.state_dict()["batch"] == 3
    again = [_ids(b) for b in loader]
    assert loader.epoch == 1  # that pass ran out: the next one is epoch 1
    assert again[:3] == first and again == _reference(cache, 0)


def test_set_epoch_sets_the_next_pass(cache):
    loader = _loader(cache)
    full_for(loader)
    loader.set_epoch(5)
    assert loader.epoch == 5 and zip_range(loader) == ({5}, _reference(cache, 5))
    assert full_for(loader) == ({6}, _reference(cache, 6))
    loader.set_epoch(6)  # the same epoch again, as DistributedSampler does when told
    assert next_len_times(loader) == ({6}, _reference(cache, 6))


def test_an_empty_epoch_still_advances(cache):
    loader = prebake.Loader(cache, 60, drop_last=True)  # 53 items: no whole batch of 60
    assert len(loader) == 0
    for epoch in range(3):
        assert zip_range(loader) == (set(), []) and list(loader) == []
    assert loader.epoch == 6


@pytest.mark.parametrize("kind", ["cache", "windows", "elements"])
def test_resume_at_every_position_of_an_epoch(cache, kind):
    """A state taken after k batches (k = 0 .. len) resumes with exactly the uninterrupted run's rest."""
    data = _data(cache, kind)
    uninterrupted = _reference(data, 1) + _reference(data, 2) + _reference(data, 3)
    steps = len(_loader(data))
    for k in range(steps + 1):
        loader = _loader(data)
        loader.set_epoch(1)
        it = iter(loader)
        head = [_ids(next(it)) for _ in range(k)]
        state = loader.state_dict()
        resumed = _loader(_data(prebake.open(cache.path), kind))
        resumed.load_state_dict(state)
        rest = [_ids(b) for b in resumed]  # the rest of epoch 1 (all of epoch 2 when k == len)
        rest += [_ids(b) for b in resumed]  # and the next whole epoch
        assert len(head) + len(rest) == (2 if k < steps else 3) * steps
        assert head + rest == uninterrupted[: len(head) + len(rest)], f"resume after {k} batches"
        loader.load_state_dict(state)  # the same loader resumes too, and its old iterator is superseded
        assert [_ids(b) for b in loader] == (uninterrupted[k:steps] if k < steps else _reference(data, 2))
        with pytest.raises(IteratorSupersededError):
            next(it)


def test_two_iterators_the_newer_supersedes_the_older(cache):
    loader = _loader(cache, prefetch=3)
    threads = lambda: {t for t in threading.enumerate() if t.name.startswith("prebake-loader") and t.is_alive()}  # noqa: E731
    before = threads()
    a = iter(loader)
    head = [_ids(next(a)) for _ in range(2)]
    assert threads() - before  # a's gathers run on threads
    b = iter(loader)
    assert not threads() - before  # a's threads were stopped when b was made
    with pytest.raises(IteratorSupersededError, match="superseded.*iter\\(loader\\) was called again"):
        next(a)
    with pytest.raises(IteratorSupersededError):
        next(a)  # and stays so
    got = [_ids(x) for x in b]
    assert got[:2] == head and got == _reference(cache, 0) and loader.epoch == 1


@pytest.mark.parametrize("call", ["set_epoch", "load_state_dict"])
def test_set_epoch_and_load_state_dict_end_the_pass_in_progress(cache, call):
    loader = _loader(cache)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    loader.set_epoch(2) if call == "set_epoch" else loader.load_state_dict(state)
    with pytest.raises(IteratorSupersededError):
        next(it)
    got = full_for(loader)
    assert got == (({2}, _reference(cache, 2)) if call == "set_epoch" else ({0}, _reference(cache, 0)[1:]))


def test_an_error_in_the_transform_leaves_the_epoch_unfinished(cache):
    calls = []

    def flaky(batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("flaky transform")
        return batch

    loader = _loader(cache, transform=flaky)
    it = iter(loader)
    next(it), next(it)
    with pytest.raises(RuntimeError, match="flaky"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    assert loader.epoch == 0 and loader.state_dict()["batch"] == 2  # not counted as a finished epoch
    assert full_for(loader) == ({0}, _reference(cache, 0))


def test_watch_over_epochs_of_a_loader(cache):
    loader = _loader(cache)
    for epoch in range(3):
        watched = prebake.watch(loader, report=lambda r: None)
        got = [_ids(b) for _, b in zip(range(len(loader)), watched)]
        assert got == _reference(cache, epoch) and loader.epoch == epoch
