"""Signal ops against per-sample references: rolls, masks, rfft bins, resampling, SNR; presets and views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import prebake.augment as A
from prebake.augment.spectral import num_bins


def _signals(n: int = 8, c: int = 2, t: int = 200, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, t, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_time_shift_roll_matches_torch_roll_per_sample():
    x = _signals(16)
    out, params = A.TimeShift(0.4, "roll", p=0.8)(x, generator=_gen(), return_params=True)
    shifts = params["shift"].tolist()
    assert len(set(shifts)) > 5 and max(map(abs, shifts)) <= 80
    for i, s in enumerate(shifts):
        assert torch.equal(out[i], torch.roll(x[i], s, dims=-1))


def test_time_shift_zero_fills_what_it_vacates():
    x = _signals(16)
    out, params = A.TimeShift(0.4, "zero", p=1.0)(x, generator=_gen(), return_params=True)
    for i, s in enumerate(params["shift"].tolist()):
        ref = torch.zeros_like(x[i])
        if s >= 0:
            ref[:, s:] = x[i, :, :200 - s]
        else:
            ref[:, :s] = x[i, :, -s:]
        assert torch.equal(out[i], ref)


def test_amplitude_scale_and_polarity_match_per_sample():
    x = _signals(16)
    out, params = A.AmplitudeScale((0.5, 2.0), p=0.5)(x, generator=_gen(), return_params=True)
    for i, s in enumerate(params["scale"].tolist()):
        assert torch.equal(out[i], x[i] * torch.tensor(s))
    out, params = A.PolarityInversion()(x, generator=_gen(), return_params=True)
    for i, flip in enumerate(params["apply"].tolist()):
        assert torch.equal(out[i], -x[i] if flip else x[i])


def test_time_mask_zeroes_exactly_its_spans():
    x = _signals(16) + 10  # no zeros of its own
    out, params = A.TimeMask(0.2, num_masks=3, p=1.0)(x, generator=_gen(), return_params=True)
    for i in range(16):
        ref = x[i].clone()
        for start, width in zip(params["start"][i].tolist(), params["width"][i].tolist()):
            assert 0 <= start and start + width <= 200 and width <= 40
            ref[:, start:start + width] = 0
        assert torch.equal(out[i], ref)
    assert (out == 0).any(dim=1).sum() > 16 * 10


def test_frequency_mask_zeroes_exactly_the_masked_rfft_bins():
    x = _signals(16, t=256)
    out, params = A.FrequencyMask(0.25, num_masks=2, p=1.0)(x, generator=_gen(), return_params=True)
    spectrum_in, spectrum_out = torch.fft.rfft(x.double()), torch.fft.rfft(out.double())
    scale = spectrum_in.abs().max()
    for i in range(16):
        masked = torch.zeros(num_bins(256), dtype=torch.bool)
        for start, width in zip(params["start"][i].tolist(), params["width"][i].tolist()):
            masked[start:start + width] = True
        assert masked.any()
        assert spectrum_out[i][:, masked].abs().max() < 1e-5 * scale  # float32 FFT round trip
        torch.testing.assert_close(spectrum_out[i][:, ~masked], spectrum_in[i][:, ~masked], atol=1e-5 * scale,
                                   rtol=0)
        ref = np.fft.irfft(np.where(masked.numpy(), 0, np.fft.rfft(x[i].numpy())), n=256)
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("op, inside", [
    (A.BandPass(1000, low_hz=(50, 100), high_hz=(200, 300), p=1.0), True),
    (A.BandStop(1000, center_hz=(150, 350), width_hz=(40, 120), p=1.0), False),
])
def test_band_masks_keep_or_zero_their_band(op, inside: bool):
    x = _signals(8, t=500)
    out, params = op(x, generator=_gen(), return_params=True)
    hz = torch.arange(num_bins(500)) * (1000 / 500)
    spectrum = torch.fft.rfft(out.double()).abs()
    for i, (low, high) in enumerate(params["band"].tolist()):
        band = (hz >= low) & (hz <= high)
        zeroed = ~band if inside else band
        assert zeroed.any() and spectrum[i][:, zeroed].max() < 1e-3
        assert spectrum[i][:, ~zeroed].min() > 0


def test_time_stretch_rate_1_is_the_identity():
    x = _signals(8, t=4000)
    params = {"apply": torch.ones(8, dtype=torch.bool), "rate": torch.ones(8)}
    assert torch.equal(A.TimeStretch().apply(x, params), x)
    assert torch.equal(A.TimeStretch(rate=(1.0, 1.0), p=1.0)(x, generator=_gen()), x)


@pytest.mark.parametrize("rate", [2.0, 1.25, 0.5, 0.8])
def test_time_stretch_matches_interpolate_then_crop_or_pad(rate: float):
    """Per sample: F.interpolate to T / rate (linear), then cut to T or zero-pad to T."""
    x = _signals(2, t=400)
    params = {"apply": torch.ones(2, dtype=torch.bool), "rate": torch.tensor([rate, rate])}
    out = A.TimeStretch().apply(x, params)
    length = round(400 / rate)
    ref = F.interpolate(x, size=length, mode="linear", align_corners=False)
    ref = ref[..., :400] if length >= 400 else F.pad(ref, (0, 400 - length))
    # the rate is a float32 param (0.8 -> 0.800000012); interpolate's scale is a double: 5e-5 apart at most
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_time_stretch_rates_differ_per_sample():
    x = _signals(16)
    _, params = A.TimeStretch((0.8, 1.25), p=1.0)(x, generator=_gen(), return_params=True)
    rates = params["rate"]
    assert rates.unique().numel() == 16 and 0.8 <= rates.min() and rates.max() <= 1.25


def test_gaussian_noise_reaches_the_requested_snr():
    x = _signals(32, c=1, t=4000) * 3
    out, params = A.GaussianNoise(snr_db=(5, 30), p=1.0)(x, generator=_gen(), return_params=True)
    noise = out - x
    snr = 10 * torch.log10(x.square().mean(dim=(1, 2)) / noise.square().mean(dim=(1, 2)))
    torch.testing.assert_close(snr, params["level"], atol=0.3, rtol=0)
    out, params = A.GaussianNoise(std=(0.1, 0.5), p=1.0)(x, generator=_gen(), return_params=True)
    torch.testing.assert_close((out - x).std(dim=(1, 2)), params["level"], atol=0.02, rtol=0)


def test_signal_ops_keep_half_precision_dtypes():
    x = _signals().to(torch.bfloat16)
    out = A.signal_pretrain_preset(1000, p=1.0)(x, generator=_gen())
    assert out.dtype == torch.bfloat16 and out.shape == x.shape


def test_signal_preset_is_seed_004s_six_ops():
    preset = A.signal_pretrain_preset(5000)
    names = [type(op).__name__ for op in preset.ops]
    assert names == ["TimeShift", "AmplitudeScale", "GaussianNoise", "TimeMask", "FrequencyMask", "TimeStretch"]
    assert math.isclose(preset.ops[4].max_width, 250 / 2500)


def test_two_views_differ_and_replay():
    x = _signals(8)
    views = A.TwoViews(A.signal_pretrain_preset(1000, p=1.0))
    (v1, v2), params = views(x, generator=_gen(), return_params=True)
    assert not torch.equal(v1, v2)
    r1, r2 = views(x, params)
    assert torch.equal(r1, v1) and torch.equal(r2, v2)
    e1, e2 = views.eval()(x)
    assert torch.equal(e1, x) and torch.equal(e2, x)


def test_two_views_in_one_pass_equal_two_passes_with_their_params():
    x = _signals(8)
    views = A.TwoViews(A.signal_pretrain_preset(1000, p=0.5))
    assert views.one_pass
    (v1, v2), params = views(x, generator=_gen(), return_params=True)
    assert params["view1"]["2"]["noise"].shape == x.shape  # each view's params: N rows, as before
    two = A.TwoViews(A.signal_pretrain_preset(1000, p=0.5))
    two.one_pass = False  # one pipeline call per view, the same params
    r1, r2 = two(x, params)
    torch.testing.assert_close(r1, v1)  # to the rounding of GaussianNoise's RMS over 2N rows or N
    torch.testing.assert_close(r2, v2)
    assert torch.equal(views(x, params)[0], v1)  # a replay in one pass: bit for bit


def test_two_views_with_a_mix_op_take_two_passes():
    views = A.TwoViews([A.RandomHorizontalFlip(), A.MixUp(alpha=0.4, num_classes=3)])
    assert not views.one_pass  # MixUp pairs samples: in one pass view 1's would pair with view 2's


def test_one_of_picks_one_op_per_sample():
    x = _signals(32) + 10
    op = A.OneOf([A.PolarityInversion(p=1.0), A.TimeMask(0.5, p=1.0)], weights=[1, 3], p=0.9)
    out, params = op(x, generator=_gen(), return_params=True)
    inverted = (out < 0).all(dim=-1).all(dim=-1)
    masked = (out == 0).any(dim=-1).any(dim=-1)
    choice, apply = params["choice"], params["apply"]
    assert torch.equal(inverted, apply & (choice == 0))
    assert torch.equal(masked, apply & (choice == 1) & (params["1"]["width"][:, 0] > 0))
    assert 0 < inverted.sum() < masked.sum()


def test_signal_inputs_are_checked():
    with pytest.raises(TypeError, match=r"torch.int16.*x.float\(\) / 32768"):
        A.TimeShift()(torch.zeros(2, 1, 10, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"\(N, C, T\), got shape \(2, 10\).*unsqueeze"):
        A.TimeMask()(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="one of std=.*not both"):
        A.GaussianNoise(std=(0.1, 0.2), snr_db=(10, 20))
    with pytest.raises(ValueError, match=r"mode='wrap'"):
        A.TimeShift(mode="wrap")
    with pytest.raises(ValueError, match=r"max_width=1.5"):
        A.TimeMask(max_width=1.5)
    with pytest.raises(ValueError, match=r"sample_rate=0"):
        A.signal_pretrain_preset(0)


@pytest.mark.parametrize("make", [A.GaussianNoise, A.BandPass, A.BandStop, A.TimeShift, A.AmplitudeScale,
                                  A.TimeMask, A.FrequencyMask, A.TimeStretch, A.PolarityInversion])
def test_every_signal_op_builds_with_no_arguments(make):
    """Defaults from the heart-sound workload's pretraining config: 5 kHz signals, 20-40 dB SNR noise."""
    op = make()
    x = _signals(4, 1, 400)
    assert op(x, generator=_gen()).shape == x.shape
    if make in (A.BandPass, A.BandStop):
        assert op.sample_rate == 5000.0
    if make is A.GaussianNoise:
        assert op.by_snr and tuple(op.level) == (20.0, 40.0)


# On a CPU the costliest ops compute only the samples whose coin came up (base.on_applied);
# elsewhere every sample goes through, with neutral params or a blend. Both paths, same params.
ROW_OPS = [
    pytest.param(lambda: A.TimeStretch((0.7, 1.4), p=0.5), id="TimeStretch"),
    pytest.param(lambda: A.FrequencyMask(0.3, num_masks=2, p=0.5), id="FrequencyMask"),
    pytest.param(lambda: A.BandPass(1000, (20, 60), (200, 400), p=0.5), id="BandPass"),
    pytest.param(lambda: A.BandStop(1000, (50, 300), (20, 80), p=0.5), id="BandStop"),
    pytest.param(lambda: A.GaussianNoise(snr_db=(5, 20), p=0.5), id="GaussianNoise"),
]


def _every_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the path of a device where the coins are not read (CUDA's) on this CPU."""
    import prebake.augment.base as base

    monkeypatch.setattr(base, "applied_rows", lambda apply: None)


@pytest.mark.parametrize("make", ROW_OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_applied_rows_only_equal_every_sample(make, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch):
    op = make()
    x = _signals(16, t=300).to(dtype)
    rows_only, params = op(x, generator=_gen(3), return_params=True)
    applied = params["apply"]
    assert 0 < int(applied.sum()) < len(x)  # some samples apply, some do not
    assert torch.equal(rows_only[~applied], x[~applied])  # untouched, bit for bit
    assert not torch.equal(rows_only[applied], x[applied])
    _every_sample(monkeypatch)
    torch.testing.assert_close(op(x, params), rows_only, atol=1e-6 if dtype == torch.float32 else 1e-2, rtol=0)


def test_time_stretch_on_a_cpu_computes_only_the_applied_samples(monkeypatch: pytest.MonkeyPatch):
    seen: list[int] = []
    stretch = A.TimeStretch._stretch
    counted = staticmethod(lambda x, rate: seen.append(len(x)) or stretch(x, rate))
    monkeypatch.setattr(A.TimeStretch, "_stretch", counted)
    op = A.TimeStretch(p=0.5)
    _, params = op(_signals(32), generator=_gen(1), return_params=True)
    assert seen == [int(params["apply"].sum())] and 0 < seen[0] < 32
    op(_signals(32), {**params, "apply": torch.zeros(32, dtype=torch.bool)})  # no sample: nothing computed
    assert len(seen) == 1


def test_gaussian_noise_on_a_cpu_draws_noise_for_the_applied_samples_only():
    _, params = A.GaussianNoise(std=(0.1, 0.2), p=0.5)(_signals(32), generator=_gen(2), return_params=True)
    applied, noise = params["apply"], params["noise"]
    assert 0 < int(applied.sum()) < 32
    assert torch.count_nonzero(noise[~applied]) == 0
    assert torch.count_nonzero(noise[applied]) == noise[applied].numel()
    assert abs(float(noise[applied].std()) - 1.0) < 0.05  # standard normals


def test_a_pipeline_writes_its_own_intermediate_in_place(monkeypatch: pytest.MonkeyPatch):
    """After TimeShift (a new tensor), the other five ops of the heart-sound preset write into that one tensor."""
    made: list[int] = []
    shift = A.TimeShift.apply
    monkeypatch.setattr(A.TimeShift, "apply", lambda self, x, p: (lambda y: made.append(y.data_ptr()) or y)(
        shift(self, x, p)))
    x = _signals(16, 1, 400)
    before = x.clone()
    out = A.signal_pretrain_preset(1000, p=0.9)(x, generator=_gen(1))
    assert made and out.data_ptr() == made[0]  # no other batch-sized output was made
    assert torch.equal(x, before)


def test_a_view_of_the_input_is_not_written():
    """An op that returns a view of its input (the first samples, a crop by slicing) leaves the next op
    nothing of its own to write into."""
    from prebake.augment.signal import SignalOp

    class Head(SignalOp):
        random = False

        def __init__(self, n: int | None, end: int | None):
            super().__init__()
            self.n, self.end = n, end

        def apply(self, x, params):  # type: ignore[override]
            return x[:self.n, :, :self.end]  # contiguous for the first samples, strided for a crop in time

    for n, end in [(5, None), (None, 100)]:
        x = _signals(8, 1, 200)
        before = x.clone()
        pipeline = A.Compose([Head(n, end), A.AmplitudeScale((2.0, 3.0), p=1.0), A.TimeMask(0.5, p=1.0)])
        out, params = pipeline(x, generator=_gen(), return_params=True)
        pipeline(x, params)  # the replay path
        assert torch.equal(x, before) and not torch.equal(out, x[:n, :, :end])


def test_a_pipeline_on_a_tensor_that_needs_gradients_stays_out_of_place():
    x = _signals(8, 1, 200).requires_grad_()
    pipeline = A.Compose([A.TimeShift(p=1.0), A.AmplitudeScale(p=1.0), A.GaussianNoise(p=1.0), A.TimeMask(p=1.0),
                          A.TimeStretch(p=1.0)])
    out = pipeline(x, generator=_gen())
    out.square().sum().backward()  # an in-place write autograd needed would raise here
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("channels", [1, 3])
def test_zero_spans_zeroes_what_span_mask_marks(channels: int):
    from prebake.augment.signal import span_mask, zero_spans

    g = _gen(5)
    start = torch.randint(0, 120, (9, 3), generator=g)
    width = torch.randint(0, 40, (9, 3), generator=g)  # overlapping spans, and spans running past the end
    width[0] = 0  # a sample without a span
    x = _signals(9, channels, 128)
    want = x.masked_fill(span_mask(start, width, 128)[:, None, :], 0)
    assert torch.equal(zero_spans(x.clone(), start, width), want)
    assert torch.equal(zero_spans(x.clone(), start, torch.zeros_like(width)), x)


@pytest.mark.parametrize("channels", [1, 2])
def test_windows_of_a_contiguous_batch_equal_the_strided_path(channels: int):
    from prebake.augment.signal import windows

    x = _signals(6, channels, 50)
    start = torch.tensor([0, 3, 10, 20, 25, 30])
    got = windows(x, start, 20)
    strided = windows(x.transpose(0, 1).contiguous().transpose(0, 1), start, 20)  # same values, not contiguous
    want = torch.stack([x[n, :, s:s + 20] for n, s in enumerate(start.tolist())])
    assert torch.equal(got, want) and torch.equal(strided, want)
