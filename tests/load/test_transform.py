"""Loader transforms: a per-batch generator makes random transforms independent of thread timing and exact on
resume; transform_in_threads runs them on the gather threads (CPU) with the same results."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import prebake
from prebake.augment import GaussianNoise, TimeShift, TwoViews
from prebake.augment.compose import Compose


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 90
    return prebake.write_arrays(tmp_path_factory.mktemp("tr") / "c", {
        "sig": rng.standard_normal((n, 1, 64)).astype(np.float32),
        "label": np.arange(n, dtype=np.int64),
    })


class Views(torch.nn.Module):
    """Two augmented views of each signal, drawn from the generator the Loader gives."""

    def __init__(self):
        super().__init__()
        self.views = TwoViews(Compose([TimeShift(0.2, "roll", p=0.5), GaussianNoise(snr_db=(5.0, 20.0), p=0.7)]))
        self.threads: set[str] = set()

    def forward(self, batch, generator=None):
        self.threads.add(threading.current_thread().name)
        v1, v2 = self.views(batch["sig"], generator=generator)
        return {"v1": v1, "v2": v2, "label": batch["label"]}


def _run(cache, epochs=2, **kw):
    loader = prebake.Loader(cache, 8, seed=3, transform=kw.pop("transform", None) or Views(), **kw)
    return [b for _ in range(epochs) for b in loader]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("kw", [dict(threads=1, prefetch=1), dict(threads=3, prefetch=4),
                                dict(threads=1, transform_in_threads=True),
                                dict(threads=3, prefetch=5, transform_in_threads=True)])
def test_draws_do_not_depend_on_threads_or_where_the_transform_runs(cache, kw):
    _same(_run(cache, threads=2), _run(cache, **kw))


def test_the_transform_runs_on_the_gather_threads_when_asked(cache):
    main, threaded = Views(), Views()
    _run(cache, 1, transform=main)
    _run(cache, 1, transform=threaded, transform_in_threads=True)
    assert main.threads == {threading.current_thread().name}
    assert threaded.threads and all(t.startswith("prebake-loader") for t in threaded.threads)


def test_each_batch_epoch_and_rank_draws_anew(cache):
    first = _run(cache, 2)
    steps = len(first) // 2
    assert not torch.equal(first[0]["v1"], first[0]["v2"])  # two views, two draws
    noise = [b["v1"] - b["v2"] for b in first]
    assert len({float(n.abs().sum()) for n in noise}) == len(noise)
    other_rank = prebake.Loader(cache, 8, seed=3, transform=Views(), rank=1, world_size=2)
    assert not torch.equal(next(iter(other_rank))["v1"], first[0]["v1"])
    assert steps > 1


@pytest.mark.parametrize("threaded", [False, True])
def test_resume_augments_the_remaining_batches_exactly(cache, threaded):
    whole = _run(cache, 2, transform_in_threads=threaded)
    loader = prebake.Loader(cache, 8, seed=3, transform=Views(), transform_in_threads=threaded)
    it = iter(loader)
    head = [next(it) for _ in range(5)]
    state = loader.state_dict()
    del it
    again = prebake.Loader(cache, 8, seed=3, transform=Views(), transform_in_threads=threaded)
    again.load_state_dict(state)
    rest = list(again) + list(again)
    _same(whole, head + rest)


def test_a_transform_without_a_generator_gets_the_batch_alone(cache):
    calls = []
    out = _run(cache, 1, transform=lambda b: calls.append(1) or {"x": b["sig"] * 2}, transform_in_threads=True)
    assert len(calls) == len(out) and all("x" in b for b in out)


def test_an_error_in_a_threaded_transform_reaches_the_loop(cache):
    def bad(batch, generator=None):
        raise ValueError("broken transform")

    with pytest.raises(ValueError, match="broken transform"):
        _run(cache, 1, transform=bad, transform_in_threads=True)
