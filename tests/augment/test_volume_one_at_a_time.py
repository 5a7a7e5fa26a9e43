"""The CPU path of the 3-D geometric ops (``per_volume``: one sample at a time, for samples of at least
``PER_VOLUME_FROM`` voxels) against numpy's flip, rot90 and slicing, from the same params."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import prebake.augment as A
from prebake.augment.volume import PER_VOLUME_FROM

DTYPES = [torch.uint8, torch.int16, torch.float32]
BIG = (5, 2, 16, 17, 17)  # 9,248 voxels a sample: the one-at-a-time path


def _batch(dtype: torch.dtype, shape=BIG) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 250, shape, generator=g).to(dtype)


def _run(op: A.Op, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict]:
    return op.train()(x, generator=torch.Generator().manual_seed(seed), return_params=True)


def test_the_test_shape_takes_the_one_at_a_time_path():
    assert np.prod(BIG[1:]) >= PER_VOLUME_FROM and np.prod((2, 8, 8, 8)) < PER_VOLUME_FROM


@pytest.mark.parametrize("dtype", DTYPES)
def test_flip_equals_numpy_flip(dtype):
    x = _batch(dtype)
    out, params = _run(A.RandomFlip3d(axes=(0, 1, 2), p=0.5), x, 2)
    flips = params["flip"].tolist()
    assert any(any(r) for r in flips) and not all(all(r) for r in flips)
    for n, row in enumerate(flips):
        want = x[n].numpy()
        for a, f in zip((0, 1, 2), row):
            want = np.flip(want, 1 + a) if f else want
        assert out.dtype == dtype and np.array_equal(out[n].numpy(), want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axes", [(1, 2), (0, 1), (2, 0)])
def test_rotate90_equals_numpy_rot90(dtype, axes):
    shape = (6, 1, 17, 17, 16) if 2 not in axes else (6, 1, 16, 17, 17) if axes == (1, 2) else (6, 1, 17, 16, 17)
    x = _batch(dtype, shape)
    out, params = _run(A.RandomRotate90(axes, p=0.8), x, 3)
    ks = params["k"].tolist()
    assert len(set(ks)) > 1
    for n, k in enumerate(ks):
        assert np.array_equal(out[n].numpy(), np.rot90(x[n].numpy(), k, axes=(1 + axes[0], 1 + axes[1])))


@pytest.mark.parametrize("dtype", DTYPES)
def test_crop_equals_numpy_slicing(dtype):
    x = _batch(dtype, (5, 2, 20, 21, 22))
    out, params = _run(A.RandomCrop3d((16, 15, 14), p=0.7), x, 4)
    assert out.shape == (5, 2, 16, 15, 14)
    for n, (d, h, w) in enumerate(params["start"].tolist()):
        assert np.array_equal(out[n].numpy(), x[n].numpy()[:, d:d + 16, h:h + 15, w:w + 14])


@pytest.mark.parametrize("op", [A.RandomFlip3d(p=0.6), A.RandomRotate90((1, 2), p=0.6)], ids=["flip", "rot90"])
def test_in_place_equals_apply_and_apply_leaves_the_input(op):
    x = _batch(torch.float32)
    before = x.clone()
    params = op.sample_params(tuple(x.shape), x.device, torch.Generator().manual_seed(5))
    expected = op.apply(x, params)
    assert torch.equal(x, before) and expected.data_ptr() != x.data_ptr()
    y = x.clone()
    got = op.apply_inplace(y, params)
    assert got.data_ptr() == y.data_ptr() and torch.equal(got, expected)


def test_a_compose_of_the_three_equals_the_ops_one_by_one():
    x = _batch(torch.int16, (4, 1, 20, 20, 20))
    ops = [A.RandomCrop3d(16, p=0.9), A.RandomFlip3d(p=0.5), A.RandomRotate90((1, 2), p=0.7)]
    out, params = A.Compose(ops).train()(x, generator=torch.Generator().manual_seed(6), return_params=True)
    y = x
    for i, op in enumerate(ops):
        y = op.apply(y, params[str(i)])
    assert torch.equal(out, y)
