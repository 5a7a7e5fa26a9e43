"""MONAI pipelines baked by prebake under random deterministic prefixes and parameters (the trial benchmarks/faults.py
runs with more trials): PersistentDataset's values, the remainder, up to date when nothing changed, a changed parameter
rebuilt and named."""

from __future__ import annotations

import pytest

pytest.importorskip("nibabel")
pytest.importorskip("monai")

from benchmarks.trials.monai import monai


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_monai_trial(tmp_path):
    row = monai(tmp_path, 6, seed=3)
    assert row.trials >= 6 * 4 and row.failures == 0, row.examples
