"""``prebake.Crops``: random-resized crops of images of many sizes, read and resized as a batch.

A ragged N-D column keeps every photo at its own size. Training wants ``size x size`` inputs,
and what users write today is a per-sample ``RandomResizedCrop`` in a DataLoader worker. Here a
view item is one crop of one image: for training (``train=True``) a box drawn as torchvision's
``RandomResizedCrop`` draws it (``load/crop_boxes.py``); for evaluation the centre box that
``Resize(round(size / 0.875))`` then ``CenterCrop(size)`` keeps. A batch reads every box in one
gather per factor group and resizes them all with one ``grid_sample`` (``load/crop_resize.py``),
on the host, or on the device with ``preload="device"``. Crops keep the column's dtype (uint8
stays uint8; convert with ``Loader(convert=...)`` or in ``transform``). On a CPU give the Loader
gather threads (``threads=2``): in the loop's thread, its CPU default, torch's two OpenMP threads
made the resize of 200 crops take 3.7-4.9 s of CPU instead of 0.2 s on this busy 2-core machine.

A batch holds the crops under the column's name, ``(B, *lead, size, size)``, every fixed column
(a label), ``item`` (the cache item) and ``box`` ``(B, 4)`` ``(top, left, h, w)`` in the item's pixels.
Boxes come from ``(seed, epoch, item)``, so a Loader's guarantees hold: reproducible epochs, exact
mid-epoch resume, every item once per epoch across DDP ranks, ``indices=`` subsets.

>>> import numpy as np, prebake, tempfile
>>> photos = [np.full((3, 40, 60), 10, np.uint8), np.full((3, 300, 200), 200, np.uint8)]
>>> cache = prebake.build([{"image": p, "label": k} for k, p in enumerate(photos)], tempfile.mkdtemp() + "/p",
...                       workers=0, progress=False)
>>> crops = prebake.Crops(cache, "image", size=32)
>>> batch = crops[[0, 1]]
>>> batch["image"].shape, batch["image"].dtype, batch["image"][:, 0, 0, 0].tolist()
((2, 3, 32, 32), dtype('uint8'), [10, 200])
>>> prebake.Crops(cache, "image", size=32, train=False).boxes()["box"].tolist()  # centred, 87.5% of the short side
[[2, 12, 35, 35], [63, 13, 173, 173]]
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cache.reader import Cache
from ..errors import ViewError
from .crop_boxes import eval_boxes, train_boxes
from .crop_checks import check_columns, check_extents, check_range, check_size, check_source
from .crop_resize import CropBatch
from .draws import occurrence
from .gather import Part, Plan, Take
from .params import flag, names, whole
from .patch_checks import geometry
from .views import Indices, View, _items, _select, subset_id

log = logging.getLogger(__name__)


class Crops(View):
    """Square crops of a column of images of many sizes, resized to ``size``: random-resized or centred.

    Args:
        cache: the cache to crop.
        column: images ``(H, W)`` or ``(C, H, W)``: a ragged N-D column, or a fixed one (images of one size).
        size: the side of the output crops.
        scale: training: the box's area as a fraction of the image's, drawn uniformly in ``(low, high]``
            (torchvision's default ``(0.08, 1.0)``).
        ratio: training: the box's width / height, drawn log-uniformly (default ``(3/4, 4/3)``).
        train: True: random-resized boxes, new each epoch; False: the evaluation centre box.
        columns: fixed columns to repeat beside each crop (default: every fixed column).
        indices: the cache items to crop (a split, a client), or a boolean mask; default: all.
        seed: the seed of the boxes (with the epoch).
    """

    def __init__(self, cache: Cache, column: str, size: int = 224, scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), *, train: bool = True, columns: Sequence[str] | None = None,
                 indices: Indices | None = None, seed: int = 0):
        self.lead = check_source(cache, column)
        self.cache, self.column, self.epoch = cache, column, 0
        self.size = check_size(size)
        self.scale = check_range(scale, "scale", 0.0, 1.0, "(0.08, 1.0)")
        self.ratio = check_range(ratio, "ratio", 0.0, None, "(3 / 4, 4 / 3)")
        self.train = flag(train, "train", ViewError)
        self.seed = whole(seed, "seed", 0, ViewError)
        self.items = _items(cache, indices)
        self.item = np.arange(len(cache), dtype=np.int64) if self.items is None else self.items
        self.draw = occurrence(self.item)  # an item repeated in indices= draws a new box each time it comes
        self._offsets, self._shapes = geometry(cache, column)
        self.dims = self._shapes[:, -2:]
        check_extents(self.dims, self.item, cache, column)
        self._fixed = check_columns(cache, column, names(columns, "columns", ViewError))
        self.columns = [column, *self._fixed]
        self._check_keys()

    def set_epoch(self, epoch: int) -> None:
        """The epoch ``view[i]`` draws its boxes for (a Loader passes its own epoch instead)."""
        self.epoch = whole(epoch, "epoch", 0, ViewError)

    def at_epoch(self, epoch: int) -> Crops:
        view = copy.copy(self)  # shares every array: a Loader's pass draws epoch `epoch`'s boxes
        view.epoch = whole(epoch, "epoch", 0, ViewError)
        return view

    def box(self, idx: np.ndarray, epoch: int | None = None) -> np.ndarray:
        """``(B, 4)`` boxes ``(top, left, h, w)`` of view items ``idx`` in ``epoch`` (default :attr:`epoch`)."""
        item = self.item[idx]
        epoch = self.epoch if epoch is None else whole(epoch, "epoch", 0, ViewError)
        if not self.train:
            return eval_boxes(self.dims[item], self.size)
        return train_boxes(self.dims[item], self.scale, self.ratio, self.seed, epoch, item, self.draw[idx])

    def boxes(self, epoch: int | None = None) -> dict[str, np.ndarray]:
        """Every crop of ``epoch`` in view order: ``item`` and ``box``, what to hand another pipeline that
        should cut the same boxes."""
        return {"item": self.item, "box": self.box(np.arange(len(self)), epoch)}

    def sort_key(self, idx: np.ndarray) -> None:
        """None: each crop is read as its own box of runs; the batch is gathered in the drawn order."""
        return None

    def plan(self, idx: np.ndarray, columns: Sequence[str] | None = None) -> Plan:
        idx = np.asarray(idx, np.int64)
        item = self.item[idx]
        box = self.box(idx)
        takes = []
        for name in _select(self.columns, columns, self):
            if name == self.column:
                crops = CropBatch(self._offsets[item], self._shapes[item], box, self.size, self.lead)
                takes.append(Take(name, (Part(name, item),), boxes=crops))
            else:
                takes.append(Take(name, (Part(name, item),)))
        return Plan(tuple(takes), {"item": item, "box": box})

    def identity(self) -> dict[str, Any]:
        return {"view": "crops", "column": self.column, "size": self.size, "scale": list(self.scale),
                "ratio": list(self.ratio), "train": self.train, "seed": self.seed, "items": subset_id(self.items),
                "len": len(self)}

    def __repr__(self) -> str:
        what = f"scale={self.scale}, ratio={tuple(round(r, 4) for r in self.ratio)}" if self.train else "train=False"
        return (f"Crops({self.cache.path.name!r}, {self.column!r}, size={self.size}, {what}, crops={len(self)}, "
                f"columns={self.columns})")


__all__ = ["Crops"]
