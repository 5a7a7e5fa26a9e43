"""Cardiac-cycle segmentation of heart-sound recordings, at bake time (``segment_cycles``).

The heart-sound workload segmented every recording into cycles inside ``__getitem__``, twice per sample.
Here it runs once per recording in the bake workers, and each cycle becomes one row of a
ragged ``cycles`` column: ``prebake.Elements(cache, "cycles")`` reads one cycle per sample.

Method (deterministic; every parameter is a field of :class:`SegmentCycles`, so it is in
the cache's fingerprint):

1. band-pass 25-400 Hz (4th-order Butterworth, zero phase), as Springer et al. do;
2. the **homomorphic envelope** (Gupta et al. 2007): ``exp(lowpass_8Hz(log|hilbert(x)|))``,
   sampled at 100 Hz and z-normalised;
3. the **heart period** is the highest peak of the envelope's autocorrelation between the
   lags of ``heart_rate`` = (low, high) beats per minute (or a half or third of that lag when
   its peak is at least 0.8 as high: every multiple of the period lines up too), and the
   **systolic interval** the highest peak between 0.15 s and 0.55 periods (Schmidt et al.
   2010, as in Springer's ``getHeartRateSchmidt``). The period's peak height is the
   recording's ``periodicity``;
4. **S1 positions** by dynamic programming (Ellis 2007, "Beat tracking by dynamic
   programming"): the chain of frames that maximises ``sum(score) - alpha * sum(log(gap /
   period)**2)``, where a frame's score is the envelope there plus the envelope one systolic
   interval later (an S1 is followed by an S2);
5. each S1 peak is refined on the full-rate envelope (within 50 ms), each S2 is the highest
   envelope point from 0.15 s after its S1 to 0.1 s before the next; systole is shorter than
   diastole, so if the S1-S2 intervals are the longer ones the two are swapped; each sound
   extends to where
   the envelope falls below half its height over the recording's median (at most one mean
   sound duration either side: 122 ms for S1, 92 ms for S2, Schmidt et al.).

A cycle runs from one S1 onset to the next, when their gap lies within ``max_deviation`` of
the period (a missed beat makes a gap of two periods: no cycle there).

Compared with Springer's HSMM (the field's reference, Springer et al. 2016,
IEEE Trans. Biomed. Eng. 63(4)): the same envelope and heart-rate estimate, but no trained
emission model and no explicit state durations, so it needs no training data and is a few
milliseconds per recording. On prebake's synthetic recordings (``prebake.synthetic.pcg``,
50-120 bpm, 0-20 dB SNR) it finds every planted S1 within 30 ms (tests/bake/test_cycles.py).
Its limits: it assumes a roughly steady rhythm (arrhythmias with gaps beyond
``max_deviation`` lose those cycles); above about 140 bpm systole and diastole are of
similar length and the autocorrelation can lock onto half the period, so the default range
stops at 150 bpm; S1 and S2 are told apart by timing only (the shorter interval is systole).

A recording with no detectable cycle (periodicity below ``min_periodicity``, shorter than two
periods at the lowest heart rate, no S1 chain) is a bad item with the reason, or with
``fallback="windows"`` is cut into consecutive windows of ``length`` samples with unknown
(``-1``) S1/S2 boundaries and ``segmented = False``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import BadItemError, OptionError
from .audio import _scipy_signal, _signal_and_rate
from .base import Step, number_field

Item = dict[str, Any]

FRAME_RATE = 100.0  # envelope frames per second: 10 ms steps
S1_SECONDS, S2_SECONDS = 0.122, 0.092  # mean sound durations (Schmidt et al. 2010)
FALLBACKS = ("bad", "windows")
#: Fewest samples the envelope's filters take: sosfiltfilt pads the 4th-order band-pass by 3 x 9 samples and needs
#: more than that.
FILTER_SAMPLES = 28
#: The ragged columns segmentation adds; every one has a row per cycle.
CYCLE_COLUMNS = ("cycles", "cycle_lengths", "cycle_bounds", "cycle_start")


@dataclass(frozen=True)
class Segmentation:
    """Sample positions in one recording: S1 and S2 peaks, onsets and offsets per detected beat."""

    period: float  # seconds
    systole: float  # seconds, S1 to S2 peak
    periodicity: float  # autocorrelation at the period, in [-1, 1]
    s1: np.ndarray  # (B,) S1 peak samples
    s1_on: np.ndarray
    s1_off: np.ndarray
    s2: np.ndarray  # (B,) S2 peak samples, after each S1
    s2_on: np.ndarray
    s2_off: np.ndarray

    @property
    def heart_rate(self) -> float:
        return 60.0 / self.period


@dataclass(frozen=True)
class SegmentCycles(Step):
    """Cut ``item["signal"]`` into cardiac cycles (S1 onset to S1 onset); see the module docstring.

    ``length``: samples per stored cycle (shorter ones are zero-padded at the end, longer ones
    cut; ``cycle_lengths`` keeps the valid count). ``heart_rate``: (low, high) beats per
    minute to look for. ``fallback``: ``"bad"`` or ``"windows"``. ``min_periodicity``: the
    autocorrelation a recording needs at its period. ``max_deviation``: how far a cycle may
    be from the period (0.3: 70-130 %). ``alpha``: the DP's weight on regular gaps.

    Adds the ragged columns ``cycles`` ``(n, length)``, ``cycle_lengths`` ``(n,)`` int32,
    ``cycle_bounds`` ``(n, 5)`` int32 (S1 onset = 0, S1 end, S2 start, S2 end, cycle end, in
    samples from the cycle's start: the four states S1, systole, S2, diastole for
    ``SplitSubstructures``) and ``cycle_start`` ``(n,)`` int64 (the cycle's first sample in
    the recording), and per recording ``heart_rate`` (bpm), ``periodicity``, ``num_cycles`` and
    ``segmented``.
    """

    needs: ClassVar[tuple[str, ...]] = ("signal", "sample_rate")
    option: ClassVar[str] = "segment_cycles"
    imports: ClassVar[tuple[str, ...]] = ("scipy.signal",)
    ragged: ClassVar[tuple[str, ...]] = CYCLE_COLUMNS
    length: int = 4000
    heart_rate: tuple[float, float] = (40.0, 150.0)
    fallback: str = "bad"
    min_periodicity: float = 0.3
    max_deviation: float = 0.3
    alpha: float = 5.0

    def __post_init__(self) -> None:
        if not _finite(self.length) or int(self.length) != self.length or self.length < 1:
            raise OptionError(f"{_named('length')} takes a positive number of samples, got "
                              f"{self.length!r}")
        rate = tuple(self.heart_rate) if isinstance(self.heart_rate, (list, tuple)) else ()
        if len(rate) != 2 or not all(_finite(v) for v in rate) or not 0 < rate[0] < rate[1]:
            raise OptionError(f"{_named('heart_rate')} takes LOW HIGH beats per minute with "
                              f"0 < LOW < HIGH, got {self.heart_rate!r}; for example (40, 150)")
        if not isinstance(self.fallback, str) or self.fallback not in FALLBACKS:
            raise OptionError(f"{_named('fallback')} is {self.fallback!r}; give bad (a recording "
                              "without cycles is a bad item) or windows (cut it into windows of cycle_length samples)")
        number_field(self, "min_periodicity", lambda v: 0 <= v <= 1, "an autocorrelation height from 0 to 1")
        number_field(self, "max_deviation", lambda v: 0 < v < 1, "a fraction of the period between 0 and 1")
        number_field(self, "alpha", lambda v: v >= 0, "a weight >= 0")
        object.__setattr__(self, "heart_rate", (float(rate[0]), float(rate[1])))
        object.__setattr__(self, "length", int(self.length))

    def __call__(self, item: Item) -> Item:
        x, rate = _signal_and_rate(item)
        try:
            seg = find_cycles(x, rate, self.heart_rate, self.min_periodicity, self.max_deviation, self.alpha)
            starts, bounds = cycle_bounds(seg, self.max_deviation)
            if not len(starts):
                raise BadItemError(f"no cardiac cycle found: no two S1 sounds one period ({seg.period:.2f} s) apart")
        except BadItemError:
            if self.fallback == "bad":
                raise
            return self._windows(item, x)
        item.update(_cut(x, starts, bounds[:, -1], self.length))
        item.update(cycle_bounds=bounds.astype(np.int32), cycle_start=starts.astype(np.int64),
                    heart_rate=np.float32(seg.heart_rate), periodicity=np.float32(seg.periodicity),
                    num_cycles=np.int32(len(starts)), segmented=np.bool_(True))
        return item

    def _windows(self, item: Item, x: np.ndarray) -> Item:
        n = max(1, len(x) // self.length)
        starts = np.arange(n, dtype=np.int64) * self.length
        ends = np.full(n, self.length, dtype=np.int64)
        item.update(_cut(x, starts, ends, self.length))
        item.update(cycle_bounds=np.full((n, 5), -1, np.int32), cycle_start=starts, heart_rate=np.float32(0),
                    periodicity=np.float32(0), num_cycles=np.int32(n), segmented=np.bool_(False))
        return item


def _cut(x: np.ndarray, starts: np.ndarray, lengths: np.ndarray, length: int) -> Item:
    """Cycles ``x[start:start + lengths]``, each cut or zero-padded to ``length`` samples, in x's dtype."""
    out = np.zeros((len(starts), length, *x.shape[1:]), dtype=x.dtype)
    valid = np.minimum(lengths, length).astype(np.int64)
    valid = np.minimum(valid, len(x) - starts)
    for k, (s, v) in enumerate(zip(starts, valid)):  # a few dozen cycles per recording
        out[k, :v] = x[s:s + v]
    return {"cycles": out, "cycle_lengths": valid.astype(np.int32)}


def homomorphic_envelope(x: np.ndarray, rate: int) -> np.ndarray:
    """Band-pass 25-400 Hz, then ``exp(lowpass_8Hz(log|hilbert|))`` at the full rate (float64)."""
    sig = _scipy_signal()
    high = min(400.0, 0.45 * rate)
    if high <= 30.0:
        raise BadItemError(f"sample rate {rate} Hz is too low to find heart sounds (needs at least 70 Hz)")
    _check_length(len(x), FILTER_SAMPLES, "fewer than the envelope's band-pass filter takes")
    sos = sig.butter(4, [25.0, high], btype="bandpass", fs=rate, output="sos")
    y = sig.sosfiltfilt(sos, x - x.mean())
    lp = sig.butter(1, 8.0, btype="lowpass", fs=rate, output="sos")
    return np.exp(sig.sosfiltfilt(lp, np.log(np.abs(sig.hilbert(y)) + 1e-12)))


def _check_length(n: int, needed: int, why: str) -> None:
    """A recording shorter than ``needed`` samples is a bad item, said before a filter or a mean meets it (the
    count after the colon, so a build's summary groups every short recording as one kind of reason)."""
    if n < needed:
        raise BadItemError(f"recording too short to segment: {n} samples, {why} (needs at least {needed})")


def _autocorrelation(z: np.ndarray) -> np.ndarray:
    """Unbiased autocorrelation of a z-normalised series, ``ac[0] = 1`` (FFT, O(n log n))."""
    n = len(z)
    f = np.fft.rfft(z, 2 * n)
    ac = np.fft.irfft(f * np.conj(f))[:n]
    return ac / (ac[0] * (n - np.arange(n)) / n)


def _peak(ac: np.ndarray, low: int, high: int) -> tuple[float, float]:
    """(lag, height) of the highest local maximum of ``ac`` in ``[low, high]``, refined by a parabola.

    A local maximum, not the highest point: at the low end ``ac`` may still be falling from lag 0.
    (-1, -inf) when there is none.
    """
    k = np.arange(max(low, 1), min(high, len(ac) - 2) + 1)
    if not len(k):
        return -1.0, -math.inf
    k = k[(ac[k] > ac[k - 1]) & (ac[k] >= ac[k + 1])]
    if not len(k):
        return -1.0, -math.inf
    best = int(k[np.argmax(ac[k])])
    a, b, c = ac[best - 1], ac[best], ac[best + 1]
    denom = a - 2 * b + c
    return (best + 0.5 * (a - c) / denom if denom < 0 else float(best)), float(b)


def _period(ac: np.ndarray, low: int, high: int) -> tuple[float, float]:
    """The heart period's lag and height: the highest peak, or a half or third of it that is nearly as high.

    At the period's multiples every sound lines up again, and in noise the peak at twice the period
    can top the one at the period.
    """
    lag, height = _peak(ac, low, high)
    for k in (3, 2):
        if lag / k >= low:
            sub, h = _peak(ac, int(lag / k * 0.85), int(math.ceil(lag / k * 1.15)))
            if sub > 0 and h >= 0.8 * height:
                return sub, h
    return lag, height


def find_cycles(x: np.ndarray, rate: int, heart_rate: tuple[float, float] = (40.0, 150.0),
                min_periodicity: float = 0.3, max_deviation: float = 0.3, alpha: float = 5.0) -> Segmentation:
    """S1 and S2 positions in recording ``x`` (``(T,)`` or ``(T, C)``, channels averaged) at ``rate`` Hz."""
    mono = np.asarray(x, dtype=np.float64)
    mono = mono.mean(axis=1) if mono.ndim == 2 else mono
    min_lag, max_lag = int(FRAME_RATE * 60 / heart_rate[1]), int(math.ceil(FRAME_RATE * 60 / heart_rate[0]))
    if rate > 0:  # else homomorphic_envelope says the rate is too low
        _check_length(len(mono), math.ceil(2 * min_lag * rate / FRAME_RATE),
                      f"shorter than two beats at {heart_rate[1]:g} bpm, {2 * min_lag / FRAME_RATE:g} s at {rate} Hz")
    env = homomorphic_envelope(mono, rate)
    frames = np.arange(int(len(mono) / rate * FRAME_RATE)) * (rate / FRAME_RATE)
    e = np.interp(frames, np.arange(len(env)), env)
    if len(e) < 2 * min_lag or e.std() == 0:
        raise BadItemError(f"no cardiac cycle found: {len(mono) / rate:.2f} s is shorter than two beats at "
                           f"{heart_rate[1]:g} bpm")
    z = (e - e.mean()) / e.std()
    edge = int(0.05 * FRAME_RATE)  # the filters' start-up at the ends is not a heart sound
    z[:edge], z[-edge:] = z.min(), z.min()
    ac = _autocorrelation(z)
    lag, periodicity = _period(ac, min_lag, min(max_lag, len(z) // 2))
    if periodicity < min_periodicity:
        raise BadItemError(f"no cardiac cycle found: envelope periodicity {periodicity:.2f} at "
                           f"{60 * FRAME_RATE / lag:.0f} bpm is below min_periodicity {min_periodicity:g} "
                           f"(noise, or a heart rate outside {heart_rate[0]:g}-{heart_rate[1]:g} bpm)")
    systole, _ = _peak(ac, int(0.15 * FRAME_RATE), int(lag * 0.55))
    if systole <= 0:  # no S1-S2 peak in the autocorrelation: the population's interval (0.1 s + 0.2 period)
        systole = 0.1 * FRAME_RATE + 0.2 * lag
    beats = _track(z, lag, systole, max_deviation, alpha)
    return _refine(env, beats, lag / FRAME_RATE, systole / FRAME_RATE, periodicity, rate)


def _track(z: np.ndarray, period: float, systole: float, max_deviation: float, alpha: float) -> np.ndarray:
    """Frames of the best S1 chain (Ellis 2007): gaps of 0.6-2.5 periods, penalised off the period."""
    n, s = len(z), int(round(systole))
    score = z + np.concatenate([z[s:], np.zeros(s)])  # an S1 is followed by an S2 one systole later
    gaps = np.arange(max(1, int(math.ceil(period * 0.6))), int(period * 2.5) + 1)
    penalty = alpha * np.log(gaps / period) ** 2  # no gap below 0.6 periods: an S2 never passes for an S1
    best = score.copy()
    back = np.full(n, -1)
    for t in range(int(gaps[0]), n):  # one step per 10 ms frame: about 2,000 for a 20 s recording
        prev = t - gaps
        ok = prev >= 0
        cand = best[prev[ok]] - penalty[ok]
        j = int(np.argmax(cand))
        if cand[j] > 0:
            best[t] += cand[j]
            back[t] = prev[ok][j]
    t = int(np.argmax(best))
    chain = []
    while t >= 0:
        chain.append(t)
        t = int(back[t])
    return np.array(chain[::-1], dtype=np.int64)


def _refine(env: np.ndarray, beats: np.ndarray, period: float, systole: float, periodicity: float,
            rate: int) -> Segmentation:
    """S1 peaks near the chain's frames, the S2 peak between each S1 and the next, then their extents.

    Systole is shorter than diastole: when the S1-to-S2 intervals come out longer than the
    S2-to-S1 ones, the chain followed the S2 sounds, and the two are swapped.
    """
    near = int(0.05 * rate)
    s1 = np.array([_argmax(env, int(f * rate / FRAME_RATE) - near, int(f * rate / FRAME_RATE) + near)
                   for f in beats], dtype=np.int64)
    s2 = _between(env, s1, period, rate)
    if len(s1) > 2 and np.median(s2 - s1) > np.median(s1[1:] - s2[:-1]):
        s1 = _extend(env, s2[:-1], period, rate)
        s2 = _between(env, s1, period, rate)
        systole = float(np.median(s2 - s1)) / rate * FRAME_RATE
    base = float(np.median(env))
    s1_on, s1_off = _extent(env, s1, base, int(S1_SECONDS * rate))
    s2_on, s2_off = _extent(env, s2, base, int(S2_SECONDS * rate))
    return Segmentation(period, systole, periodicity, s1, s1_on, s1_off, s2, s2_on, s2_off)


def _extend(env: np.ndarray, s1: np.ndarray, period: float, rate: int) -> np.ndarray:
    """``s1`` with the S1 one period before the first, when the envelope peaks there at least half as high."""
    if not len(s1):
        return s1
    p = int(period * rate)
    a, b = s1[0] - int(1.15 * p), s1[0] - int(0.85 * p)
    if b <= 0:
        return s1
    k = _argmax(env, a, b)
    return np.insert(s1, 0, k) if env[k] >= 0.5 * np.median(env[s1]) and a < k < b - 1 else s1


def _between(env: np.ndarray, s1: np.ndarray, period: float, rate: int) -> np.ndarray:
    """The highest envelope point from 0.15 s after each S1 to 0.1 s before the next (or one period on)."""
    nxt = np.append(s1[1:], s1[-1] + int(period * rate)) if len(s1) else s1
    gap = int(0.15 * rate)
    return np.array([_argmax(env, a + gap, max(a + gap + 1, b - int(0.1 * rate))) for a, b in zip(s1, nxt)],
                    dtype=np.int64)


def _argmax(env: np.ndarray, a: int, b: int) -> int:
    a, b = max(0, a), min(len(env), max(a + 1, b))
    return a + int(np.argmax(env[a:b])) if a < len(env) else len(env) - 1


def _extent(env: np.ndarray, peaks: np.ndarray, base: float, most: int) -> tuple[np.ndarray, np.ndarray]:
    """(onset, offset) of each sound: where the envelope falls below half its height over ``base``."""
    on, off = np.empty_like(peaks), np.empty_like(peaks)
    for k, p in enumerate(peaks):
        half = base + 0.5 * (env[p] - base)
        left = env[max(0, p - most):p + 1][::-1]
        right = env[p:p + most + 1]
        below_l, below_r = np.flatnonzero(left < half), np.flatnonzero(right < half)
        on[k] = p - (below_l[0] if len(below_l) else len(left) - 1)
        off[k] = p + (below_r[0] if len(below_r) else len(right) - 1)
    return on, off


def cycle_bounds(seg: Segmentation, max_deviation: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, bounds)`` of each whole cycle: S1 onset to the next S1 onset, when that gap is within
    ``max_deviation`` of the period. ``bounds[k]`` = (0, S1 end, S2 start, S2 end, cycle end), from the start."""
    starts, ends = seg.s1_on[:-1], seg.s1_on[1:]
    rate_gap = (ends - starts) / max(1e-9, float(np.median(np.diff(seg.s1)) if len(seg.s1) > 1 else 1))
    keep = np.abs(rate_gap - 1) <= max_deviation
    rel = np.stack([np.zeros_like(starts), seg.s1_off[:-1] - starts, seg.s2_on[:-1] - starts,
                    seg.s2_off[:-1] - starts, ends - starts], axis=1)
    rel = np.maximum.accumulate(np.clip(rel, 0, (ends - starts)[:, None]), axis=1)  # ordered, inside the cycle
    return starts[keep], rel[keep]


def _finite(v: Any) -> bool:
    """A real number, finite, not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _named(field: str) -> str:
    """A parameter of SegmentCycles, marked for the CLI, which prints its flag."""
    return f"`SegmentCycles.{field}`"
