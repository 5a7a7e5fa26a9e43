"""End-to-end builds from real files: CIFAR, image folders, transforms, workers, the Dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import prebake
from prebake.steps import CenterCrop, Resize, ShorterSide
from prebake.synthetic import cifar_arrays, write_cifar10_python, write_image_folder


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_cifar10_python(tmp_path_factory.mktemp("data"), n_train=300, n_test=60, seed=3)


def test_cifar10_python_builds_train_and_test_in_source_order(cifar_dir, tmp_path):
    caches = prebake.build(cifar_dir, tmp_path / "out", workers=2, chunk_rows=32)
    assert set(caches) == {"train", "test"}
    for split, n in (("train", 300), ("test", 60)):
        images, labels = cifar_arrays(n, 10, 3, split)
        # plain numpy reads the columns back, in the source's order
        assert np.array_equal(np.load(tmp_path / "out" / split / "image.npy", allow_pickle=False), images)
        assert np.array_equal(np.load(tmp_path / "out" / split / "label.npy", allow_pickle=False), labels)
        assert prebake.verify(tmp_path / "out" / split).ok
        cache = caches[split]
        assert len(cache) == n and np.array_equal(cache.targets, labels)
        assert cache.classes[0] == "airplane" and cache.columns == ["image", "label"]


def test_workers_do_not_change_a_byte(cifar_dir, tmp_path):
    a = prebake.build(cifar_dir, tmp_path / "a", [Resize(40)], split="train", workers=0)
    b = prebake.build(cifar_dir, tmp_path / "b", [Resize(40)], split="train", workers=2, chunk_rows=17)
    for f in ("image.npy", "label.npy"):
        assert (a.path / f).read_bytes() == (b.path / f).read_bytes()
    assert a.manifest["stats"]["label_histogram"] == b.manifest["stats"]["label_histogram"]


def test_resize_and_center_crop_match_pillow(tmp_path):
    root = write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=3, size=(40, 30))
    cache = prebake.build(root, tmp_path / "c", [ShorterSide(20), CenterCrop(16)], workers=0)
    assert cache[0]["image"].shape == (3, 16, 16)
    first = sorted((root / "a").iterdir())[0]
    img = Image.open(first).convert("RGB").resize((26, 20), Image.Resampling.BILINEAR)  # shorter side 30 -> 20
    want = np.asarray(img.crop((5, 2, 21, 18))).transpose(2, 0, 1)
    assert np.array_equal(cache[0]["image"], want)
    assert cache.classes == ["a", "b"] and cache.targets.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folder_with_splits(tmp_path):
    root = write_image_folder(tmp_path / "imgs", classes=("x", "y"), per_class=2, splits=("train", "val"))
    caches = prebake.build(root, tmp_path / "out", [Resize(8)], workers=0)
    assert sorted(caches) == ["train", "val"]
    assert (tmp_path / "out" / "train" / "manifest.json").exists()
    assert caches["val"][3]["image"].shape == (3, 8, 8)


def test_user_transform_adds_a_column(tmp_path, cifar_dir):
    def mean_colour(item):
        item["mean"] = item["image"].reshape(3, -1).mean(axis=1).astype(np.float32)
        return item

    cache = prebake.build(cifar_dir, tmp_path / "c", [mean_colour], split="test", workers=0)
    images, _ = cifar_arrays(60, 10, 3, "test")
    np.testing.assert_allclose(cache.column("mean"), images.reshape(60, 3, -1).mean(axis=2), rtol=1e-6)


def test_cache_works_in_a_dataloader_with_workers(cifar_dir, tmp_path):
    cache = prebake.build(cifar_dir, tmp_path / "c", split="test", workers=0)
    loader = torch.utils.data.DataLoader(cache, batch_size=16, num_workers=2, shuffle=False)
    batches = list(loader)
    images, labels = cifar_arrays(60, 10, 3, "test")
    assert torch.equal(torch.cat([b["image"] for b in batches]), torch.from_numpy(images))
    assert torch.equal(torch.cat([b["label"] for b in batches]), torch.from_numpy(labels))


def test_getitems_gathers_a_batch_in_the_asked_order(cifar_dir, tmp_path):
    cache = prebake.build(cifar_dir, tmp_path / "c", split="test", workers=0)
    idx = [5, 2, 59, 2, 0]
    batch = cache.__getitems__(idx)
    for k, i in enumerate(idx):
        assert np.array_equal(batch[k]["image"], cache[i]["image"]) and batch[k]["label"] == cache[i]["label"]
    assert batch[0]["image"].flags.writeable
    with pytest.raises(IndexError):
        cache[60]


def test_ragged_column_from_a_dataset(tmp_path):
    class Signals:
        def __len__(self):
            return 7

        def __getitem__(self, i):
            return {"signal": np.arange(i * 3, dtype=np.int16).reshape(i, 3), "label": i % 2}

    cache = prebake.build(Signals(), tmp_path / "c", ragged=("signal",), workers=2, chunk_rows=2)
    assert [cache[i]["signal"].shape for i in range(7)] == [(i, 3) for i in range(7)]
    assert np.array_equal(cache[5]["signal"], np.arange(15, dtype=np.int16).reshape(5, 3))
    assert prebake.verify(tmp_path / "c").ok


def test_output_that_is_not_a_cache_is_never_overwritten(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(prebake.PrebakeError, match="not a prebake cache"):
        prebake.build(root, out, workers=0)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
