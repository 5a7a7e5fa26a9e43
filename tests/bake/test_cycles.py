"""Cardiac-cycle segmentation at bake time: planted S1/S2 positions found, noise refused, cycles as rows.

Tolerance: every planted S1 and S2 (centres of the synthetic sounds, ``prebake.synthetic.pcg``)
at least 100 ms from the ends of the recording is found within 20 ms, and every detected one
lies within 20 ms of a planted one, at 50-140 bpm and 0-20 dB SNR. (Measured on 192 such
recordings: 4 ms at worst.)
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import prebake
from prebake.cli import main
from prebake.config import check_settings
from prebake.errors import BadItemError, OptionError
from prebake.settings import build_kwargs
from prebake.steps.cycles import SegmentCycles, cycle_bounds, find_cycles
from prebake.synthetic import pcg

RATE = 2000
TOLERANCE_S = 0.020


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Seconds from each of ``a`` to the nearest of ``b``."""
    return np.abs(np.asarray(a, float)[:, None] - np.asarray(b, float)[None, :]).min(axis=1) / RATE


@pytest.mark.parametrize("bpm", [50, 75, 110, 140])
@pytest.mark.parametrize("snr_db", [20, 10, 5, 0])
def test_planted_heart_sounds_are_found_within_20_ms(bpm, snr_db):
    x, s1, s2 = pcg(12, RATE, bpm, snr_db, murmur=bpm % 20 == 10, rng=np.random.default_rng([bpm, snr_db]))
    seg = find_cycles(x, RATE)
    inner = lambda p: p[(p > 0.1 * RATE) & (p < len(x) - 0.1 * RATE)]  # noqa: E731
    assert _nearest(inner(s1), seg.s1).max() <= TOLERANCE_S  # every planted S1 found
    assert _nearest(seg.s1, s1).max() <= TOLERANCE_S  # and nothing else
    assert _nearest(inner(s2), seg.s2).max() <= TOLERANCE_S
    assert seg.heart_rate == pytest.approx(bpm, rel=0.05)
    starts, bounds = cycle_bounds(seg)
    assert len(starts) >= len(inner(s1)) - 2  # one cycle per pair of consecutive S1s
    assert (np.diff(bounds, axis=1) >= 0).all() and (bounds[:, 0] == 0).all()
    s1_in_cycle = seg.s1[:-1][np.isin(seg.s1_on[:-1], starts)] - starts
    assert ((s1_in_cycle >= bounds[:, 0]) & (s1_in_cycle <= bounds[:, 1])).all()  # the S1 peak is inside S1


@pytest.mark.parametrize("seconds", [5, 20])
def test_pure_noise_has_no_cycle(seconds):
    x = np.random.default_rng(seconds).standard_normal(seconds * RATE)
    with pytest.raises(BadItemError, match=r"no cardiac cycle found: envelope periodicity 0\.\d\d .* below "
                                           r"min_periodicity 0.3"):
        find_cycles(x, RATE)


def test_too_short_a_recording_is_a_bad_item():
    x, _, _ = pcg(0.5, RATE, 60, 20)
    with pytest.raises(BadItemError, match="shorter than two beats"):
        find_cycles(x, RATE)


def _folder(root, noise: bool = True):
    for label, murmur in (("murmur", True), ("normal", False)):
        (root / label).mkdir(parents=True)
        for i, bpm in enumerate((55, 80, 105)):
            x, _, _ = pcg(6, RATE, bpm, 15, murmur=murmur, rng=np.random.default_rng([i, murmur]))
            sf.write(root / label / f"{i}.wav", 0.9 * x, RATE, subtype="PCM_16")
    if noise:
        sf.write(root / "normal" / "noise.wav", 0.1 * np.random.default_rng(0).standard_normal(6 * RATE), RATE,
                 subtype="PCM_16")
    return root


def test_build_cuts_cycles_into_rows_that_elements_reads_one_per_sample(tmp_path):
    root = _folder(tmp_path / "hearts")
    cache = prebake.build(root, tmp_path / "c", [SegmentCycles(1600)], workers=2)
    assert len(cache) == 6
    (bad,) = cache.manifest["skipped"]
    assert bad["key"] == "normal/noise.wav" and bad["reason"].startswith("no cardiac cycle found: envelope periodicity")
    specs = cache.manifest["columns"]
    assert specs["cycles"]["ragged"] and specs["cycles"]["shape"] == [None, 1600] and specs["cycles"]["dtype"] == "<i2"
    assert specs["cycle_bounds"]["shape"] == [None, 5]
    for i in range(len(cache)):
        item = cache[i]
        signal, starts, lengths = item["signal"], item["cycle_start"], item["cycle_lengths"]
        assert len(item["cycles"]) == int(item["num_cycles"]) == len(starts) >= 3
        assert item["segmented"] and 50 <= float(item["heart_rate"]) <= 110
        for k, (s, n) in enumerate(zip(starts, lengths)):
            assert np.array_equal(item["cycles"][k, :n], signal[s:s + n])  # the recording's samples
            assert not item["cycles"][k, n:].any()  # zero-padded after the cycle
            assert item["cycle_bounds"][k, 4] == (n if n < 1600 else item["cycle_bounds"][k, 4])
        # cycles end where the next begins
        assert (np.diff(starts) == item["cycle_bounds"][:-1, 4]).sum() >= len(starts) - 2
    cycles = prebake.Elements(cache, "cycles")
    assert len(cycles) == sum(int(cache[i]["num_cycles"]) for i in range(len(cache)))
    batch = cycles[[0, len(cycles) - 1]]
    assert batch["cycles"].shape == (2, 1600) and batch["label"].tolist() == [0, 1]
    assert prebake.verify(tmp_path / "c").ok


def test_segmentation_parameters_are_in_the_fingerprint(tmp_path):
    root = _folder(tmp_path / "hearts", noise=False)
    out = tmp_path / "c"
    first = prebake.build(root, out, [SegmentCycles(length=1600)], workers=0)
    step = first.manifest["fingerprint"]["inputs"]["transforms"][0]
    assert step == {"name": "SegmentCycles", "length": 1600, "heart_rate": [40.0, 150.0], "fallback": "bad",
                    "min_periodicity": 0.3, "max_deviation": 0.3, "alpha": 5.0}
    from prebake.bake.build import BuildOptions, build_all, resolve_sources
    from prebake.steps import compile_steps

    (again,) = build_all(resolve_sources(root), out, BuildOptions(compile_steps([SegmentCycles(1600)]), workers=0))
    assert again.action == "up to date"
    (changed,) = build_all(resolve_sources(root), out, BuildOptions(compile_steps([SegmentCycles(1000)]), workers=0))
    assert changed.action == "rebuilt" and any("length=1600" in r and "length=1000" in r for r in changed.reasons)


def test_fallback_windows_keep_a_recording_without_cycles(tmp_path):
    root = _folder(tmp_path / "hearts")
    cache = prebake.build(root, tmp_path / "c", [SegmentCycles(1600, fallback="windows")], workers=0)
    assert len(cache) == 7 and not cache.manifest["skipped"]
    noise = cache[6]
    n = 6 * RATE // 1600  # whole windows of the 6 s recording
    assert not noise["segmented"] and int(noise["num_cycles"]) == n == len(noise["cycles"])
    assert (noise["cycle_bounds"] == -1).all() and noise["cycle_start"].tolist() == [1600 * k for k in range(n)]
    assert np.array_equal(noise["cycles"][1], noise["signal"][1600:3200])


def test_cycle_options_are_checked_before_any_work(tmp_path, capsys):
    root = _folder(tmp_path / "hearts", noise=False)
    with pytest.raises(OptionError,
                       match=r"`cycle_length` shapes the cardiac-cycle segmentation; add `segment_cycles=True`"):
        build_kwargs(check_settings({"source": str(root), "cycle_length": 1000}))
    with pytest.raises(OptionError, match=r"`heart_rate` is \[150.0, 40.0\], out of range: it takes LOW HIGH beats"):
        build_kwargs(check_settings({"segment_cycles": True, "heart_rate": (150, 40)}))
    with pytest.raises(OptionError, match=r"`SegmentCycles.heart_rate` takes LOW HIGH beats per minute with "
                                          r"0 < LOW < HIGH, got \(150, 40\)"):
        SegmentCycles(heart_rate=(150, 40))
    with pytest.raises(OptionError, match=r"`SegmentCycles.fallback` is 'skip'; give bad"):
        SegmentCycles(fallback="skip")
    assert main(["build", str(root), str(tmp_path / "c"), "--segment-cycles", "--cycle-fallback", "skip"]) == 2
    assert "--cycle-fallback is 'skip'; give bad" in capsys.readouterr().err
    photos = prebake.synthetic.write_image_folder(tmp_path / "photos", per_class=1)
    with pytest.raises(OptionError, match=r"SegmentCycles\(length=4000, .*\)` needs a 'signal' and 'sample_rate' col"):
        prebake.build(photos, tmp_path / "p", [SegmentCycles()])
    assert main(["build", str(photos), str(tmp_path / "p"), "--segment-cycles"]) == 2
    assert "--segment-cycles needs a 'signal' and 'sample_rate' column" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "p").exists()
