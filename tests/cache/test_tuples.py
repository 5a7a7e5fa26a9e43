"""Tuple access: code written for torchvision.datasets.CIFAR10 runs unchanged on prebake.open(..., as_tuple=...)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import prebake
from prebake.synthetic import write_cifar10_python


class DatasetSplit(Dataset):
    """The federated ViT workload's client split over a torchvision CIFAR10, as written there (both of its versions)."""

    def __init__(self, dataset, idxs, wrap=True):
        self.dataset, self.idxs, self.wrap = dataset, [int(i) for i in idxs], wrap

    def __len__(self):
        return len(self.idxs)

    def __getitem__(self, item):
        image, label = self.dataset[self.idxs[item]]
        return (torch.tensor(image), torch.tensor(label)) if self.wrap else (image, label)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("t")
    write_cifar10_python(root / "data", n_train=120, n_test=20, seed=0)
    return prebake.build(root / "data" / "cifar-10-batches-py", root / "cache", workers=1, split="train")


def test_items_unpack_into_image_and_label(cifar):
    ds = prebake.open(cifar.path, as_tuple=("image", "label"))
    image, label = ds[7]
    assert isinstance(label, int) and label == int(cifar.targets[7])
    assert np.array_equal(image, cifar[7]["image"]) and image.dtype == np.uint8 and image.flags.writeable
    assert len(ds) == len(cifar) and ds.classes == cifar.classes and len(ds.classes) == 10
    assert np.array_equal(ds.targets, cifar.targets)
    assert cifar.tuples("label", "image")[7][0] == label  # the order asked for


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("wrap", [True, False])
def test_seed_001_client_split_with_a_stock_dataloader(cifar, num_workers, wrap):
    ds = prebake.open(cifar.path, as_tuple=("image", "label"))
    idxs = np.flatnonzero(np.asarray(ds.targets) < 5)  # a client holding half the classes
    loader = DataLoader(DatasetSplit(ds, idxs, wrap), batch_size=16, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable array" warnings from torch.tensor / from_numpy
        for images, labels in loader:
            assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32) and labels.dtype == torch.int64
            seen += labels.tolist()
            first = int(np.flatnonzero(np.all(cifar.column("image")[idxs] == images[0].numpy(), axis=(1, 2, 3)))[0])
            assert labels[0] == cifar.targets[idxs[first]]
    assert sorted(seen) == sorted(cifar.targets[idxs].tolist())


def test_default_collate_batches_through_getitems(cifar):
    ds = prebake.open(cifar.path, as_tuple=("image", "label"))
    images, labels = next(iter(DataLoader(ds, batch_size=10)))
    assert torch.equal(images, torch.from_numpy(cifar.column("image")[:10].copy()))
    assert labels.tolist() == cifar.targets[:10].tolist()


def test_a_view_as_tuples(tmp_path):
    c = prebake.write_arrays(tmp_path / "c", {"frames": [np.arange(6), np.arange(10, 14)], "label": np.array([3, 4])},
                             classes=["a", "b", "c", "d", "e"])
    ds = prebake.Windows(c, "frames", 3).tuples("frames", "label")
    assert [(f.tolist(), y) for f, y in ds] == [([0, 1, 2], 3), ([1, 2, 3], 3), ([2, 3, 4], 3), ([3, 4, 5], 3),
                                                ([10, 11, 12], 4), ([11, 12, 13], 4)]
    assert ds.targets.tolist() == [3, 3, 3, 3, 4, 4] and ds.classes == ["a", "b", "c", "d", "e"]
    frames, labels = next(iter(DataLoader(ds, batch_size=6)))
    assert frames.shape == (6, 3) and labels.tolist() == [3, 3, 3, 3, 4, 4]


def test_unknown_names_are_refused(cifar):
    with pytest.raises(prebake.ViewError, match=r"as_tuple names \['img'\].*columns are \['image', 'label'\]"):
        prebake.open(cifar.path, as_tuple=("img", "label"))
    with pytest.raises(prebake.ViewError, match="a sequence of column names"):
        prebake.open(cifar.path, as_tuple="image")
