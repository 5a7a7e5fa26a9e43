"""examples/medical3d: the config (typed, unknown keys named), a tiny run whose loss falls, its epoch CSV,
the patient split it saved, and a quick benchmark run whose outputs agree across pipelines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import prebake

pytest.importorskip("nibabel")
from examples.medical3d.__main__ import main  # noqa: E402
from examples.medical3d.config import ConfigError, load_config  # noqa: E402

TINY = {"output_dir": "out", "csv_path": "data/volumes.csv", "cache_dir": "cache", "synthetic_patients": 16,
        "epochs": 8, "batch_size": 4, "learning_rate": 0.003, "num_workers": 0, "device": "cpu",
        "volume": {"spacing": [2.0, 2.0, 2.0], "volume_shape": [16, 16, 16]},
        "split": {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}},
        "augment": {"crop": [14, 14, 14]}}


def test_the_shipped_config_loads_and_seed_keys_that_are_gone_are_named(tmp_path):
    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "medical3d" / "config.json")
    assert cfg.batch_size == 8 and cfg.cache_config.preload_val_data and cfg.volume.spacing == (1.5, 1.5, 1.5)
    for bad, match in [({"cache_config": {"cache_size": 1000}},
                        "unknown key 'cache_config.cache_size' .a key of the original scripts"),
                       ({"batch_sise": 8}, "did you mean 'batch_size'"),
                       ({"epochs": "ten"}, "epochs is 'ten', expected int"),
                       ({"volume": {"spacing": [1, 2]}}, None)]:
        (tmp_path / "c.json").write_text(json.dumps(bad))
        if match is None:
            assert load_config(tmp_path / "c.json").volume.spacing == (1.0, 2.0)  # checked when baking
            continue
        with pytest.raises(ConfigError, match=match):
            load_config(tmp_path / "c.json")
    (tmp_path / "c.yaml").write_text("batch_size: 2\nsplit:\n  by: patient_id\n")
    assert load_config(tmp_path / "c.yaml").batch_size == 2


def test_a_tiny_run_learns_and_writes_its_epoch_csv(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    assert main(["--config", str(tmp_path / "tiny.json")]) == 0
    with open(tmp_path / "out" / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    losses = [float(r["train_loss"]) for r in rows]
    assert np.mean(losses[-2:]) < losses[0], losses
    assert all(float(r["train_samples_per_s"]) > 0 and 0 <= float(r["data_wait_fraction"]) <= 1 for r in rows)
    cache = prebake.open(tmp_path / "cache")
    parts = prebake.load_splits(cache)
    ids = cache.column("patient_id")
    assert not set(ids[parts["train"]]) & set(ids[parts["val"]])
    assert cache.column("image").dtype == np.int16


@pytest.mark.slow
def test_the_benchmark_runs_and_every_pipeline_agrees(tmp_path):
    pytest.importorskip("monai", reason="monai is not installed: the benchmark's MONAI rows cannot run")
    pytest.importorskip("h5py")
    from examples.medical3d.bench import main as bench

    out = tmp_path / "r.json"
    bench(["--volumes", "6", "--size", "24", "--epochs", "1", "--repeat", "1", "--workers", "2",
           "--workdir", str(tmp_path / "w"), "--out", str(out), "--only", "monai-persistent", "--only", "seed-hdf5"])
    doc = json.loads(out.read_text())
    names = [r["pipeline"] for r in doc["results"]]
    assert names == ["prebake", "monai-persistent", "seed-hdf5"]
    for r in doc["results"]:
        assert "error" not in r, r
        assert r["equal_outputs"] and r["items"] == 6 and r["cache_bytes"] > 0
    assert doc["machine"]["gpu"] == "not measured"
