"""prebake.Stage on its own: batched outputs equal the model applied item by item; the identity follows
the weights by value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prebake.bake.stages import Stage, tensor_digests
from prebake.errors import OptionError, PrebakeError

from tests.helpers.devices import DEVICES


def _clips(n: int = 7, dim: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, 9)), dim)).astype(np.float32) for _ in range(n)]


class FrameEncoder(torch.nn.Module):
    """Per frame: the same Linear on every row (concat mode)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3, 5)

    def forward(self, batch):
        return {"latent": self.proj(batch["frames"])}


class ClipEncoder(torch.nn.Module):
    """Per clip: a masked mean over frames (pad mode, one row per item) and a per-frame conv (ragged)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv1d(3, 4, 3, padding=1)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, batch):
        x, lengths = batch["frames"], batch["frames_lengths"]
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).float()[..., None]
        mean = (x * mask).sum(1) / lengths[:, None].clamp_min(1)
        per_frame = self.conv((x * mask).transpose(1, 2)).transpose(1, 2) * self.scale
        return {"clip": mean * self.scale, "conv": per_frame, "conv_lengths": lengths}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_concat_mode_equals_the_model_per_item(device, batch_size):
    enc, clips = FrameEncoder(), _clips()
    out = Stage(enc, ("frames",), ("latent",), batch_size=batch_size, device=device).run({"frames": clips})
    assert [o.shape for o in out["latent"]] == [(len(c), 5) for c in clips]
    for o, c in zip(out["latent"], clips):
        ref = enc.to(device)({"frames": torch.from_numpy(c).to(device)})["latent"].detach().cpu().numpy()
        np.testing.assert_allclose(o, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_pad_mode_gives_per_item_and_ragged_outputs(device, batch_size):
    enc, clips = ClipEncoder(), _clips(seed=3)
    out = Stage(enc, ("frames",), ("clip", "conv"), batch_size=batch_size, device=device, ragged="pad").run(
        {"frames": clips})
    assert out["clip"].shape == (len(clips), 3) and [o.shape for o in out["conv"]] == [(len(c), 4) for c in clips]
    for k, c in enumerate(clips):
        one = enc.to(device)({"frames": torch.from_numpy(c)[None].to(device),
                              "frames_lengths": torch.tensor([len(c)], device=device)})
        np.testing.assert_allclose(out["clip"][k], one["clip"][0].detach().cpu().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["conv"][k], one["conv"][0].detach().cpu().numpy(), rtol=1e-5, atol=1e-5)


def test_fixed_inputs_and_several_columns():
    stage = Stage(lambda b: {"s": b["a"] + b["b"], "p": b["a"] * b["b"]}, ("a", "b"), ("s", "p"), batch_size=2,
                  device="cpu")
    a, b = np.arange(5.0), np.arange(5.0) * 10
    out = stage.run({"a": a, "b": b, "unused": np.zeros(5)})
    assert out["s"].tolist() == (a + b).tolist() and out["p"].tolist() == (a * b).tolist()


def test_bfloat16_autocast_runs_and_arrives_as_float32():
    enc = FrameEncoder()
    out = Stage(enc, ("frames",), ("latent",), device="cpu", dtype=torch.bfloat16).run({"frames": _clips(3)})
    assert out["latent"][0].dtype == np.float32
    ref = Stage(enc, ("frames",), ("latent",), device="cpu").run({"frames": _clips(3)})
    np.testing.assert_allclose(out["latent"][0], ref["latent"][0], rtol=0.05, atol=0.05)


ENCODER = torch.nn.Linear(3, 2)  # a module held at module level, as seed 003's scripts do


def _uses_module_level_encoder(batch):
    return {"y": ENCODER(batch["x"])}


def test_identity_follows_weights_and_buffers_by_value():
    enc = ClipEncoder()
    before = Stage(enc, ("frames",), ("clip",), ragged="pad").describe()
    assert before == Stage(ClipEncoder(), ("frames",), ("clip",), ragged="pad", batch_size=7).describe()
    with torch.no_grad():
        enc.conv.weight[0, 0, 0] += 1
    after = Stage(enc, ("frames",), ("clip",), ragged="pad").describe()
    changed = [k for k in before["weights"] if before["weights"][k] != after["weights"][k]]
    assert changed == ["ClipEncoder.conv.weight"]
    enc.scale.fill_(3.0)
    assert Stage(enc, ("frames",), ("clip",), ragged="pad").describe()["weights"]["ClipEncoder.scale"] != \
        after["weights"]["ClipEncoder.scale"]
    digests = tensor_digests(_uses_module_level_encoder)
    assert set(digests) == {"Linear.weight", "Linear.bias"}
    with torch.no_grad():
        ENCODER.bias.zero_()
    assert tensor_digests(_uses_module_level_encoder)["Linear.bias"] != digests["Linear.bias"]


def test_bad_stages_say_what_and_how():
    with pytest.raises(OptionError, match="ragged='sum'"):
        Stage(lambda b: b, ("x",), ("y",), ragged="sum")
    with pytest.raises(OptionError, match="also its inputs"):
        Stage(lambda b: b, ("x",), ("x",))
    with pytest.raises(OptionError, match="batch_size must be a positive integer"):
        Stage(lambda b: b, ("x",), ("y",), batch_size=0)
    with pytest.raises(PrebakeError, match=r"must return a dict with \['y'\], returned \['z'\]"):
        Stage(lambda b: {"z": b["x"]}, ("x",), ("y",), device="cpu").run({"x": np.zeros(2)})
    with pytest.raises(PrebakeError, match="one row per input row"):
        Stage(lambda b: {"y": b["f"][:1]}, ("f",), ("y",), device="cpu").run({"f": _clips(2)})
    with pytest.raises(PrebakeError, match=r"reads \['x'\], which no item or earlier stage has"):
        Stage(lambda b: b, ("x",), ("y",), device="cpu").run({"a": np.zeros(2)})
