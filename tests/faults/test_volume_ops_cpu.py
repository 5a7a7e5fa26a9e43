"""Attacks on the one-sample-at-a-time CPU path of the 3-D geometric ops: empty batches, strided and
expanded inputs, channels-last memory, autograd, and a DeviceTransform that must never write the
Loader's batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import prebake.augment as A

OPS = {"crop": lambda: A.RandomCrop3d(16, p=0.8), "flip": lambda: A.RandomFlip3d(p=0.5),
       "rot90": lambda: A.RandomRotate90((1, 2), p=0.8)}


def _x(n: int = 4) -> torch.Tensor:
    return torch.arange(n * 2 * 18 * 18 * 18, dtype=torch.float32).reshape(n, 2, 18, 18, 18)


def _reference(name: str, x: torch.Tensor, params: dict) -> np.ndarray:
    """numpy's own flip/rot90/slicing of each sample, from the op's params."""
    out = []
    for n in range(len(x)):
        v = x[n].detach().numpy()
        if name == "crop":
            d, h, w = params["start"][n].tolist()
            v = v[:, d:d + 16, h:h + 16, w:w + 16]
        elif name == "flip":
            for a, f in enumerate(params["flip"][n].tolist()):
                v = np.flip(v, 1 + a) if f else v
        else:
            v = np.rot90(v, params["k"][n].item(), axes=(2, 3))
        out.append(v)
    return np.stack(out) if out else np.zeros((0,))


@pytest.mark.parametrize("name", OPS)
def test_an_empty_batch_gives_an_empty_batch(name):
    x = _x(0)
    out = OPS[name]().train()(x)
    assert out.shape[0] == 0 and out.shape[1:] == (x.shape[1:] if name != "crop" else (2, 16, 16, 16))


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("layout", ["permuted", "expanded", "channels_last_3d", "sliced"])
def test_strided_inputs_give_numpys_values(name, layout):
    base = _x()
    x = {"permuted": base.permute(0, 1, 2, 4, 3).contiguous().permute(0, 1, 2, 4, 3),
         "expanded": base[:1].expand(4, -1, -1, -1, -1),
         "channels_last_3d": base.contiguous(memory_format=torch.channels_last_3d),
         "sliced": _x(8)[::2]}[layout]
    before = x.clone()
    out, params = OPS[name]().train()(x, generator=torch.Generator().manual_seed(1), return_params=True)
    assert np.array_equal(out.numpy(), _reference(name, x, params))
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", ["flip", "rot90"])
def test_gradients_flow_back_through_the_moves(name):
    x = _x(3).requires_grad_()
    out, params = OPS[name]().train()(x, generator=torch.Generator().manual_seed(2), return_params=True)
    (out * torch.arange(out.numel(), dtype=torch.float32).reshape(out.shape)).sum().backward()
    weights = torch.arange(out.numel(), dtype=torch.float32).reshape(out.shape)
    # the gradient of a permutation is the inverse permutation of the weights: undo the move on them
    assert np.array_equal(x.grad.numpy().sum(), weights.numpy().sum())
    assert sorted(x.grad.flatten().tolist()) == sorted(weights.flatten().tolist())


def test_the_monai_device_transform_never_writes_the_loaders_batch():
    pytest.importorskip("monai")
    import monai.transforms as mt

    from prebake.integrations.monai import to_device_ops

    remainder = mt.Compose([*(mt.RandFlipd("image", prob=0.5, spatial_axis=a) for a in range(3)),
                            mt.RandRotate90d("image", prob=0.5, spatial_axes=(1, 2)),
                            mt.RandScaleIntensityd("image", factors=0.1, prob=0.5),
                            mt.RandShiftIntensityd("image", offsets=0.1, prob=0.5),
                            mt.RandGaussianNoised("image", prob=0.5, std=0.05)])
    ops, missing = to_device_ops(remainder)
    assert missing == []
    x = _x(6)
    before = x.clone()
    out = ops({"image": x}, torch.Generator().manual_seed(3))["image"]
    assert torch.equal(x, before) and out.data_ptr() != x.data_ptr()
    # the same draws, op by op through forward (no in-place writes), give the same values bit for bit
    g, y = torch.Generator().manual_seed(3), x
    for op in ops.ops:
        y = op(y, generator=g)
    assert torch.equal(out, y)
