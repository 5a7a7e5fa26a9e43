"""Bake-time transforms of 1-D signals (``item["signal"]``, ``(T,)`` or ``(T, C)``).

Both need scipy (``pip install 'prebake[audio]'``), imported only when used.
Outputs keep the input's dtype: integer PCM is rounded and clipped back to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import BadItemError, PrebakeError
from .base import Step, number_field, size_field

Item = dict[str, Any]


def _scipy_signal() -> Any:
    try:
        import scipy.signal
    except ImportError:
        raise PrebakeError(
            "resampling and band-pass filtering need scipy: pip install 'prebake[audio]' (or pip install scipy)"
        ) from None
    return scipy.signal


def _signal_and_rate(item: Item) -> tuple[np.ndarray, int]:
    if "signal" not in item or "sample_rate" not in item:
        raise BadItemError("needs 'signal' and 'sample_rate' columns for an audio transform")
    return np.asarray(item["signal"]), int(item["sample_rate"])


def _back_to(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip float results back into an integer dtype; floats just cast."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


@dataclass(frozen=True)
class Resample(Step):
    """Polyphase resampling (``scipy.signal.resample_poly``, Kaiser window) to ``rate`` Hz."""

    needs: ClassVar[tuple[str, ...]] = ("signal", "sample_rate")
    option: ClassVar[str] = "sample_rate"
    imports: ClassVar[tuple[str, ...]] = ("scipy.signal",)
    rate: int

    def __post_init__(self) -> None:
        size_field(self, "rate")

    def __call__(self, item: Item) -> Item:
        x, rate = _signal_and_rate(item)
        if rate != self.rate:
            g = math.gcd(rate, self.rate)
            y = _scipy_signal().resample_poly(x.astype(np.float64), self.rate // g, rate // g, axis=0)
            item["signal"] = _back_to(y, x.dtype)
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
        item["signal"] = _back_to(sig.sosfiltfilt(sos, x.astype(np.float64), axis=0), x.dtype)
        return item
