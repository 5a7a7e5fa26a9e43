"""prebake.Loader on CPU: right items, every item once, thread-independent order, exact resume."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

import prebake
from tests.helpers.devices import NEEDS_CUDA


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 301
    return prebake.write_arrays(tmp_path_factory.mktemp("c") / "c", {
        "image": rng.integers(0, 256, (n, 3, 4, 4), dtype=np.uint8),
        "label": np.arange(n, dtype=np.int64),  # label == index, so a batch says which items it holds
        "sig": [np.full(i % 4, i, np.int16) for i in range(n)],
    })


def _epoch(loader):
    return [b["label"].tolist() for b in loader]


def test_batches_hold_the_right_rows(cache):
    images = np.load(cache.path / "image.npy")
    for batch in prebake.Loader(cache, 32, seed=3):
        idx = batch["label"].numpy()
        assert batch["image"].dtype == torch.uint8 and torch.equal(batch["image"], torch.from_numpy(images[idx]))
        assert [s.tolist() for s in batch["sig"]] == [[i] * (i % 4) for i in idx]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_item_once_per_epoch_across_ranks_and_subsets(cache, world):
    subset = np.arange(5, 290, 3)
    for indices in (None, subset):
        seen = []
        steps = set()
        for rank in range(world):
            loader = prebake.Loader(cache, 16, seed=1, rank=rank, world_size=world, indices=indices)
            batches = _epoch(loader)
            steps.add(len(batches))
            seen += [i for b in batches for i in b]
        want = list(range(len(cache))) if indices is None else subset.tolist()
        assert sorted(seen) == want and len(steps) == 1


def test_order_is_deterministic_and_independent_of_threads(cache):
    a = _epoch(prebake.Loader(cache, 20, seed=5, threads=1, prefetch=1))
    b = _epoch(prebake.Loader(cache, 20, seed=5, threads=4, prefetch=3))
    assert a == b
    loader = prebake.Loader(cache, 20, seed=5)
    first, second = _epoch(loader), _epoch(loader)  # a full pass advances the epoch
    assert first == a and second != first and sorted(sum(second, [])) == list(range(len(cache)))


@pytest.mark.parametrize("stop_after", [0, 1, 7, 15])
def test_resume_yields_exactly_the_remaining_batches(cache, stop_after):
    full = _epoch(prebake.Loader(cache, 20, seed=9))
    loader = prebake.Loader(cache, 20, seed=9)
    it = iter(loader)
    got = [next(it)["label"].tolist() for _ in range(stop_after)]
    state = loader.state_dict()
    del it
    resumed = prebake.Loader(cache, 20, seed=9, threads=3)
    resumed.load_state_dict(state)
    assert got + _epoch(resumed) == full
    assert resumed.epoch == 1 and resumed.state_dict()["batch"] == 0  # the next pass is a whole new epoch


def test_resume_state_must_match(cache):
    state = prebake.Loader(cache, 20, seed=9).state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        prebake.Loader(cache, 32, seed=9).load_state_dict(state)


def test_resume_refuses_the_state_of_another_subset(cache):
    """Client B must not resume from client A's state: same sizes, other items."""
    a = prebake.Loader(cache, 8, seed=1, indices=np.arange(0, 100))
    it = iter(a)
    next(it)
    state = a.state_dict()
    del it
    for other in (np.arange(100, 200), np.arange(0, 100)[::-1]):  # other items; the same items in another order
        with pytest.raises(prebake.ResumeError, match="another subset of items .* indices= of the run that saved"):
            prebake.Loader(cache, 8, seed=1, indices=other).load_state_dict(state)
    same = prebake.Loader(cache, 8, seed=1, indices=np.arange(0, 100))
    same.load_state_dict(state)
    assert same.state_dict()["batch"] == 1
    whole = prebake.Loader(cache, 8, seed=1, indices=np.arange(len(cache)))
    with pytest.raises(prebake.ResumeError):  # a subset of every item is not "all items" (it fixes their order)
        whole.load_state_dict(prebake.Loader(cache, 8, seed=1).state_dict())
    legacy = {k: v for k, v in state.items() if k not in ("indices", "dataset")}  # a state that names no subset
    with pytest.raises(prebake.ResumeError, match="not recorded"):
        same.load_state_dict(legacy)


def test_stopping_early_shuts_the_threads_down(cache):
    before = {t for t in threading.enumerate() if t.name.startswith("prebake-loader")}
    for i, _ in enumerate(prebake.Loader(cache, 8, prefetch=4, threads=3)):
        if i == 2:
            break
    left = {t for t in threading.enumerate() if t.name.startswith("prebake-loader")} - before
    assert not any(t.is_alive() for t in left)


@pytest.mark.parametrize("preload", ["ram", "device"])
def test_preload_gives_the_same_batches(cache, preload):
    want = [b["image"] for b in prebake.Loader(cache, 25, seed=2, columns=["image", "label"])]
    got = [b["image"] for b in prebake.Loader(cache, 25, seed=2, columns=["image", "label"], preload=preload)]
    assert all(torch.equal(a, b) for a, b in zip(want, got)) and len(want) == len(got)


@pytest.mark.parametrize("preload", ["ram", "device"])
def test_loaders_over_one_cache_share_one_preloaded_copy(cache, preload):
    clients = [prebake.Loader(cache, 8, indices=np.arange(k, 300, 10), columns=["image"], preload=preload)
               for k in range(10)]
    def ptr(col):
        return col.ctypes.data if isinstance(col, np.ndarray) else col.data_ptr()
    assert len({ptr(c._data["image"]) for c in clients}) == 1
    other = prebake.Loader(prebake.open(cache.path), 8, columns=["image"], preload=preload)
    assert ptr(other._data["image"]) != ptr(clients[0]._data["image"])  # another Cache object: its own copy
    ragged = [prebake.Loader(cache, 8, columns=["sig"], preload=preload) for _ in range(2)]
    assert ptr(ragged[0]._data["sig"].values) == ptr(ragged[1]._data["sig"].values)  # ragged columns too


def test_transform_runs_on_each_batch(cache):
    def to_float(batch):
        batch["image"] = batch["image"].float() / 255
        return batch

    batch = next(iter(prebake.Loader(cache, 10, transform=to_float)))
    assert batch["image"].dtype == torch.float32 and float(batch["image"].max()) <= 1.0


def _collate_fixed(items):
    """default_collate, leaving out the ragged column (its items differ in length)."""
    return torch.utils.data.default_collate([{k: v for k, v in it.items() if k != "sig"} for it in items])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_give_the_same_samples_as_indexing(cache, context):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader = torch.utils.data.DataLoader(prebake.open(cache.path), batch_size=50, num_workers=2,
                                             multiprocessing_context=context, collate_fn=_collate_fixed)
        labels = torch.cat([b["label"] for b in loader])
    assert labels.tolist() == list(range(len(cache)))


def test_a_list_index_is_one_batch_and_feeds_a_batch_sampler(cache):
    ds = prebake.open(cache.path)
    batch = ds[[7, -1, 0, 7]]
    assert batch["label"].tolist() == [7, len(ds) - 1, 0, 7]
    assert np.array_equal(batch["image"][1], ds[len(ds) - 1]["image"])
    assert [s.tolist() for s in batch["sig"]] == [[7] * 3, [300] * 0, [], [7] * 3]
    with pytest.raises(IndexError, match="index 301 out of range"):
        ds[[0, 301]]
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(ds), 64, drop_last=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=sampler, num_workers=2,
                                             collate_fn=lambda b: {k: v for k, v in b.items() if k != "sig"})
        labels = [b["label"].tolist() for b in loader]
    assert labels == [list(range(i, min(i + 64, len(ds)))) for i in range(0, len(ds), 64)]


@NEEDS_CUDA
@pytest.mark.parametrize("preload", [None, "device"])
def test_cuda_batches_match_the_cpu_ones(cache, preload):
    cpu = list(prebake.Loader(cache, 32, seed=4, columns=["image", "label"]))
    gpu = list(prebake.Loader(cache, 32, seed=4, columns=["image", "label"], device="cuda", preload=preload))
    assert all(g["image"].is_cuda and torch.equal(g["image"].cpu(), c["image"]) for c, g in zip(cpu, gpu))
    assert len(cpu) == len(gpu)
