"""crop_or_pad: a padded batch of ragged signals to the (N, C, T) float input of the signal ops, against a
per-sample numpy reference, with no loop over the samples."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import prebake
import prebake.augment as A

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]
LENGTHS = [0, 3, 10, 64, 100, 250, 64, 1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    return prebake.write_arrays(tmp_path_factory.mktemp("s") / "c", {
        "pcm": [rng.integers(-2**15, 2**15, n, dtype=np.int16) for n in LENGTHS],
        "stereo": [rng.standard_normal((n, 2)).astype(np.float32) for n in LENGTHS],
        "u8": [rng.integers(0, 256, n, dtype=np.uint8) for n in LENGTHS],
        "label": np.arange(len(LENGTHS)),
    })


def _reference(signal: np.ndarray, start: int, length: int, scale) -> np.ndarray:
    """One signal by hand: (C, length), zeros where the window leaves the signal."""
    sig = scale(signal.astype(np.float64))
    sig = sig[:, None] if sig.ndim == 1 else sig
    out = np.zeros((length, sig.shape[1]))  # padding is silence: 0 after scaling
    for t in range(length):
        if 0 <= start + t < len(sig):
            out[t] = sig[start + t]
    return out.T.astype(np.float32)


SCALES = {"pcm": lambda x: x / 32768, "stereo": lambda x: x, "u8": lambda x: (x - 128) / 128}


def _batch(cache, column, device):
    loader = prebake.Loader(cache, len(LENGTHS), shuffle=False, pad=True, device=device, columns=[column, "label"])
    return next(iter(loader))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("column", ["pcm", "stereo", "u8"])
@pytest.mark.parametrize("crop", ["start", "center"])
def test_fixed_crops_match_a_per_sample_reference(cache, column, crop, device):
    batch = _batch(cache, column, device)
    out = prebake.crop_or_pad(batch[column], batch[f"{column}_lengths"], 64, crop=crop)
    channels = 2 if column == "stereo" else 1
    assert out.shape == (len(LENGTHS), channels, 64) and out.dtype == torch.float32 and out.device.type == device
    for n, length in enumerate(LENGTHS):
        start = 0 if crop == "start" else (length - 64) // 2  # negative: centred, padded on both sides
        want = _reference(np.asarray(cache.column(column)[n]), start, 64, SCALES[column])
        assert np.allclose(out[n].cpu().numpy(), want, atol=1e-6), (n, length)


@pytest.mark.parametrize("crop", ["start", "center", "random"])
def test_the_input_batch_is_left_as_it_was(crop):
    x = torch.arange(1.0, 13.0).reshape(2, 6)  # float32: no conversion copy to write into
    before = x.clone()
    out = prebake.crop_or_pad(x, torch.tensor([6, 2]), 4, crop=crop)
    assert torch.equal(x, before) and int((out[1] != 0).sum()) == 2  # the short signal's 2 samples, zeros around


@pytest.mark.parametrize("device", DEVICES)
def test_random_crops_are_windows_of_each_signal_and_replay_with_the_generator(cache, device):
    batch = _batch(cache, "pcm", device)
    runs = [prebake.crop_or_pad(batch["pcm"], batch["pcm_lengths"], 8,
                                generator=torch.Generator(device).manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    starts = []
    for n, length in enumerate(LENGTHS):
        sig = np.asarray(cache.column("pcm")[n])
        fits = [s for s in range(max(length - 8, 0) + 1)
                if np.allclose(runs[0][n, 0].cpu().numpy(), _reference(sig, s, 8, SCALES["pcm"])[0])]
        assert fits, n  # the output is one window (or, for a short signal, the padded signal)
        starts.append(fits)
    draws = torch.stack([prebake.crop_or_pad(batch["pcm"], batch["pcm_lengths"], 8,
                                             generator=torch.Generator(device).manual_seed(s))[5, 0]
                         for s in range(40)])
    assert len({tuple(d.tolist()) for d in draws}) > 20  # the 250-sample signal is cut at many starts


def test_the_op_count_does_not_grow_with_the_batch():
    counts = []
    for n in (4, 64):
        x = torch.zeros(n, 300, dtype=torch.int16)
        lengths = torch.arange(n) * 5
        prebake.crop_or_pad(x, lengths, 100)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            prebake.crop_or_pad(x, lengths, 100)
        counts.append(Counter(e.name for e in prof.events() if e.name.startswith("aten::")))
    assert counts[0]["aten::gather"] == 1 and counts[0] == counts[1]


def test_output_feeds_the_signal_ops(cache):
    """Loader(pad=True) -> crop_or_pad -> the heart-sound workload's six signal ops, as one Loader transform."""
    aug = A.signal_pretrain_preset(sample_rate=2000)

    def transform(batch):
        return {"x": aug(prebake.crop_or_pad(batch["pcm"], batch["pcm_lengths"], 64)), "label": batch["label"]}

    batch = next(iter(prebake.Loader(cache, 4, pad=True, columns=["pcm", "label"], transform=transform)))
    assert batch["x"].shape == (4, 1, 64) and batch["x"].dtype == torch.float32 and torch.isfinite(batch["x"]).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(crop="left"), "crop='left' must be one of"),
    (dict(length=0), "length=0 must be an integer >= 1"),
])
def test_bad_arguments(kwargs, match):
    args = dict(x=torch.zeros(2, 5), lengths=torch.tensor([5, 3]), length=4) | kwargs
    with pytest.raises(prebake.ViewError, match=match):
        prebake.crop_or_pad(**args)
    with pytest.raises(prebake.ViewError, match="lengths of shape"):
        prebake.crop_or_pad(torch.zeros(2, 5), torch.tensor([5]), 4)
