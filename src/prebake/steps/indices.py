"""Foreground and background voxels, found once at bake time, for label-balanced patches.

MONAI's ``FgBgToIndicesd`` stores the flat index of every foreground and background voxel, so that
``RandCropByPosNegLabeld`` need not rescan the label map each time it crops. :class:`FgBgIndices`
stores the same sets as runs: per item and class, ``(start, length)`` of each run of consecutive
voxels of that class in flat C order, a ragged column ``<label>_runs_<class>``. A run is 16 bytes
where an index is 8 per voxel, and background is most voxels: a 160^3 label map with a sphere of
foreground is 4.1 M background indices (33 MB) and 25 K background runs (0.4 MB).
:class:`prebake.Patches` draws a voxel uniformly from them (``sampler="balanced"``).

>>> import numpy as np
>>> from prebake.steps import FgBgIndices
>>> label = np.zeros((1, 2, 3, 4), np.uint8); label[0, 1, 1, 1:3] = 1
>>> out = FgBgIndices("label_map", classes=(0, 1))({"label_map": label})
>>> out["label_map_runs_1"].tolist(), out["label_map_runs_0"].tolist()   # voxels 17, 18: (z 1, y 1, x 1..2)
([[17, 2]], [[0, 17], [19, 5]])
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cache.format import runs_column
from ..errors import BadItemError
from .base import Step, refuse

Item = dict[str, Any]


def class_runs(label: np.ndarray, cls: int) -> np.ndarray:
    """``(R, 2)`` int64 ``(start, length)`` of each run of voxels equal to ``cls``, in flat C order."""
    hit = np.concatenate([[False], np.asarray(label).reshape(-1) == cls, [False]])
    edges = np.flatnonzero(hit[1:] != hit[:-1])
    starts, ends = edges[0::2], edges[1::2]
    return np.stack([starts, ends - starts], axis=1).astype(np.int64)

_MAX_CLASS = int(np.iinfo(np.uint64).max)


@dataclass(frozen=True)
class FgBgIndices(Step):
    """Store, per class of ``classes``, the runs of voxels of the label map ``label`` equal to that class
    (``<label>_runs_<class>``, ragged ``(R, 2)`` int64), for ``prebake.Patches(..., sampler="balanced")``.

    The label map is ``(*spatial)`` or ``(1, *spatial)``: positions are flat over its spatial axes. Class 0
    is the background of ``pos_fraction=``; list every class a sampler asks for (``weights=``).
    """

    label: str = "label_map"
    classes: tuple[int, ...] = (0, 1)

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise refuse(self, "label", "the name (str) of the label-map column, e.g. 'label_map'")
        classes = self.classes
        if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
            raise refuse(self, "classes", "a list of the label values (whole numbers) to index, e.g. (0, 1)")
        classes = tuple(classes)
        if not classes or any(isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral) or c < 0
                              for c in classes) or len(set(classes)) != len(classes):
            raise refuse(self, "classes", "distinct whole numbers >= 0 (the label values to index), e.g. (0, 1)")
        if max(classes) > _MAX_CLASS:  # no integer label map holds it: its runs would always be empty
            raise refuse(self, "classes", f"label values up to {_MAX_CLASS} (2**64 - 1, the largest a uint64 label "
                         "map holds), e.g. (0, 1)")
        object.__setattr__(self, "classes", tuple(int(c) for c in classes))

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.label,)

    @property
    def ragged(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(runs_column(self.label, c) for c in self.classes)

    def __call__(self, item: Item) -> Item:
        if self.label not in item:  # a build checks this first; a direct call reaches here
            raise BadItemError(f"FgBgIndices(label={self.label!r}): the item has no {self.label!r} column (it has "
                               f"{sorted(item)}); pass the label-map column's name, e.g. FgBgIndices(label='seg')")
        label = np.asarray(item[self.label])
        if label.dtype.kind == "f" and np.isfinite(label).all() and (label == np.round(label)).all():
            label = label.astype(np.int64)  # MONAI's LoadImaged gives label maps as float32 whole numbers
        if label.dtype.kind not in "biu":
            raise BadItemError(f"FgBgIndices: column {self.label!r} holds {label.dtype} values that are not all "
                               "whole numbers, not class numbers; a label map holds whole numbers (bake it as uint8 "
                               "or int)")
        if label.ndim == 4 and label.shape[0] != 1:
            raise BadItemError(f"FgBgIndices: label map {self.label!r} has shape {label.shape}, {label.shape[0]} "
                               "channels; it needs one channel (1, D, H, W) or none (D, H, W)")
        for c in self.classes:
            item[runs_column(self.label, c)] = class_runs(label, c)
        return item
