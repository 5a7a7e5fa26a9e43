"""Resampling under attack (``Resample``, the HF Audio feature's resample, numpy's polyphase filter): rates,
lengths, channels, dtypes and extremes give scipy's values or a BadItemError naming the value.

Before: a sample_rate of 0 or NaN escaped as scipy's or int()'s ValueError, 22050.5 Hz was read as 22050, a 0-d
signal as an IndexError, a complex one lost its imaginary part with a warning, a float32 recording near its
largest value was stored as inf, a prime header rate (2**31 - 1 Hz) asked for a 343 GB filter (MemoryError) and
a 1 Hz header upsampled to 192 kHz allocated 17 GiB (here a MemoryError under a 6 GB limit, without one the
OOM killer); the trial at seed 0 failed 1 check of 20 trials (3 of 39 checks with 30 trials).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.trials.resample import resample
from prebake.errors import BadItemError
from prebake.sources.hf_media import resample as hf_resample
from prebake.steps import BandPass, Resample


def test_the_resample_trial_finds_nothing(tmp_path):
    row = resample(tmp_path, trials=20, seed=0)
    assert row.trials >= 20 and row.failures == 0, row.examples
    assert row.notes["scipy"] > 0 and row.notes["refused"] > 0 and row.notes["builds"] == 2


@pytest.mark.parametrize("rate,named", [(0, "sample_rate 0 "), (-8000, "sample_rate -8000 "),
                                        (float("nan"), "sample_rate nan "), (22050.5, "sample_rate 22050.5 "),
                                        ("fast", "sample_rate 'fast' ")])
def test_a_bad_sample_rate_is_refused_naming_it(rate, named):
    with pytest.raises(BadItemError, match=named):
        Resample(16000)({"signal": np.zeros(100, np.int16), "sample_rate": rate})


@pytest.mark.parametrize("signal,named", [(np.float32(0.5), "0-d signal"), (np.ones(50, np.complex64), "complex64"),
                                          (np.array(["a", "b"]), "<U1")])
def test_a_signal_that_is_no_recording_is_refused_naming_it(signal, named):
    with pytest.raises(BadItemError, match=named):
        Resample(16000)({"signal": signal, "sample_rate": 44100})


def test_a_float32_recording_at_its_largest_value_is_refused_not_stored_as_inf():
    loud = np.where(np.arange(400) % 40 < 20, 1, -1).astype(np.float32) * np.finfo(np.float32).max
    for call in (lambda: Resample(16000)({"signal": loud, "sample_rate": 44100}),
                 lambda: hf_resample(loud, 44100, 16000),
                 lambda: BandPass(50, 1000)({"signal": loud, "sample_rate": 8000})):
        with pytest.raises(BadItemError, match="overflows float32"):
            call()


def test_a_header_rate_past_any_filter_is_refused_naming_the_factors():
    with pytest.raises(BadItemError, match=r"16000/2147483647 .* 42,949,672,941 taps"):
        Resample(16000)({"signal": np.zeros(100, np.int16), "sample_rate": 2**31 - 1})


def test_a_1_hz_header_upsampled_to_192_khz_is_refused_before_allocating():
    with pytest.raises(BadItemError, match=r"1 x 2,304,000,000 float64 samples"):
        Resample(192_000)({"signal": np.zeros(12_000, np.int16), "sample_rate": 1})
