"""A cache's bytes do not depend on how many workers baked it: a step whose float result depends on the
torch thread count (a reduction's partial sums, MONAI's NormalizeIntensityd) gives the same values in this
process as in forked workers, which bake with one thread each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import prebake


class Signals(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> dict:
        return {"x": np.random.default_rng(i).standard_normal(1_000_003).astype(np.float32)}


def total(item: dict) -> dict:
    return {"total": torch.as_tensor(item["x"]).sum().numpy()}  # split across the threads there are


def test_one_worker_and_two_bake_the_same_float_sums(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.as_tensor(Signals()[0]["x"])
        two = x.sum().item()
        torch.set_num_threads(1)
        if x.sum().item() == two:
            pytest.skip("this torch build sums the same with 1 and 2 threads: nothing to tell apart")
        torch.set_num_threads(2)  # the caller's setting while it builds
        here = prebake.build(Signals(), tmp_path / "here", [total], workers=0, progress=False)
        forked = prebake.build(Signals(), tmp_path / "forked", [total], workers=2, progress=False)
        assert torch.get_num_threads() == 2  # the in-process build gives the caller its threads back
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(np.asarray(here.column("total")), np.asarray(forked.column("total")))
    assert here.manifest["fingerprint"]["digest"] == forked.manifest["fingerprint"]["digest"]
