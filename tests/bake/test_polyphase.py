"""Resampling without scipy.signal: :func:`prebake.sources.polyphase.resample_poly` equals
``scipy.signal.resample_poly`` (default Kaiser window, zero padding) on float64 input, and a build with
``Resample`` stores what scipy's filter gives, without importing scipy.signal."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

import prebake
from benchmarks.trials.shipped import scipy_data
from prebake.sources import SourceOptions
from prebake.sources.audio import read_audio
from prebake.sources.polyphase import MIN_PER_PHASE, kaiser_lowpass, resample_poly
from prebake.steps import Resample
from prebake.synthetic import write_audio_folder

signal = pytest.importorskip("scipy.signal", reason="the reference is scipy's resample_poly")

#: (source rate, target rate): the usual audio pairs, upsampling, a coprime near-equal pair, and primes.
PAIRS = [(44100, 16000), (48000, 16000), (16000, 44100), (8000, 8001), (4000, 2000), (2000, 4000),
         (22050, 1000), (7, 13), (13, 7), (101, 3), (3, 101), (16000, 16000)]


def _reference(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    g = math.gcd(rate, target)
    return signal.resample_poly(x.astype(np.float64), target // g, rate // g, axis=0)


def _close(ours: np.ndarray, ref: np.ndarray, x: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float64
    scale = max(1.0, float(np.abs(x.astype(np.float64)).max(initial=0)))
    assert np.abs(ours - ref).max(initial=0) <= 1e-10 * scale


def _samples(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "int16":
        return rng.integers(-32768, 32768, shape).astype(np.int16)
    return (rng.standard_normal(shape) * 0.5).astype(dtype)


def test_the_filter_is_scipys_firwin_kaiser_times_up():
    for up, down in [(160, 441), (1, 3), (3, 1), (8001, 8000)]:
        h = signal.firwin(2 * 10 * max(up, down) + 1, 1.0 / max(up, down), window=("kaiser", 5.0)) * up
        assert np.abs(kaiser_lowpass(up, down) - h).max() <= 1e-15 * up


@pytest.mark.parametrize("rate,target", PAIRS)
def test_every_short_length_mono_and_stereo_in_each_dtype_equals_scipy(rate, target):
    rng = np.random.default_rng(rate * 7 + target)
    g = math.gcd(rate, target)
    big = max(rate, target) // g > 1000  # scipy designs its 20,001+ taps per call: every 7th length is enough
    for n in range(1, 61, 7 if big else 1):
        for shape, dtype in (((n,), "float64"), ((n, 2), "float32"), ((n, 3), "int16")):
            x = _samples(rng, shape, dtype)
            _close(resample_poly(x, target // g, rate // g), _reference(x, rate, target), x)


@pytest.mark.parametrize("rate,target", PAIRS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "int16"])
def test_long_recordings_equal_scipy_on_both_paths(rate, target, dtype):
    """Long enough that every phase has many outputs (matrix products per phase), and one of 2 s."""
    g = math.gcd(rate, target)
    rng = np.random.default_rng(3)
    for n in (MIN_PER_PHASE * rate // g + 5, 2 * rate + 3):
        for shape in ((n,), (n, 2)):
            x = _samples(rng, shape, dtype)
            _close(resample_poly(x, target // g, rate // g), _reference(x, rate, target), x)


def test_other_axes_and_empty_signals_match_scipy():
    x = np.random.default_rng(0).standard_normal((3, 50, 2))
    for axis in (0, 1, 2, -1):
        _close(resample_poly(x, 2, 3, axis=axis), signal.resample_poly(x, 2, 3, axis=axis), x)
    for shape in ((0,), (0, 2)):
        assert resample_poly(np.zeros(shape), 160, 441).shape == signal.resample_poly(np.zeros(shape), 160, 441).shape


def test_ten_minutes_equal_scipy_on_pieces_at_the_ends_and_in_the_middle():
    """Many blocks of outputs per phase; the filter reaches 20 input samples each side, so the middle of a piece
    with 100 spare samples around it equals the same span of the whole."""
    x = np.random.default_rng(1).standard_normal(8000 * 600)
    y = resample_poly(x, 2, 1)
    assert len(y) == 2 * len(x)
    for start, stop in ((0, 4000), (2_400_000, 2_404_000), (len(x) - 4000, len(x))):
        lo = max(0, start - 100)
        ref = signal.resample_poly(x[lo: stop + 100], 2, 1)
        assert np.abs(y[2 * start: 2 * stop] - ref[2 * (start - lo): 2 * (stop - lo)]).max() <= 1e-10


@pytest.mark.parametrize("channel", ["mix", "all"])
def test_scipys_real_wavs_baked_with_resample_store_scipys_int16_values(tmp_path, channel):
    """44.1 and 48 kHz float and 4-byte PCM files, and a 3-channel 24-bit one at 8 kHz, resampled to 16 kHz
    in a build: every stored int16 equals scipy's resample_poly rounded and clipped (0 differ by 1 LSB)."""
    names = ["test-44100Hz-le-1ch-4bytes.wav", "test-48000Hz-2ch-64bit-float-le-wavex.wav",
             "test-8000Hz-le-3ch-5S-24bit.wav", "test-44100Hz-2ch-32bit-float-le.wav"]
    if channel == "all":
        names = names[1:2] + names[3:]  # one channel count in a build with channel="all"
    (tmp_path / "src" / "rec").mkdir(parents=True)
    for name in names:
        shutil.copy(scipy_data() / name, tmp_path / "src" / "rec" / name)
    cache = prebake.build(tmp_path / "src", tmp_path / "c", [Resample(16000)], workers=0,
                          source_options=SourceOptions(channel=channel))
    assert len(cache) == len(names)
    for i, key in enumerate(cache.source_keys):
        raw, rate = read_audio(tmp_path / "src" / key, channel, "int16")
        want = np.clip(np.rint(_reference(raw, rate, 16000)), -32768, 32767).astype(np.int16)
        got = np.asarray(cache[i]["signal"])
        assert got.dtype == np.int16 and got.shape == want.shape and int(cache[i]["sample_rate"]) == 16000
        assert int((got != want).sum()) == 0, key


_NO_SCIPY_SIGNAL = """
import json, sys
import prebake
from prebake.steps import Resample
cache = prebake.build(sys.argv[1], sys.argv[2], [Resample(16000)], workers=int(sys.argv[3]))
print(json.dumps({"signal": "scipy.signal" in sys.modules, "n": len(cache),
                  "rate": int(cache[0]["sample_rate"])}))
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_a_build_with_resample_never_imports_scipy_signal(tmp_path, workers):
    root = write_audio_folder(tmp_path / "hearts", per_class=2, rate=44100, seconds=(0.05, 0.1))
    out = subprocess.run([sys.executable, "-c", _NO_SCIPY_SIGNAL, str(root), str(tmp_path / "c"), str(workers)],
                         capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"signal": False, "n": 4, "rate": 16000}, out.stderr
