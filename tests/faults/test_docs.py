"""The docs' results tables under attack (trials/docs.py): results files whose schema drifted, GPU runs, new
benchmarks and READMEs around the table's markers, through docs/gen_results.py."""

from __future__ import annotations

from benchmarks.trials.docs import docs


def test_random_results_files_and_readmes(tmp_path):
    row = docs(tmp_path, 60, seed=0)
    assert row.failures == 0, row.examples
    assert row.trials >= 60


def test_another_seed(tmp_path):
    row = docs(tmp_path, 40, seed=1)
    assert row.failures == 0, row.examples
