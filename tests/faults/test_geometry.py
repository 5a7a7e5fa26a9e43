"""Geometry under attack (trials/geometry.py): every kind of trial once or twice, 0 failures."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.trials.geometry import TRIALS, attempt, geometry

pytest.importorskip("nibabel")
pytest.importorskip("pydicom")


@pytest.mark.parametrize("kind", sorted(TRIALS))
def test_each_kind_of_geometry_trial_passes(tmp_path, kind):
    for seed in range(2):
        problem = attempt(kind, tmp_path / f"{seed}", np.random.default_rng(seed))
        assert problem is None, problem


def test_the_trial_row_counts_every_kind_without_a_failure(tmp_path):
    row = geometry(tmp_path, trials=len(TRIALS) + 3, seed=7)
    assert row.trials == len(TRIALS) + 3 and row.failures == 0, row.examples
    assert all(n >= 1 for n in row.notes["kinds"].values())
