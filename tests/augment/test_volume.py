"""3-D ops against plain torch (slicing, torch.flip, torch.rot90) and MONAI's ScaleIntensityRange, per sample.
The contract (p, eval, replay, no syncs, one graph) is tests/augment/test_contract.py's."""

from __future__ import annotations

import pytest
import torch

import prebake.augment as A
from tests.helpers.devices import DEVICES


def _batch(device, dtype=torch.int16, shape=(6, 2, 7, 9, 9)):
    g = torch.Generator().manual_seed(0)
    return torch.randint(-1000, 2000, shape, generator=g).to(dtype).to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_crop_reads_each_samples_box(device):
    x = _batch(device)
    op = A.RandomCrop3d((4, 5, 6)).train()
    out, params = op(x, generator=torch.Generator(device=device).manual_seed(1), return_params=True)
    for n in range(len(x)):
        d, h, w = params["start"][n].tolist()
        assert torch.equal(out[n], x[n, :, d:d + 4, h:h + 5, w:w + 6])
    assert len({tuple(s) for s in params["start"].tolist()}) > 1


@pytest.mark.parametrize("device", DEVICES)
def test_flip_equals_torch_flip_per_sample(device):
    x = _batch(device)
    op = A.RandomFlip3d(axes=(0, 2), p=0.5).train()
    out, params = op(x, generator=torch.Generator(device=device).manual_seed(2), return_params=True)
    for n in range(len(x)):
        dims = [2 + a for a, f in zip((0, 2), params["flip"][n].tolist()) if f]
        want = x[n:n + 1].flip(dims) if dims else x[n:n + 1]
        assert torch.equal(out[n:n + 1], want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axes", [(1, 2), (0, 1)])
def test_rotate90_equals_torch_rot90_per_sample(device, axes):
    shape = (8, 1, 6, 6, 5) if axes == (0, 1) else (8, 1, 5, 6, 6)
    x = _batch(device, shape=shape)
    op = A.RandomRotate90(axes, p=0.9).train()
    out, params = op(x, generator=torch.Generator(device=device).manual_seed(3), return_params=True)
    ks = params["k"].tolist()
    assert set(ks) > {0} or len(set(ks)) > 1
    for n, k in enumerate(ks):
        assert torch.equal(out[n], torch.rot90(x[n], k, dims=(1 + axes[0], 1 + axes[1])))


def test_intensity_and_noise_are_per_sample_affine_maps():
    x = _batch("cpu", torch.float32)
    out, params = A.RandomIntensity((0.5, 2.0), (-10, 10), p=1.0).train()(x, return_params=True)
    for n in range(len(x)):
        torch.testing.assert_close(out[n], x[n] * params["scale"][n] + params["shift"][n])
    noisy, p = A.GaussianNoise3d((1.0, 3.0), p=1.0).train()(x, return_params=True)
    torch.testing.assert_close(noisy, x + p["noise"] * p["std"].view(-1, 1, 1, 1, 1))


def test_intensity_window_matches_monai_scale_intensity_range():
    try:
        from monai.transforms import ScaleIntensityRange
    except ImportError:
        pytest.skip("monai is not installed (pip install -c constraints.txt monai): the MONAI comparison is skipped")
    x = _batch("cpu")
    out = A.IntensityWindow(-500, 1000, (0.0, 1.0))(x)
    ref = torch.stack([torch.as_tensor(ScaleIntensityRange(-500, 1000, 0.0, 1.0, clip=True)(v.float())) for v in x])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref.float(), atol=1e-6, rtol=0)


def test_bad_shapes_say_what_to_do():
    with pytest.raises(ValueError, match="larger than the volumes"):
        A.RandomCrop3d(20)(_batch("cpu"))
    with pytest.raises(ValueError, match="square plane"):
        A.RandomRotate90((0, 1))(_batch("cpu"))
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\)"):
        A.RandomFlip3d()(torch.zeros(2, 3, 4, 4))


def test_gaussian_noise_3d_on_a_cpu_draws_for_the_applied_samples_only():
    x = _batch("cpu", torch.float32, shape=(16, 1, 6, 6, 6))
    op = A.GaussianNoise3d((1.0, 3.0), p=0.5).train()
    out, params = op(x, generator=torch.Generator().manual_seed(4), return_params=True)
    applied, noise = params["apply"], params["noise"]
    assert 0 < int(applied.sum()) < len(x)
    assert torch.count_nonzero(noise[~applied]) == 0 and torch.equal(out[~applied], x[~applied])
    assert torch.count_nonzero(noise[applied]) == noise[applied].numel()
    expected = x + noise * params["std"].view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(out, expected)
