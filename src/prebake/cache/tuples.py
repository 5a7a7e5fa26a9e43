"""Tuple access for torchvision-style code: ``image, label = ds[i]``.

Code written for ``torchvision.datasets.CIFAR10`` unpacks each item
(``image, label = dataset[i]``) and reads ``dataset.targets`` and ``dataset.classes``.
A prebake item is a dict, and unpacking a dict silently yields its keys, so such code
needs :class:`Tuples`: the named columns of each item, in order.

>>> import numpy as np, prebake, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = prebake.write_arrays(d + "/c", {"image": np.zeros((4, 3, 2, 2), np.uint8),
...                                     "label": np.array([1, 0, 1, 1])}, classes=["cat", "dog"])
>>> ds = prebake.open(d + "/c", as_tuple=("image", "label"))
>>> image, label = ds[2]
>>> image.shape, label, ds.classes, ds.targets.tolist()
((3, 2, 2), 1, ['cat', 'dog'], [1, 0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.utils.data

from ..errors import ViewError


class Tuples(torch.utils.data.Dataset):
    """Items of ``dataset`` as tuples of the columns ``names``: ``ds[i] == (item[names[0]], ...)``.

    A scalar integer or bool column (a label) comes out as a Python ``int`` or ``bool``, as
    torchvision's labels do; every other column as the numpy array of the underlying item. So a
    stock ``DataLoader`` with the default collate yields ``[images, labels]`` tensors.

    Args:
        dataset: a :class:`~prebake.Cache` or a view (``prebake.Windows``, ``prebake.Elements``):
            anything whose ``ds[i]`` is a dict and whose ``ds[[i, j]]`` is a batch dict.
        names: the columns of each tuple, in order; at least one.
    """

    def __init__(self, dataset: Any, names: Sequence[str]):
        if isinstance(names, str) or not names:
            raise ViewError(f"as_tuple needs a sequence of column names, got {names!r}; "
                              "for example as_tuple=('image', 'label')")
        known = list(dataset.columns)
        missing = [n for n in names if n not in _keys(dataset)]
        if missing:
            raise ViewError(f"as_tuple names {missing}, which {dataset!r} does not have; its columns are {known}")
        self.dataset, self.names = dataset, tuple(names)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        item = self.dataset[i]
        return tuple(_plain(item[n]) for n in self.names)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, ...]]:
        """One gather per column for the whole batch (what DataLoader calls), split into tuples."""
        batch = self.dataset[list(indices)]
        columns = [[_plain(v) for v in batch[n]] if _is_scalar(batch[n]) else batch[n] for n in self.names]
        return list(zip(*columns))

    @property
    def columns(self) -> list[str]:
        return list(self.names)

    @property
    def targets(self) -> Any:
        """The underlying dataset's ``targets`` (one label per item, in item order)."""
        return self.dataset.targets

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    def __repr__(self) -> str:
        return f"Tuples({self.dataset!r}, names={self.names})"


def _keys(dataset: Any) -> list[str]:
    """The keys an item of ``dataset`` has: its columns, plus what a view adds (``item``, ``start``, ...)."""
    keys = getattr(dataset, "keys", None)
    return list(keys) if keys is not None else list(dataset.columns)


def _is_scalar(arr: Any) -> bool:
    return isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind in "biu"


def _plain(value: Any) -> Any:
    """A 0-d integer or bool array as a Python value (torchvision's label type); anything else unchanged."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biu":
        return value.item()
    if isinstance(value, np.generic) and value.dtype.kind in "biu":
        return value.item()
    return value
