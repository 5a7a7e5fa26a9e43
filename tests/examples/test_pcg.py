"""examples/pcg: the YAML config's typed sections, the three data paths on the same cycles, and the tiny
config's end-to-end run (loss falls, the probe beats chance). CPU, real files in tmp_path."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.pcg import data as D
from examples.pcg.__main__ import main
from examples.pcg.config import Config, ConfigError, load
from examples.pcg.model import nt_xent
from examples.pcg.run import make_batches, prepare, run
from examples.pcg.seed import augment, split

CONFIGS = Path(__file__).parents[2] / "examples" / "pcg" / "configs"


def tiny() -> Config:
    return load(CONFIGS / "tiny.yaml")


def test_the_default_config_has_the_seeds_sections_typed():
    cfg = load(CONFIGS / "default.yaml")
    assert cfg.hardware.prefetch_factor == 4 and cfg.hardware.persistent_workers is True
    assert cfg.data_cache.view_cache_refresh_epochs == 5 and cfg.data_cache.cache_in_memory is True
    assert cfg.augmentation.amplitude_scale == (0.8, 1.2) and cfg.model.channels == (16, 32, 64)
    assert isinstance(cfg.train.lr, float) and cfg == Config()  # the file spells out the defaults


@pytest.mark.parametrize("text,match", [
    ("hardwear: {}\n", r"unknown section 'hardwear'; did you mean 'hardware'\?"),
    ("hardware:\n  workers: 2\n", r"unknown key hardware.workers; did you mean 'num_workers'\?"),
    ("data_cache:\n  use_gpu_augment: true\n", r"data_cache.use_gpu_augment; the augmentation runs on the device"),
    ("train:\n  epochs: 2.5\n", r"train.epochs is 2.5, expected int"),
    ("augmentation:\n  time_stretch: [0.8]\n", r"augmentation.time_stretch is \[0.8\], expected a list"),
])
def test_unknown_keys_and_wrong_types_are_errors_naming_the_key(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load(f)
    assert main(["--config", str(f), "--work", str(tmp_path / "w")]) == 2


def test_nt_xent_is_low_for_matching_views_and_high_for_shuffled_ones():
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    assert nt_xent(z, z + 0.01, 0.1) < 0.1 < nt_xent(z, z[torch.randperm(16)], 0.1)


def test_seed_ops_keep_the_length_and_split_is_equal_parts():
    x = np.sin(np.linspace(0, 40, 800)).astype(np.float32)
    y = augment(x, Config().augmentation, 1000, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.array_equal(split(x, 4)[2], x[400:600])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("pcg")
    return work, *prepare(tiny(), work)


def test_every_data_path_yields_the_same_batch_layout_and_the_same_cycles(prepared):
    work, root, cache = prepared
    cfg = tiny()
    seed_cycles = [c for cs in make_batches("viewcache", cfg, root, cache, "cpu").dataset.rec.cycles for c in cs]
    baked, labels, _ = D.eval_cycles(cache, cfg, "cpu")
    assert len(seed_cycles) == len(baked) > 100 and set(labels.tolist()) == {0, 1}
    assert all(np.array_equal(a, b[0].numpy()) for a, b in zip(seed_cycles, baked))
    for path in ("original", "viewcache", "prebake"):
        batch = next(iter(make_batches(path, cfg, root, cache, "cpu").epoch(0)))
        n = cfg.train.batch_size
        assert batch["view1"].shape == batch["view2"].shape == (n, 1, 800), path
        assert batch["subs1"].shape == (n, 4, 1, 200) and batch["view1"].dtype == torch.float32
        assert not torch.equal(batch["view1"], batch["view2"])  # two views, drawn apart


def test_the_view_cache_serves_the_same_views_until_its_refresh(prepared):
    work, root, cache = prepared
    cfg = tiny()
    cfg.data_cache.view_cache_refresh_epochs = 2
    batches = make_batches("viewcache", cfg, root, cache, "cpu")
    seen = []
    for epoch in range(3):
        views = {}
        for b in batches.epoch(epoch):
            for i, e, v in zip(b["item"].tolist(), b["element"].tolist(), b["view1"]):
                views[(i, e)] = v
        seen.append(views)
    common = set(seen[0]) & set(seen[1]) & set(seen[2])
    assert all(torch.equal(seen[0][k], seen[1][k]) for k in common)  # epochs 0 and 1: the same views
    assert sum(not torch.equal(seen[1][k], seen[2][k]) for k in common) > len(common) // 2  # refreshed at 2


def test_tiny_run_loss_falls_and_the_probe_beats_chance(prepared, tmp_path):
    work, _, _ = prepared
    out = tmp_path / "prebake.csv"
    results = run(tiny(), "prebake", work, csv_path=out)
    assert len(results) == 4
    assert results[-1].loss < results[0].loss
    assert min(r.probe_accuracy for r in results) > 0.7  # two balanced classes: chance is 0.5
    rows = list(csv.DictReader(open(out)))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert {"loss", "samples_per_s", "data_wait_fraction", "probe_accuracy", "transform_fraction"} <= set(rows[0])
    assert all(0 <= float(r["data_wait_fraction"]) <= 1 and float(r["samples_per_s"]) > 0 for r in rows)
    # the six ops x2 views run in the Loader's next() on this CPU: counted as the device's work, not as waiting
    assert all(0 < float(r["transform_fraction"]) < 1 for r in rows)


def test_the_cli_runs_the_original_path_on_given_recordings(prepared, tmp_path):
    work, root, _ = prepared
    code = main(["--config", str(CONFIGS / "tiny.yaml"), "--data", str(root), "--work", str(tmp_path / "w"),
                 "--data_path", "original", "--epochs", "1"])
    assert code == 0
    (row,) = list(csv.DictReader(open(tmp_path / "w" / "original.csv")))
    assert float(row["probe_accuracy"]) > 0.5


def test_the_augmentation_is_the_same_on_the_loop_or_on_the_loader_threads(prepared):
    work, _, cache = prepared
    cfg, threaded = tiny(), tiny()
    threaded.hardware.augment_in_threads = True
    a = list(D.PrebakeBatches(cache, cfg, "cpu").epoch(1))
    b = list(D.PrebakeBatches(cache, threaded, "cpu").epoch(1))
    assert len(a) == len(b) > 1
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(a[0]["view1"], a[0]["view2"])


@pytest.mark.slow
def test_the_bench_compares_every_path_in_one_run(tmp_path):
    import json

    from examples.pcg.bench import THREADED
    from examples.pcg.bench import main as bench

    assert bench(["--config", str(CONFIGS / "tiny.yaml"), "--data-epochs", "1", "--train-epochs", "2",
                  "--out", str(tmp_path)]) == 0
    (out,) = tmp_path.glob("pcg-*.json")
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"original", "viewcache", "prebake", THREADED}
    assert doc["same_cycles"]["identical"] is True
    assert set(doc["ratios"]) == {f"prebake/{p} {part}" for p in ("original", "viewcache", THREADED)
                                  for part in ("data", "train")}
