"""Bake-time transforms of 1-D signals (``item["signal"]``, ``(T,)`` or ``(T, C)``).

Resample is numpy alone (:mod:`prebake.sources.polyphase`: scipy.signal's import would cost a worker more than a
build's start-up budget); BandPass needs scipy (``pip install 'prebake[audio]'``), imported only when used.
Outputs keep the input's dtype: integer PCM is rounded and clipped back to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import BadItemError, PrebakeError
from ..sources.polyphase import resample_poly, samples_as
from .base import Step, number_field, size_field

Item = dict[str, Any]


def _scipy_signal() -> Any:
    try:
        import scipy.signal
    except ImportError:
        raise PrebakeError(
            "band-pass filtering needs scipy: pip install 'prebake[audio]' (or pip install scipy)"
        ) from None
    return scipy.signal


def _signal_and_rate(item: Item) -> tuple[np.ndarray, int]:
    if "signal" not in item or "sample_rate" not in item:
        raise BadItemError("needs 'signal' and 'sample_rate' columns for an audio transform")
    rate = np.asarray(item["sample_rate"])
    if rate.size != 1 or rate.dtype.kind not in "iuf" or not np.isfinite(rate) or rate != np.rint(rate):
        raise BadItemError(f"sample_rate {item['sample_rate']!r} is not a whole number of Hz; the item's "
                           "'sample_rate' column must hold the recording's rate as an integer")
    return np.asarray(item["signal"]), int(rate)


@dataclass(frozen=True)
class Resample(Step):
    """Polyphase resampling to ``rate`` Hz along the time axis: the Kaiser-windowed (beta 5) low-pass of
    ``scipy.signal.resample_poly`` with zero padding, computed in float64 by :func:`prebake.sources.polyphase.
    resample_poly` (equal to scipy's within 1e-10 of full scale), then rounded and clipped back to the signal's
    dtype. Needs no scipy."""

    needs: ClassVar[tuple[str, ...]] = ("signal", "sample_rate")
    option: ClassVar[str] = "sample_rate"
    rate: int

    def __post_init__(self) -> None:
        size_field(self, "rate")

    def __call__(self, item: Item) -> Item:
        x, rate = _signal_and_rate(item)
        if rate != self.rate:
            if rate < 1:
                raise BadItemError(f"sample_rate {rate} is not a positive number of Hz; the item's 'sample_rate' "
                                   f"column must hold the recording's rate to resample it to {self.rate} Hz")
            g = math.gcd(rate, self.rate)
            y = resample_poly(x, self.rate // g, rate // g, axis=0)
            item["signal"] = samples_as(y, x)
            item["sample_rate"] = self.rate
        return item


@dataclass(frozen=True)
class BandPass(Step):
    """Zero-phase Butterworth band-pass (``sosfiltfilt``) between ``low`` and ``high`` Hz."""

    needs: ClassVar[tuple[str, ...]] = ("signal", "sample_rate")
    option: ClassVar[str] = "bandpass"
    imports: ClassVar[tuple[str, ...]] = ("scipy.signal",)
    low: float
    high: float
    order: int = 4

    def __post_init__(self) -> None:
        number_field(self, "low", lambda v: v > 0, "a frequency in Hz > 0")
        number_field(self, "high", lambda v: v > self.low, f"a frequency in Hz above low ({self.low:g})")
        size_field(self, "order")

    def __call__(self, item: Item) -> Item:
        x, rate = _signal_and_rate(item)
        if not 0 < self.low < self.high < rate / 2:
            raise BadItemError(f"band {self.low}-{self.high} Hz does not fit below Nyquist ({rate / 2} Hz)")
        sig = _scipy_signal()
        sos = sig.butter(self.order, [self.low, self.high], btype="bandpass", fs=rate, output="sos")
        if len(x) <= 3 * 2 * len(sos):  # sosfiltfilt's default padding needs a few samples
            raise BadItemError(f"signal of {len(x)} samples is too short to filter")
        item["signal"] = samples_as(sig.sosfiltfilt(sos, x.astype(np.float64), axis=0), x, "band-pass filtering")
        return item
