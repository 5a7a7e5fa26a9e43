"""Frequency-domain masks on ``(N, C, T)`` signals: one batched ``rfft``, a mask, one ``irfft``.

Each sample keeps its own set of rfft bins (``T // 2 + 1`` of them, bin ``k`` at
``k * sample_rate / T`` Hz); the masked bins are zeroed exactly. A brick-wall mask
rings (Gibbs) where a Butterworth ``filtfilt``, as the heart-sound workload ran per sample on the
CPU, would roll off; for augmentation that is the point, and it costs two FFTs
per batch. The FFTs run in float32 (CPU has no half FFT, CUDA only for powers of
two); output dtype: the input's. Samples without the ``p`` coin are passed
through untouched, not through the FFT round trip; on a CPU they are not
transformed at all (:func:`~prebake.augment.base.on_applied`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .base import (
    Device,
    Params,
    check_range,
    lerp_range,
    on_applied,
    on_applied_inplace,
    restore_dtype,
    take_rows,
    to_float32,
    uniform,
)
from .signal import SignalOp, SpanOp, span_mask

#: BandPass and BandStop assume this rate (Hz) unless told: the heart-sound workload's heart sounds at 5 kHz.
DEFAULT_SAMPLE_RATE = 5000.0


def num_bins(length: int) -> int:
    """How many rfft bins a length-``length`` signal has."""
    return length // 2 + 1


def keep_bins(x: Tensor, keep: Tensor) -> Tensor:
    """Zero the rfft bins where ``keep`` ``(N, T // 2 + 1)`` is False, per sample, and transform back."""
    spectrum = torch.fft.rfft(to_float32(x), dim=-1).masked_fill_(~keep[:, None, :], 0)
    return restore_dtype(torch.fft.irfft(spectrum, n=x.shape[-1], dim=-1), x.dtype)


class FrequencyMask(SpanOp):
    """Zero ``num_masks`` random bands of rfft bins per sample, each up to ``max_width`` of the bins.

    ``max_width`` is a fraction of the ``T // 2 + 1`` bins, so the op needs no
    sample rate (``signal_pretrain_preset`` converts Hz). Output dtype: the input's.
    """

    def __init__(self, max_width: float = 0.1, num_masks: int = 1, p: float = 0.5):
        super().__init__(max_width, num_masks, p)

    def span_length(self, batch_shape: Sequence[int]) -> int:
        return num_bins(batch_shape[-1])

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        return on_applied(params["apply"], x, self._masked(params))

    def apply_inplace(self, x: Tensor, params: Params) -> Tensor:
        return on_applied_inplace(params["apply"], x, self._masked(params))

    @staticmethod
    def _masked(params: Params) -> Callable[[Tensor, Tensor | None], Tensor]:
        def masked(xs: Tensor, rows: Tensor | None) -> Tensor:
            p = take_rows(params, rows)
            return keep_bins(xs, ~span_mask(p["start"], p["width"], num_bins(xs.shape[-1])))
        return masked


class _Band(SignalOp):
    """Per-sample bands ``(N, 2)`` = (low Hz, high Hz): keep them (pass) or zero them (stop)."""

    stop: bool

    def __init__(self, sample_rate: float, p: float):
        super().__init__(p)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate={sample_rate!r} must be > 0 Hz, e.g. 5000")
        self.sample_rate = float(sample_rate)

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        return on_applied(params["apply"], x, self._filtered(x, params))

    def apply_inplace(self, x: Tensor, params: Params) -> Tensor:
        return on_applied_inplace(params["apply"], x, self._filtered(x, params))

    def _filtered(self, x: Tensor, params: Params) -> Callable[[Tensor, Tensor | None], Tensor]:
        length = x.shape[-1]
        hz = torch.arange(num_bins(length), device=x.device, dtype=torch.float32) * (self.sample_rate / length)

        def filtered(xs: Tensor, rows: Tensor | None) -> Tensor:
            band = take_rows(params, rows)["band"]
            inside = (hz >= band[:, :1]) & (hz <= band[:, 1:])
            return keep_bins(xs, ~inside if self.stop else inside)
        return filtered


class BandPass(_Band):
    """Keep only the bins between a per-sample low cut in ``low_hz`` and high cut in ``high_hz``.

    Both ranges are (min, max) in Hz; draw them below ``sample_rate / 2``. ``sample_rate``
    is the signals' rate in Hz (default :data:`DEFAULT_SAMPLE_RATE`, the heart-sound workload's 5 kHz:
    pass yours, since the bands are in Hz).
    Output dtype: the input's.
    """

    stop = False

    def __init__(self, sample_rate: float = DEFAULT_SAMPLE_RATE, low_hz: Sequence[float] = (20.0, 50.0),
                 high_hz: Sequence[float] = (400.0, 800.0), p: float = 0.5):
        super().__init__(sample_rate, p)
        self.low_hz = check_range(low_hz, "low_hz", low=0.0)
        self.high_hz = check_range(high_hz, "high_hz", low=self.low_hz[1])

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        u = uniform((batch_shape[0], 3), device, generator)
        band = torch.stack([lerp_range(u[:, 1], *self.low_hz), lerp_range(u[:, 2], *self.high_hz)], dim=1)
        return {"apply": self.coin(u[:, 0]), "band": band}

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, low_hz={self.low_hz}, high_hz={self.high_hz}, p={self.p}"


class BandStop(_Band):
    """Zero a band per sample: centre drawn from ``center_hz``, width from ``width_hz`` (both in Hz).

    ``sample_rate`` is the signals' rate in Hz (default :data:`DEFAULT_SAMPLE_RATE`, seed
    004's 5 kHz). Output dtype: the input's.
    """

    stop = True

    def __init__(self, sample_rate: float = DEFAULT_SAMPLE_RATE, center_hz: Sequence[float] = (50.0, 500.0),
                 width_hz: Sequence[float] = (10.0, 100.0), p: float = 0.5):
        super().__init__(sample_rate, p)
        self.center_hz = check_range(center_hz, "center_hz", low=0.0)
        self.width_hz = check_range(width_hz, "width_hz", low=0.0)

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        u = uniform((batch_shape[0], 3), device, generator)
        centre, half = lerp_range(u[:, 1], *self.center_hz), lerp_range(u[:, 2], *self.width_hz) / 2
        return {"apply": self.coin(u[:, 0]), "band": torch.stack([centre - half, centre + half], dim=1)}

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, center_hz={self.center_hz}, width_hz={self.width_hz}, p={self.p}"
