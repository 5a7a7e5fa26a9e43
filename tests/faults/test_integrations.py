"""The integrations under random interruptions and random data (the trial benchmarks/faults.py runs with more
trials): Lightning killed at a random step, StatefulDataLoader stopped at a random batch, random HF datasets."""

from __future__ import annotations

import os

import pytest

from benchmarks.trials.integrations import integrations

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
for package in ("lightning", "torchdata", "datasets"):
    pytest.importorskip(package)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_integrations_trial(tmp_path):
    row = integrations(tmp_path, 12, seed=5)
    assert row.trials >= 12 and row.failures == 0, row.examples
