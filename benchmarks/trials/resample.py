"""Resampling under attack: ``prebake.steps.Resample`` (numpy's polyphase filter, no scipy.signal) on the rates,
lengths, channel counts, dtypes and values a user's recordings bring.

Each trial draws a source and a target rate (common audio pairs, anything in 1..200,000, coprime near-equal pairs
such as 44,100 -> 44,101, and now and then a rate above 200,000 as a broken WAV header gives), a signal of 0 to
2,000 samples (0, 1 and 2 come often), mono or 1-4 channels, in int16, int32, uint8, float32 or float64, holding
noise, a full-scale square wave (its overshoot must clip, not wrap) or huge floats. The step's signal must equal
scipy's ``resample_poly`` on the float64 samples, rounded and clipped back (integers) or cast (floats), where scipy
designs its filter quickly (at most 100,001 taps); otherwise the output length and a few outputs summed directly
from the filter are checked. Bad rates and signals (0, negative, NaN, fractional rates, complex, text, 0-d) and
filters too large to design must be a BadItemError naming the value; any other exception (a raw numpy error, a
MemoryError) or a silent inf is a failure. Every tenth trial bakes a folder of WAV files at random rates through
a real build and checks the stored int16 values the same way.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.errors import BadItemError, PrebakeError
from prebake.sources.audio import read_audio
from prebake.sources.polyphase import MAX_FACTOR, kaiser_lowpass
from prebake.steps import Resample

from . import Row

COMMON = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000)
DTYPES = ("int16", "int32", "uint8", "float32", "float64")
BAD_RATES: tuple[Any, ...] = (0, -1, -44100, float("nan"), float("inf"), 22050.5, "fast", None, True, [8000, 16000])
SCIPY_TAPS = 100_001  # compare with scipy only where its filter design stays quick


def resample(work_dir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("resample attacks: rates 1..200,000 (coprime, near-equal), 0-2,000 samples, channels, dtypes, "
              "extremes; equal to scipy's resample_poly or a BadItemError naming the value")
    rng = np.random.default_rng(seed)
    counts = {"scipy": 0, "direct": 0, "refused": 0, "builds": 0}
    for t in range(trials):
        where = f"trial {t} (seed {seed})"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a cast to inf, a dropped imaginary part: never silent
                if t % 10 == 9:
                    counts["builds"] += 1
                    _build_trial(row, rng, work_dir / f"resample-{seed}-{t}", where)
                else:
                    counts[_step_trial(row, rng, where)] += 1
        except Exception as e:  # noqa: BLE001 - anything escaping a trial is a failure to report, not to crash on
            row.fail(f"{where}: {type(e).__name__} escaped: {e}")
    row.notes.update(counts)
    return row


def _rates(rng: np.random.Generator) -> tuple[int, int]:
    kind = rng.random()
    if kind < 0.4:
        return int(rng.choice(COMMON)), int(rng.choice(COMMON))
    if kind < 0.6:
        r = int(rng.integers(1, 200_001))
        return (r, r + 1) if rng.random() < 0.5 else (r + 1, r)
    if kind < 0.9:
        return int(rng.integers(1, 200_001)), int(rng.integers(1, 200_001))
    return int(rng.integers(200_001, 2**31)), int(rng.choice(COMMON))  # a header's rate, past any filter


def _signal(rng: np.random.Generator, up: int, down: int) -> np.ndarray:
    """At most 2,000 samples, and at most 2 million out (a 1 Hz header to 200 kHz is its own attack)."""
    channels = int(rng.integers(1, 5))
    n = int(rng.choice([0, 1, 2, 3])) if rng.random() < 0.3 else int(rng.integers(4, 2001))
    n = min(n, max(1, 2_000_000 * down // (up * channels)))
    shape = (n,) if rng.random() < 0.5 else (n, channels)
    dtype = np.dtype(str(rng.choice(DTYPES)))
    kind = rng.random()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if kind < 0.4:  # full scale square wave: the filter's overshoot passes the limits
            x = np.where((np.arange(n) // max(1, int(rng.integers(1, 9)))) % 2 == 0, info.max, info.min)
            return np.broadcast_to(x.reshape((n,) + (1,) * (len(shape) - 1)), shape).astype(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    top = float(np.finfo(dtype).max)
    scale = top * float(rng.choice([1.0, 0.5, 0.8])) if kind < 0.3 else (1e300 if dtype == np.float64 else 1e30)
    scale = scale if kind < 0.5 else 1.0
    return (np.clip(rng.standard_normal(shape), -1, 1) * scale).astype(dtype)


def _step_trial(row: Row, rng: np.random.Generator, where: str) -> str:
    rate, target = _rates(rng)
    g = math.gcd(rate, target)
    up, down = target // g, rate // g
    x = _signal(rng, up, down)
    if rng.random() < 0.08:
        return _bad_input_trial(row, rng, x, where)
    what = f"{where}: {rate} -> {target} Hz, {x.dtype} {x.shape}"
    try:
        got = Resample(target)({"signal": x, "sample_rate": rate})["signal"]
    except BadItemError as e:
        return _refusal(row, x, up, down, rate, target, str(e), what)
    if max(up, down) > MAX_FACTOR:
        row.fail(f"{what}: a filter of {20 * max(up, down) + 1:,} taps was not refused")
        return "refused"
    if 20 * max(up, down) + 1 <= SCIPY_TAPS:
        row.check(_matches(got, _scipy(x, up, down), x.dtype), f"{what}: differs from scipy's resample_poly")
        return "scipy"
    row.check(_direct_ok(got, x, up, down, rng), f"{what}: wrong length or differs from the direct sum")
    return "direct"


def _bad_input_trial(row: Row, rng: np.random.Generator, x: np.ndarray, where: str) -> str:
    bad, rate, to = rng.integers(4), 44_100, 16_000  # rates that resample, so only the bad value is refused
    if bad == 0:
        rate_value: Any = BAD_RATES[int(rng.integers(len(BAD_RATES)))]
        item = {"signal": x, "sample_rate": rate_value}
        named = repr(rate_value) if not isinstance(rate_value, int) else str(rate_value)
    elif bad == 1:
        junk = [x.astype(np.complex128), x.astype(str), x.astype(object)][int(rng.integers(3))]
        item, named = {"signal": junk, "sample_rate": rate}, str(junk.dtype)
    elif bad == 2:
        item, named = {"signal": np.float32(1.5), "sample_rate": rate}, "0-d"
    else:  # a 1 Hz header: 12,000 samples to 192 kHz would be 2.3 x 10^9 float64 outputs
        item, named, to = {"signal": np.zeros((12_000, 1), np.int16), "sample_rate": 1}, "192000", 192_000
    try:
        Resample(to)(item)
    except BadItemError as e:
        row.check(named in str(e), f"{where}: refusal of {named} does not name it: {e}")
        return "refused"
    row.fail(f"{where}: {named} was resampled, not refused")
    return "refused"


def _refusal(row: Row, x: np.ndarray, up: int, down: int, rate: int, target: int, message: str, what: str) -> str:
    if max(up, down) > MAX_FACTOR:
        row.check(f"{up}/{down}" in message and "taps" in message, f"{what}: refusal does not name the factors: "
                                                                   f"{message}")
    elif x.dtype.kind == "f":
        ref = _scipy(x, up, down) if 20 * max(up, down) + 1 <= SCIPY_TAPS else None
        beyond = ref is None or not (np.isfinite(ref).all() and np.abs(ref).max(initial=0) <= np.finfo(x.dtype).max)
        row.check(beyond and "overflows" in message and str(x.dtype) in message, f"{what}: refused: {message}")
    else:
        row.fail(f"{what}: refused {rate} -> {target}: {message}")
    return "refused"


def _scipy(x: np.ndarray, up: int, down: int) -> np.ndarray:
    import scipy.signal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # huge floats overflow in scipy's sums too
        return scipy.signal.resample_poly(x.astype(np.float64), up, down, axis=0)


def _matches(got: np.ndarray, ref: np.ndarray, dtype: np.dtype) -> bool:
    """Integers: rint and clip of scipy's value, a 1-LSB difference only where scipy's is within 1e-10 (relative)
    of a half; floats: scipy's cast, within 1e-10 of the signal's scale plus one unit in the last place."""
    if got.dtype != dtype or got.shape != ref.shape:
        return False
    if got.size == 0:
        return True
    scale = max(1.0, float(np.abs(ref).max()))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        want = np.clip(np.rint(ref), info.min, info.max)
        off = got.astype(np.float64) != want
        near_half = np.abs(np.abs(ref - np.floor(ref)) - 0.5) <= 1e-10 * scale
        return bool(np.all(~off | (near_half & (np.abs(got - want) <= 1))))
    ulp = np.abs(ref) * np.finfo(dtype).eps  # one unit in the last place of the cast, or more
    return bool(np.all(np.abs(got.astype(np.float64) - ref) <= 1e-10 * scale + ulp))


def _direct_ok(got: np.ndarray, x: np.ndarray, up: int, down: int, rng: np.random.Generator) -> bool:
    """Beyond scipy's quick reach: the length scipy gives, and up to 5 outputs summed term by term from the filter."""
    n_out = -(-len(x) * up // down)
    if got.shape != (n_out, *x.shape[1:]) or got.dtype != x.dtype:
        return False
    h = kaiser_lowpass(up, down)
    half = (len(h) - 1) // 2
    width = math.prod(x.shape[1:])
    flat, out = x.astype(np.float64).reshape(len(x), width), got.astype(np.float64).reshape(n_out, width)
    for o in rng.integers(0, max(n_out, 1), min(5, n_out)):
        t = half + int(o) * down
        i = np.arange(max(0, -(-(t - len(h) + 1) // up)), min(len(x), t // up + 1))
        want = h[t - i * up] @ flat[i]
        if x.dtype.kind in "iu":
            info = np.iinfo(x.dtype)
            if np.any(np.abs(np.clip(want, info.min, info.max) - out[o]) > 0.5 + 1e-9 * max(1, np.abs(want).max())):
                return False
        elif np.any(np.abs(want - out[o]) > 1e-10 * max(1.0, float(np.abs(flat).max()))
                    + np.abs(want) * np.finfo(x.dtype).eps):
            return False
    return True


def _build_trial(row: Row, rng: np.random.Generator, work: Path, where: str) -> None:
    """WAV files at random rates (1 Hz to 192 kHz) baked to a random common rate: stored values equal scipy's."""
    import soundfile as sf

    target = int(rng.choice(COMMON[:7]))
    (work / "src" / "rec").mkdir(parents=True)
    rates = {}
    for k in range(3):
        rate = int(rng.choice(COMMON)) if rng.random() < 0.7 else int(rng.integers(1, 20_001))
        n = int(rng.integers(1, 3000))
        sf.write(work / "src" / "rec" / f"r{k}.wav", rng.uniform(-1, 1, n), rate, subtype="PCM_16")
        rates[f"rec/r{k}.wav"] = rate
    try:
        cache = prebake.build(work / "src", work / "c", [Resample(target)], workers=0, progress=False)
    except PrebakeError as e:
        row.fail(f"{where}: the build of rates {rates} to {target} Hz failed: {e}")
        return
    skipped = {s["key"]: s["reason"] for s in cache.manifest["skipped"]}
    row.check(not skipped, f"{where}: skipped {skipped}")
    for i, key in enumerate(cache.source_keys or []):
        raw, rate = read_audio(work / "src" / key, "mix", "int16")
        g = math.gcd(rate, target)
        ok = _matches(np.asarray(cache[i]["signal"]), _scipy(raw, target // g, rate // g), raw.dtype)
        row.check(ok, f"{where}: {key} at {rate} Hz baked to {target} Hz differs from scipy's resample_poly")
