"""prebake.lightning.CacheDataModule with real Lightning on CPU: bake in prepare_data, the splits, the device
augmentation, and mid-epoch resume from a Trainer checkpoint (same batches, augmentations and weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

import prebake
from benchmarks.trials.integrations import lightning_run, small_cache
from prebake.errors import MissingExtraError, OptionError, ResumeError
from prebake.integrations.lightning import CacheDataModule

SLOW = os.environ.get("PREBAKE_SLOW_INTEGRATIONS") == "1"
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return small_cache(tmp_path_factory.mktemp("lit") / "c", 30)


@pytest.fixture(scope="module")
def reference(cache):
    return lightning_run(cache.path, 4, seed=3)


@pytest.mark.parametrize("stop", [3, 8, 13])  # 8 steps an epoch: mid-epoch 0, its last batch, mid-epoch 1
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(cache, reference, tmp_path, stop):
    killed = lightning_run(cache.path, 4, 3, kill_at=stop, ckpt=tmp_path / "mid.ckpt")
    resumed = lightning_run(cache.path, 4, 3, ckpt=tmp_path / "mid.ckpt")
    assert len(killed["seen"]) == stop and len(reference["seen"]) == 16
    assert killed["seen"] + resumed["seen"] == reference["seen"]  # the same items and augmented sums, batch by batch
    for a, b in zip(reference["weights"], resumed["weights"]):
        assert torch.equal(a, b)


def test_a_prebake_augment_pipeline_resumes_with_the_same_draws(tmp_path):
    """batch_transform has no generator parameter: the module hands it the batch's generator through .generator."""
    from prebake.augment import batch_transform, image_train_preset

    r = np.random.default_rng(0)
    prebake.write_arrays(tmp_path / "img", {"x": r.integers(0, 255, (20, 3, 4, 4), dtype=np.uint8),
                                            "y": r.normal(size=20).astype(np.float32), "i": np.arange(20)})
    args = {"transform": batch_transform(x=image_train_preset(4, padding=2)), "features": 48}
    ref = lightning_run(tmp_path / "img", 4, 1, **args)
    lightning_run(tmp_path / "img", 4, 1, kill_at=7, ckpt=tmp_path / "mid.ckpt", **args)
    resumed = lightning_run(tmp_path / "img", 4, 1, ckpt=tmp_path / "mid.ckpt", **args)
    assert resumed["seen"] == ref["seen"][7:]
    assert all(torch.equal(a, b) for a, b in zip(ref["weights"], resumed["weights"]))


def test_the_augmentation_runs_on_each_training_batch_with_its_own_draws(cache, reference):
    raw = np.asarray(cache.column("x"))
    for items, total in reference["seen"]:
        assert total != pytest.approx(float(raw[items].sum()), abs=1e-6)
    epoch0, epoch1 = reference["seen"][:8], reference["seen"][8:]
    assert sorted(i for b, _ in epoch0 for i in b) == list(range(30)) == sorted(i for b, _ in epoch1 for i in b)
    assert [b for b, _ in epoch0] != [b for b, _ in epoch1]  # a new order each epoch


def test_each_epoch_draws_a_new_order_when_lightning_stops_epochs_early(cache):
    """limit_train_batches ends epochs early: a Loader would restart its unfinished epoch, the module starts the
    next one."""
    import lightning.pytorch as L

    seen = _fit(L, CacheDataModule(cache.path, 4, seed=1), max_epochs=3, limit_train_batches=2)
    assert seen[0:2] != seen[2:4] != seen[4:6]


def test_splits_from_split_caches_with_validation_in_order(tmp_path):
    for split, n in (("train", 12), ("validation", 5), ("test", 4)):
        small_cache(tmp_path / "c" / split, n, seed=len(split))
    dm = CacheDataModule(tmp_path / "c", 2)
    dm.setup("fit")
    assert [len(dm._loader(r).view) for r in ("train", "val", "test")] == [12, 5, 4]
    assert [i for b in dm.val_dataloader() for i in b["i"].tolist()] == list(range(5))


def test_splits_from_splits_json_and_from_indices(tmp_path):
    cache = small_cache(tmp_path / "c", 20)
    groups = np.arange(20) // 2
    prebake.write_arrays(tmp_path / "g", {"group": groups, "i": np.arange(20)})
    parts = prebake.split(tmp_path / "g", by="group", fractions={"train": 0.6, "val": 0.4}, save=True)
    dm = CacheDataModule(tmp_path / "g", 3)
    dm.setup()
    assert sorted(i for b in dm.train_dataloader() for i in b["i"].tolist()) == parts["train"].tolist()
    assert [i for b in dm.val_dataloader() for i in b["i"].tolist()] == parts["val"].tolist()
    mask = np.arange(20) % 4 == 0
    dm = CacheDataModule(cache.path, 3, indices={"train": ~mask, "test": mask})
    assert [i for b in dm.test_dataloader() for i in b["i"].tolist()] == np.flatnonzero(mask).tolist()
    assert dm.val_dataloader() == []


def test_prepare_data_bakes_the_source_and_then_finds_it_up_to_date(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.ones((9, 4), np.float32), y=np.arange(9, dtype=np.float32) + 0.5,
             i=np.arange(9))
    dm = CacheDataModule(tmp_path / "cache", 3, source=tmp_path / "data.npz", build={"workers": 0})
    dm.prepare_data()
    manifest = (tmp_path / "cache" / "manifest.json").read_bytes()
    dm.prepare_data()
    assert (tmp_path / "cache" / "manifest.json").read_bytes() == manifest
    dm.setup("fit")
    assert sorted(i for b in dm.train_dataloader() for i in b["i"].tolist()) == list(range(9))


@pytest.mark.parametrize("kwargs, words", [
    ({"indices": {"training": [0, 1]}}, "keys train, val and test"),
    ({"indices": {"val": [0, 1]}}, "no 'train'"),
    ({"loader": {"batch_size": 8}}, "sets these itself"),
    ({"loader": {"device": "cpu"}}, "from the Trainer"),
    ({"transform": 5}, "transform"),
    ({"build": ["workers", 2]}, "build is a list"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"seed": "1"}, "seed='1'"),
])
def test_bad_options_are_refused_naming_them(cache, kwargs, words):
    with pytest.raises(OptionError, match=words):
        CacheDataModule(cache.path, **{"batch_size": 4, **kwargs})


def test_a_missing_split_is_refused_naming_what_there_is(tmp_path):
    small_cache(tmp_path / "c" / "val", 3)
    small_cache(tmp_path / "c" / "test", 3)
    with pytest.raises(OptionError, match="no train split"):
        CacheDataModule(tmp_path / "c", 2).setup()


def test_a_checkpoint_of_another_world_size_is_refused(cache):
    dm = CacheDataModule(cache.path, 4)
    dm.setup()
    state = dm.train_dataloader().loader.state_dict()
    with pytest.raises(ResumeError, match="2 rank"):
        dm.load_state_dict({"train": {"ranks": [state, {**state, "rank": 1}]}})
    dm2 = CacheDataModule(cache.path, 4)
    dm2.load_state_dict({"train": {"ranks": [state, {**state, "rank": 1}]}})
    with pytest.raises(ResumeError, match="2 rank"):
        dm2.train_dataloader()
    with pytest.raises(ResumeError, match="expected"):
        dm2.load_state_dict({"train": [state]})
        dm2.train_dataloader()


def test_without_lightning_the_error_says_how_to_install(cache):
    code = ("import sys\nsys.modules['lightning'] = sys.modules['pytorch_lightning'] = None\n"
            "from prebake.integrations.lightning import CacheDataModule\n"
            f"CacheDataModule({str(cache.path)!r}, 4)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode != 0 and "MissingExtraError" in proc.stderr and "prebake[lightning]" in proc.stderr
    assert issubclass(MissingExtraError, ImportError)


def _ddp(cache_arg: str, out: Path, *extra: str) -> list[dict]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(HERE / "lightning_ddp.py"), cache_arg, str(out), *extra],
                          capture_output=True, text=True, check=False, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_ddp_two_processes_bake_once_and_see_each_item_once_per_epoch(tmp_path):
    """prepare_data bakes on rank 0 while rank 1 waits (no collective inside the build), then 23 items over 2 ranks."""
    np.savez(tmp_path / "data.npz", x=np.ones((23, 4), np.float32), y=np.arange(23, dtype=np.float32) + 0.5,
             i=np.arange(23))
    ranks = _ddp(str(tmp_path / "cache"), tmp_path, "--source", str(tmp_path / "data.npz"))
    for epoch in ("0", "1"):
        both = ranks[0]["seen"][epoch] + ranks[1]["seen"][epoch]
        assert sorted(both) == list(range(23)), epoch
    assert ranks[0]["seen"]["0"] != ranks[0]["seen"]["1"]
    assert ranks[0]["weights"] == ranks[1]["weights"]


@pytest.mark.skipif(not SLOW,
                    reason="slow (3 DDP runs, about a minute): PREBAKE_SLOW_INTEGRATIONS=1, make integrations")
def test_ddp_run_stopped_mid_epoch_resumes_each_rank_to_the_same_weights(tmp_path):
    small_cache(tmp_path / "cache", 23)
    full = _ddp(str(tmp_path / "cache"), tmp_path / "full")
    _ddp(str(tmp_path / "cache"), tmp_path / "stop", "--kill-at", "6")
    resumed = _ddp(str(tmp_path / "cache"), tmp_path / "resumed", "--resume", str(tmp_path / "stop" / "mid.ckpt"))
    for r in (0, 1):
        assert resumed[r]["weights"] == full[r]["weights"]
        assert resumed[r]["seen"]["1"] == full[r]["seen"]["1"][6:]  # 4 steps of 3 an epoch: stopped after 2 of epoch 1


def _fit(L, dm, **trainer_args) -> list[list[int]]:
    seen: list[list[int]] = []

    class M(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def training_step(self, batch, k):
            seen.append(batch["i"].tolist())
            return self.lin(batch["x"]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, **trainer_args).fit(M(), datamodule=dm)
    return seen
