"""Build steps under attack: bad step parameters, bad source options and sizes past the input limits are
OptionErrors before any work in Python as in the CLI; a band-pass is checked at the rate it runs at; and
the four front ends (flags, a flat config file, a config file's ``steps:`` list, Python steps) give one
cache (trials/steps.py)."""

from __future__ import annotations

import re

import pytest

import prebake
from benchmarks.trials.options_resources import in_child
from benchmarks.trials.steps import BAD, PUBLIC_STEPS, _shows, steps
from prebake.errors import OptionError, PrebakeError
from prebake.steps import BandPass, CenterCrop, CropOrPad, Resample, Resize, SegmentCycles, ShorterSide
from prebake.synthetic import write_audio_folder, write_image_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("p") / "photos", classes=("a", "b"), per_class=2, size=(8, 8))


@pytest.mark.parametrize("field, value, shown", [
    ("max_pixels", -1, "`max_pixels` is -1, out of range"),
    ("max_pixels", 0, "`max_pixels` is 0, out of range"),
    ("max_voxels", True, "`max_voxels` is True, expected an integer"),
    ("max_voxels", 2.5, "`max_voxels` is 2.5, expected an integer"),
    ("fps", float("nan"), "`fps` is nan, out of range"),
    ("fps", -25.0, "`fps` is -25.0, out of range"),
    ("frame_size", 0, "`frame_size` is 0, out of range"),
    ("channel", "left", "`channel` is 'left'; give mix"),
    ("audio_dtype", "int8", "`audio_dtype` is 'int8'; give one of"),
    ("label_columns", "diagnosis", "label_columns is 'diagnosis'"),
    ("keep_columns", "age", "keep_columns is 'age'"),
    ("delimiter", 5, "`delimiter` is 5, expected a string"),
])
def test_a_bad_source_option_is_refused_before_any_work(photos, tmp_path, field, value, shown):
    """Before: SourceOptions went unchecked (max_pixels=-1 made every image a bad item, channel='left' a
    SourceError about the folder's kind), where the flat Python setting had been refused up front."""
    with pytest.raises(OptionError, match=_re(shown)):
        prebake.build(photos, tmp_path / "c", source_options=prebake.SourceOptions(**{field: value}), workers=0)
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.partial").exists()


@pytest.mark.parametrize("step, shown", [
    (Resize(10**6), "`Resize(size=1000000)` makes images of 1,000,000 x 1,000,000"),
    (ShorterSide(10**5), "`ShorterSide(size=100000)` makes images of 100,000 x 100,000"),
    (CenterCrop(9000), "`CenterCrop(size=9000)` makes images of 9,000 x 9,000"),
    (CropOrPad((2000, 2000, 2000)), "`CropOrPad(shape=(2000, 2000, 2000), value=0.0)` makes volumes of"),
])
def test_a_step_past_the_input_limits_is_refused_before_any_work(photos, tmp_path, step, shown):
    """Before: Resize(10**6) ran, and every item was a MemoryError (a SourceError after the whole build).

    In a child under a memory limit: accepted, it would ask for terabytes."""
    def attempt() -> str | None:
        try:
            prebake.build(photos, tmp_path / "c", [step], workers=0, progress=False)
        except OptionError as e:
            found = re.search(_re(shown) + r".*over the limit of .*raise `max_(pixels|voxels)`", str(e))
            return None if found else str(e)
        except PrebakeError as e:
            return f"{type(e).__name__}, not an OptionError: {e}"
        return "built"

    problem, _ = in_child(attempt, timeout=120)
    assert problem is None, problem
    assert not (tmp_path / "c").exists()
    options = prebake.SourceOptions(max_pixels=10**13, max_voxels=10**10)  # a raised limit lets it through
    prebake.bake.api.prepare(photos, tmp_path / "c", [step], source_options=options)


BAD_CYCLES = [
    ({"length": float("nan")}, "length", "nan"), ({"length": float("inf")}, "length", "inf"),
    ({"length": "8"}, "length", "'8'"), ({"length": True}, "length", "True"), ({"length": 0}, "length", "0"),
    ({"heart_rate": (40.0,)}, "heart_rate", r"\(40.0,\)"), ({"heart_rate": "ab"}, "heart_rate", "'ab'"),
    ({"heart_rate": (float("nan"), 150)}, "heart_rate", "nan"), ({"heart_rate": 60}, "heart_rate", "60"),
    ({"heart_rate": (150, 40)}, "heart_rate", "150"), ({"fallback": ["bad"]}, "fallback", r"\['bad'\]"),
    ({"min_periodicity": float("nan")}, "min_periodicity", "nan"), ({"min_periodicity": 2.0}, "min_periodicity", "2.0"),
    ({"max_deviation": -1}, "max_deviation", "-1"), ({"max_deviation": "0.3"}, "max_deviation", "'0.3'"),
    ({"alpha": float("inf")}, "alpha", "inf"), ({"alpha": -5.0}, "alpha", "-5.0"),
]


@pytest.mark.parametrize("params, field, value", BAD_CYCLES, ids=[f"{f}={v}" for _, f, v in BAD_CYCLES])
def test_segment_cycles_refuses_each_bad_parameter_naming_it(params, field, value):
    """Before: length=NaN was a ValueError, inf an OverflowError, heart_rate=(40,) a ValueError, 'ab' a
    ValueError from float(), and min_periodicity, max_deviation and alpha were not checked at all."""
    with pytest.raises(OptionError, match=rf"SegmentCycles.{field}.*{value}"):
        SegmentCycles(**params)


def test_a_band_pass_before_a_resample_is_checked_at_the_rate_it_runs_at(tmp_path):
    """Before: the first Resample's rate was used whatever the order, so a valid list was refused."""
    hearts = write_audio_folder(tmp_path / "hearts", classes=("a",), per_class=2, rate=2000)
    cache = prebake.build(hearts, tmp_path / "c", [BandPass(25, 600), Resample(1000)], workers=0)
    assert len(cache) == 2 and int(cache[0]["sample_rate"]) == 1000
    with pytest.raises(OptionError, match=r"`BandPass\(low=25.0, high=600.0, order=4\)`: HIGH 600 Hz must be below "
                                          r"half of `Resample\(rate=1000\)` \(Nyquist 500 Hz\)"):
        prebake.build(hearts, tmp_path / "d", [Resample(1000), BandPass(25, 600)], workers=0)
    with pytest.raises(OptionError, match=r"the signals are at 2000 Hz \(Nyquist 1000 Hz\)"):
        prebake.build(hearts, tmp_path / "d", [BandPass(25, 1200), Resample(4000)], workers=0)
    assert not (tmp_path / "d").exists()


def test_the_flags_name_the_resample_that_sets_the_rate(tmp_path, capsys):
    from prebake.cli import main

    hearts = write_audio_folder(tmp_path / "hearts", classes=("a",), per_class=1, rate=2000)
    assert main(["build", str(hearts), str(tmp_path / "c"), "--sample-rate", "1000", "--bandpass", "25", "600"]) == 2
    assert "--bandpass: HIGH 600 Hz must be below half of --sample-rate (Nyquist 500 Hz)" in \
        capsys.readouterr().err


def test_the_trial_finds_no_failure(tmp_path):
    row = steps(tmp_path, trials=6, seed=3)
    assert row.trials >= 6 and row.failures == 0, row.examples


def _re(text: str) -> str:
    return re.escape(text)



@pytest.mark.parametrize("name, field", sorted(BAD))
def test_every_bad_value_of_every_step_parameter_is_an_option_error_naming_it(name, field):
    """Each value of trials/steps.py's BAD table (bools, NaN, inf, 0, negatives, strings, wrong lengths)."""
    make, valid = PUBLIC_STEPS[name]
    for value in BAD[(name, field)]:
        with pytest.raises(OptionError) as e:
            make(**{**valid, field: value})
        assert name in str(e.value) and field in str(e.value) and _shows(value, str(e.value)), str(e.value)


COUNTED = '''
import os
import numpy as np
class Items:
    def __len__(self): return 6
    def fingerprint(self): return "counted-v1"
    def __getitem__(self, i):
        with open(os.environ["PREBAKE_TEST_READS"], "a") as f:
            f.write(f"{i}\\n")
        return {"x": np.full(3, i, np.int64)}
def make(): return Items()
'''


def test_an_up_to_date_build_reads_no_item_when_no_step_needs_a_column(tmp_path, monkeypatch):
    """Before: every build read items to check the steps' columns even when no step needs one, an up-to-date
    build too (and each waiting rank of a torchrun job: tests/bake/test_distributed.py)."""
    (tmp_path / "ds.py").write_text(COUNTED)
    log = tmp_path / "reads.txt"
    monkeypatch.setenv("PREBAKE_TEST_READS", str(log))

    def build():
        return prebake.build(dataset=f"{tmp_path / 'ds.py'}:make", out=tmp_path / "c", steps=[_double], workers=0,
                             progress=False)

    assert build().build_report.action == "built"
    assert sorted(map(int, log.read_text().split())) == [0, 0, 1, 2, 3, 4, 5]  # + the probe that learns the columns
    log.unlink()
    assert build().build_report.action == "up to date" and not log.exists()


def _double(item):
    return {**item, "x": item["x"] * 2}
