"""kill -9 of a whole build (builder, workers, write-behind and write-ahead threads) of photos of every size, and
a file size limit anywhere in its column: the build ends, refuses the limit with a DiskFullError, and the build
again gives an uninterrupted build's bytes. Random trials: benchmarks/trials/mixed_faults.py."""

from __future__ import annotations

import os

import pytest

from benchmarks.trials.mixed_faults import trial_mixed_faults

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(os, "killpg"), reason="needs fork and killpg")


def test_kills_and_limits_during_a_mixed_build(tmp_path):
    row = trial_mixed_faults(tmp_path, trials=6, seed=os.getpid() % 1000)
    assert row.failures == 0, row.examples
    assert row.notes["refused for the limit"] >= 1  # a limit under the column's size stops the build


def test_kills_and_limits_during_a_mixed_build_in_one_process(tmp_path):
    """The build in its own process places the photos too (its stream thread only collects the digests)."""
    row = trial_mixed_faults(tmp_path, trials=6, seed=os.getpid() % 1000 + 1, workers=0)
    assert row.failures == 0, row.examples
    assert row.notes["refused for the limit"] >= 1
