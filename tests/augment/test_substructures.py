"""SplitSubstructures against a per-sample reference: fixed fractions, stored S1/S2 bounds, lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import prebake.augment as A


def _signals(n: int, c: int, t: int) -> torch.Tensor:
    return torch.randn(n, c, t, generator=torch.Generator().manual_seed(0))


def _reference(x: torch.Tensor, bounds: torch.Tensor, width: int, fit: str) -> torch.Tensor:
    """One sample and one part at a time: slice, then zero-pad / cut, or interpolate to ``width``."""
    n, c, t = x.shape
    out = torch.zeros(n, bounds.shape[1] - 1, c, width)
    for i in range(n):
        for j in range(bounds.shape[1] - 1):
            a, b = int(bounds[i, j].clamp(0, t)), int(bounds[i, j + 1].clamp(0, t))
            part = x[i, :, a:max(a, b)]
            if part.shape[-1] == 0:
                continue
            if fit == "pad":
                out[i, j, :, :min(width, part.shape[-1])] = part[:, :width]
            else:
                out[i, j] = F.interpolate(part[None], size=width, mode="linear", align_corners=False)[0]
    return out


def test_equal_parts_are_a_reshape():
    x = _signals(5, 2, 120)
    out = A.SplitSubstructures()(x)  # no arguments: k=4, the heart-sound workload's S1, systole, S2, diastole
    assert out.shape == (5, 4, 2, 30)
    assert torch.equal(out, x.reshape(5, 2, 4, 30).transpose(1, 2))
    again, params = A.SplitSubstructures()(x, return_params=True)
    assert torch.equal(A.SplitSubstructures().apply(x, params), out) and torch.equal(again, out)  # the gather's
    assert out.data_ptr() != x.data_ptr()  # a copy, as the gather's: writing to a part leaves the signal alone


@pytest.mark.parametrize("fit", ["pad", "resample"])
def test_per_sample_bounds_match_the_reference(fit):
    x = _signals(6, 2, 200)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.integers(0, 230, size=(6, 3)), axis=1)  # some past T: clamped
    bounds = torch.tensor(np.concatenate([np.zeros((6, 1), int), cuts, np.full((6, 1), 200)], axis=1))
    bounds[2] = torch.tensor([10, 10, 50, 50, 190])  # empty parts
    op = A.SplitSubstructures(4, length=64, fit=fit)
    out, params = op(x, bounds=bounds, return_params=True)
    torch.testing.assert_close(out, _reference(x, bounds, 64, fit), atol=1e-5, rtol=0)
    assert torch.equal(op(x, params), out)  # replay


def test_fractions_apply_to_each_samples_valid_length():
    x = _signals(3, 1, 100)
    lengths = torch.tensor([100, 60, 8])
    op = A.SplitSubstructures(2, fractions=(1, 3), length=100)
    out = op(x, lengths=lengths)
    want = torch.tensor([[0, 25, 100], [0, 15, 60], [0, 2, 8]])
    torch.testing.assert_close(out, _reference(x, want, 100, "pad"))


def test_unknown_bounds_fall_back_to_the_fractions_per_sample():
    """Fallback windows of the bake carry -1 bounds: those rows are cut at the fractions."""
    x = _signals(2, 1, 40)
    bounds = torch.tensor([[0, 5, 10, 30, 40], [-1, -1, -1, -1, -1]])
    out = A.SplitSubstructures(4, length=30)(x, bounds=bounds)
    want = torch.tensor([[0, 5, 10, 30, 40], [0, 10, 20, 30, 40]])
    torch.testing.assert_close(out, _reference(x, want, 30, "pad"))


def test_baked_cycle_bounds_split_s1_systole_s2_diastole(tmp_path):
    """The S1 part of a baked cycle holds the S1 sound: it carries most of the first 150 ms's energy."""
    import soundfile as sf

    import prebake
    from prebake.synthetic import pcg

    (tmp_path / "h" / "a").mkdir(parents=True)
    x, _, _ = pcg(8, 2000, 70, 20, rng=np.random.default_rng(3))
    sf.write(tmp_path / "h" / "a" / "r.wav", 0.9 * x, 2000, subtype="PCM_16")
    cache = prebake.build(tmp_path / "h", tmp_path / "c", [prebake.steps.SegmentCycles(length=2000)], workers=0)
    batch = prebake.Elements(cache, "cycles")[list(range(4))]
    cycles = prebake.crop_or_pad(torch.from_numpy(batch["cycles"]), torch.from_numpy(batch["cycle_lengths"]),
                                 2000, crop="start")
    parts = A.SplitSubstructures(4, length=1000)(cycles, bounds=torch.from_numpy(batch["cycle_bounds"]))
    energy = parts.pow(2).sum(dim=(2, 3))  # (N, 4): S1, systole, S2, diastole
    assert (energy[:, 0] > 5 * energy[:, 1]).all() and (energy[:, 2] > 5 * energy[:, 3] / 4).all()


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"k=0"):
        A.SplitSubstructures(0)
    with pytest.raises(ValueError, match=r"fractions=\[1.0, 0.0\]"):
        A.SplitSubstructures(2, fractions=(1, 0))
    with pytest.raises(ValueError, match=r"fit='stretch'"):
        A.SplitSubstructures(fit="stretch")
    with pytest.raises(ValueError, match=r"bounds has shape \(2, 3\)"):
        A.SplitSubstructures(4)(_signals(2, 1, 40), bounds=torch.zeros(2, 3, dtype=torch.long))
