"""examples/federated: Dirichlet partition, FedAvg/FedLoRA aggregation, model weights, data paths,
an end-to-end run with resume, and the memory of 100 client views. CPU, real files in tmp_path."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import prebake
from examples.federated.config import Config, parse_args
from examples.federated.data import ClientBatches, PrebakeData, make_data, open_caches
from examples.federated.fed import LoraSettings, fedavg, fedavg_model, fedlora_model
from examples.federated.model import VARIANTS, ViT, load_pretrained
from examples.federated.partition import (
    PartitionError,
    dirichlet_partition,
    label_counts,
    load_partition,
    save_partition,
)
from examples.federated.run import run
from examples.federated.train import make_optimizer, train_epoch
from prebake.synthetic import write_cifar10_python


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A learnable synthetic CIFAR-10 (class-dependent patterns + noise) and its prebake cache."""
    root = tmp_path_factory.mktemp("cifar")
    src = write_cifar10_python(root, n_train=800, n_test=200, seed=0)
    open_caches(root / "cache", src)
    return src, root / "cache"


def small_config(cifar: tuple[Path, Path], out: Path, **kw: object) -> Config:
    src, cache = cifar
    base = dict(vit="micro", image_size=32, epochs=2, num_users=4, frac=1.0, local_ep=1, local_bs=32, lr=2e-3,
                dirichlet_alpha=1.0, min_partition_size=20, device="cpu", out=out, cache=cache, data=src, workers=0)
    return Config(**{**base, **kw})


# -- partition --------------------------------------------------------------------------------------

LABELS = np.random.default_rng(0).integers(0, 10, 5000)


def test_partition_covers_every_index_once_with_min_size() -> None:
    parts = dirichlet_partition(LABELS, 100, 0.5, min_partition_size=10, seed=1)
    assert len(parts) == 100 and min(len(p) for p in parts) >= 10
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(LABELS)))


def test_partition_is_seeded_and_saved(tmp_path: Path) -> None:
    a, b = (dirichlet_partition(LABELS, 20, 0.5, seed=3) for _ in range(2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = dirichlet_partition(LABELS, 20, 0.5, seed=4)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    save_partition(a, LABELS, tmp_path, alpha=0.5, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, load_partition(tmp_path / "partition.npz")))
    assert json.loads((tmp_path / "partition.json").read_text())["sizes"] == [len(p) for p in a]


def skew(alpha: float) -> float:
    """Mean over clients of the share of the client's most common class (0.1 = balanced)."""
    counts = label_counts(dirichlet_partition(LABELS, 20, alpha, min_partition_size=1, seed=0), LABELS, 10)
    return float((counts.max(1) / counts.sum(1)).mean())


def test_label_skew_grows_as_alpha_shrinks() -> None:
    s = [skew(a) for a in (100.0, 1.0, 0.1)]
    assert s[0] < s[1] < s[2] and s[0] < 0.2 and s[2] > 0.5


def test_partition_gives_up_after_bounded_resampling() -> None:
    with pytest.raises(PartitionError, match="min_partition_size=200 .* in all 10 draws; raise --dirichlet_alpha"):
        dirichlet_partition(LABELS, 20, 0.05, min_partition_size=200, seed=0)


# -- aggregation ------------------------------------------------------------------------------------

def test_fedavg_is_the_sample_weighted_mean() -> None:
    models = [nn.Linear(3, 2) for _ in range(3)]
    for k, m in enumerate(models):
        nn.init.constant_(m.weight, float(k + 1))
        nn.init.constant_(m.bias, float(-k))
    states = [fedavg_model(m).send() for m in models]
    mean = fedavg(states, [10, 30, 60])
    assert torch.allclose(mean["weight"], torch.full((2, 3), (1 * 10 + 2 * 30 + 3 * 60) / 100))
    assert torch.allclose(mean["bias"], torch.full((2,), (0 * 10 - 1 * 30 - 2 * 60) / 100))
    target = fedavg_model(nn.Linear(3, 2))
    target.receive(mean)
    assert torch.equal(target.model.weight, mean["weight"])


def test_fedlora_trains_and_sends_only_adapters_and_head() -> None:
    pytest.importorskip("peft")
    lora = LoraSettings(r=4, alpha=8, targets=("qkv", "proj", "fc1", "fc2"))
    fed = fedlora_model(ViT(VARIANTS["micro"], 32, 10), lora)
    assert fed.shared and all("lora_" in n or ".head." in n for n in fed.shared)
    assert sum(".head." in n for n in fed.shared) == 2
    assert not any("patch_embed" in n for n in fed.shared)  # only the blocks' proj, not the patch conv
    for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
        assert any(f"blocks.1.{layer}.lora_A" in n for n in fed.shared)
    base = {n: p.detach().clone() for n, p in fed.model.named_parameters() if n not in fed.shared}
    opt = make_optimizer(fed.params, "adam", 1e-2, 0.9)
    g = torch.Generator().manual_seed(0)
    batches = [{"image": torch.randn(8, 3, 32, 32, generator=g), "label": torch.arange(8)} for _ in range(3)]
    before = fed.send()
    train_epoch(fed.model, opt, batches, torch.device("cpu"))
    after = fed.send()
    assert set(after) == set(fed.shared)
    assert any(not torch.equal(before[n], after[n]) for n in after if "lora_B" in n)
    assert all(torch.equal(p, base[n]) for n, p in fed.model.named_parameters() if n in base)  # bit-identical
    averaged = fedavg([before, after], [1, 1])
    fed.receive(averaged)
    assert set(averaged) == set(fed.shared)
    assert all(torch.equal(p, base[n]) for n, p in fed.model.named_parameters() if n in base)


# -- model weights ----------------------------------------------------------------------------------

def test_timm_named_weights_load_with_resized_pos_embed_and_new_head(tmp_path: Path) -> None:
    src = ViT(VARIANTS["micro"], 32, 100)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "vit.pth")
    dst = ViT(VARIANTS["micro"], 64, 10)
    head = dst.head.weight.detach().clone()
    load_pretrained(dst, tmp_path / "vit.pth")
    assert torch.equal(dst.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
    assert dst.pos_embed.shape == (1, 1 + 8 * 8, 64)
    assert torch.equal(dst.pos_embed[:, 0], src.pos_embed[:, 0])
    assert torch.equal(dst.head.weight, head)  # 100 classes vs 10: the head is not loaded


def test_hf_vit_weights_give_the_same_features(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                                    image_size=32, patch_size=8, layer_norm_eps=1e-6)
    hf = transformers.ViTModel(hf_cfg, add_pooling_layer=False).eval()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours = ViT(VARIANTS["micro"], 32, 10).eval()
    load_pretrained(ours, tmp_path / "pytorch_model.bin")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours.forward_features(x), hf(pixel_values=x).last_hidden_state, atol=1e-4)


def test_pretrained_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pth: no such file"):
        load_pretrained(ViT(VARIANTS["micro"], 32, 10), tmp_path / "missing.pth")
    torch.save(ViT(VARIANTS["micro"], 32, 10).state_dict(), tmp_path / "micro.pth")
    with pytest.raises(ValueError, match="micro.pth lacks .* pick the matching --vit"):
        load_pretrained(ViT(VARIANTS["tiny"], 32, 10), tmp_path / "micro.pth")


# -- options and data paths -------------------------------------------------------------------------

def test_seed_options_parse_into_the_config() -> None:
    cfg = parse_args(["--alg", "fedlora", "--vit", "tiny", "--image_size", "224", "--epochs", "150", "--num_users",
                      "100", "--frac", "0.1", "--local_ep", "5", "--local_bs", "32", "--lr", "0.0003", "--optimizer",
                      "adam", "--lora_r", "8", "--lora_alpha", "16", "--lora_targets", "qkv,fc1"])
    assert (cfg.alg, cfg.epochs, cfg.clients_per_round, cfg.learning_rate, cfg.lora_targets) == \
        ("fedlora", 150, 10, 3e-4, ("qkv", "fc1"))
    assert parse_args(["--alg", "fedavg"]).learning_rate == 1e-4


def test_missing_cache_without_data_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(prebake.CacheNotFoundError, match="pass --data path/to/cifar-10-batches-py"):
        open_caches(tmp_path / "nothing", None)


@pytest.mark.parametrize("path", ["prebake", "offline", "online"])
def test_every_data_path_yields_the_same_kind_of_batch(cifar: tuple[Path, Path], tmp_path: Path, path: str) -> None:
    cfg = small_config(cifar, tmp_path, data_path=path, image_size=48, local_bs=16)
    train, test = open_caches(cfg.cache, None)
    parts = [np.arange(0, 40), np.arange(40, 100)]
    data = make_data(train, test, parts, cfg)
    batches = list(data.client_epoch(1, 0))
    labels = torch.cat([b["label"] for b in batches])
    assert sorted(labels.tolist()) == sorted(train.targets[40:100].tolist())
    x = batches[0]["image"]
    assert x.dtype == torch.float32 and x.shape == (16, 3, 48, 48) and -3 < float(x.mean()) < 3


def test_client_batches_reshuffle_per_epoch() -> None:
    s = ClientBatches(4, seed=0)
    s.select(np.arange(10), client=3, epoch=0)
    first = list(s)
    s.select(np.arange(10), client=3, epoch=1)
    assert len(first) == 3 and sorted(sum(first, [])) == list(range(10)) and list(s) != first


# -- memory -----------------------------------------------------------------------------------------

def rss_bytes() -> int:
    """Resident memory that is not file-backed: a copy shows up here, pages of a memory map do not."""
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
def test_100_client_views_share_one_copy(tmp_path: Path) -> None:
    src = write_cifar10_python(tmp_path, n_train=20000, n_test=100, seed=0)
    train, test = open_caches(tmp_path / "cache", src)
    image_bytes = train.column("image").nbytes  # 61 MB
    parts = dirichlet_partition(train.targets, 100, 0.5, min_partition_size=10, seed=0)
    cfg = Config(vit="micro", image_size=32, num_users=100, device="cpu", out=tmp_path)
    before = rss_bytes()
    data = PrebakeData(train, test, parts, cfg)  # 100 client Loaders, preload="device" (here the CPU)
    grown = rss_bytes() - before
    assert image_bytes * 0.9 < grown < image_bytes * 1.2, \
        f"100 preloaded client views grew RSS by {grown / 2**20:.1f} MB"
    shared = data.source
    before = rss_bytes()
    more = [prebake.Loader(shared, 32, indices=p, columns=["image", "label"], preload="device") for p in parts]
    grown = rss_bytes() - before
    assert grown < image_bytes / 20, f"100 more client views grew RSS by {grown / 2**20:.1f} MB"
    ptrs = {c._data["image"].data_ptr() for c in data.clients + more}
    assert len(ptrs) == 1  # one copy of the images behind all 200 views
    batch = next(iter(more[7]))
    assert batch["image"].shape[1:] == (3, 32, 32)


# -- end to end -------------------------------------------------------------------------------------

def test_two_rounds_learn_and_resume_continues_exactly(cifar: tuple[Path, Path], tmp_path: Path) -> None:
    logs = run(small_config(cifar, tmp_path / "full"))
    assert [r.round for r in logs] == [1, 2]
    assert logs[-1].test_accuracy is not None and logs[-1].test_accuracy > 0.5  # chance is 0.1; 0.87 here
    rows = list(csv.DictReader((tmp_path / "full" / "log.csv").open()))
    assert [r["round"] for r in rows] == ["1", "2"] and 0 <= float(rows[0]["data_wait_fraction"]) < 1
    assert 0 < float(rows[0]["transform_fraction"]) < 1  # the clients' Loaders flip and normalize on the device
    assert (tmp_path / "full" / "partition.npz").exists()

    run(small_config(cifar, tmp_path / "cut", epochs=1))
    resumed = run(small_config(cifar, tmp_path / "cut", resume=True))
    assert [r.round for r in resumed] == [2]
    assert len(list(csv.DictReader((tmp_path / "cut" / "log.csv").open()))) == 2
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], cut[k]) for k in full)  # bit-identical to the uninterrupted run
    assert resumed[0].test_accuracy == logs[-1].test_accuracy


def test_fedlora_run_keeps_the_base_weights(cifar: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("peft")
    logs = run(small_config(cifar, tmp_path, alg="fedlora", epochs=1, lora_r=4, lora_alpha=8, lr=3e-3))
    assert logs[0].test_accuracy is not None and logs[0].mean_client_loss > 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    torch.manual_seed(0)  # run() seeds with cfg.seed before building the model: the same base init
    fresh = ViT(VARIANTS["micro"], 32, 10).state_dict()
    base = {k.removeprefix("base_model.model.").replace(".base_layer.", "."): v for k, v in state.items()
            if "lora_" not in k and ".head." not in k}
    assert base.keys() == {k for k in fresh if not k.startswith("head.")}
    assert all(torch.equal(v, fresh[k]) for k, v in base.items())


def test_resume_refuses_other_settings(cifar: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*run without --resume"):
        run(small_config(cifar, tmp_path, resume=True))
    (tmp_path / "checkpoint.pt").parent.mkdir(exist_ok=True)
    torch.save({"round": 1, "model": {}, "config": {"alg": "fedlora"}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="other settings .*alg='fedlora', now 'fedavg'"):
        run(small_config(cifar, tmp_path, resume=True))
