"""``prebake.steps``: what a build does to each item, between reading it and writing its row.

>>> import prebake
>>> from prebake.steps import CenterCrop, ShorterSide
>>> steps = [ShorterSide(64), CenterCrop(56)]          # a function item -> item, or a prebake.Stage, may follow
>>> [str(s) for s in steps]
['ShorterSide(size=64)', 'CenterCrop(size=56)']

``prebake.build(source, out, steps=[...])`` runs them in the order given, in the worker
processes; a :class:`~prebake.Stage` (a batched step such as a frozen encoder) runs after them
in the building process. Each step's parameters enter the cache's fingerprint
(:meth:`Step.describe`), so changing one rebuilds the cache and says which. The flags of
``prebake build`` (``--shorter-side 64 --crop 56``) and config files are a short way to write
the same list.

- images (:mod:`.image`): :class:`Resize`, :class:`ShorterSide`, :class:`CenterCrop`, :class:`ToRGB8`;
- 1-D signals (:mod:`.audio`, :mod:`.cycles`): :class:`Resample`, :class:`BandPass`, :class:`SegmentCycles`;
- volumes (:mod:`.volume`): :class:`Orient`, :class:`Spacing`, :class:`Window`, :class:`CropOrPad`;
  :class:`FgBgIndices` (:mod:`.indices`), the voxels of each class for label-balanced patches;
- MONAI (:mod:`.monai`): :class:`MonaiTransforms`, a ``Compose``'s deterministic prefix (``steps=compose`` splits it);
- yours: any function ``item -> item`` (:class:`Function`), and :class:`~prebake.Stage`.

A new built-in step is a frozen dataclass subclassing :class:`Step` in the module of its
kind, with ``__call__(item) -> item``; its fields are its parameters. Random augmentation
never belongs here: it runs batched on the device (:mod:`prebake.augment`).
"""

from .audio import BandPass, Resample
from .base import Function, Step
from .cycles import SegmentCycles
from .image import CenterCrop, Resize, ShorterSide, ToCHW, ToRGB8
from .indices import FgBgIndices
from .monai import MonaiTransforms
from .pipeline import Pipeline, compile_steps
from .stage import Stage
from .volume import CropOrPad, Orient, Spacing, Window

__all__ = ["BandPass", "CenterCrop", "CropOrPad", "FgBgIndices", "Function", "MonaiTransforms", "Orient", "Pipeline",
           "Resample", "Resize", "SegmentCycles", "ShorterSide", "Spacing", "Stage", "Step", "ToCHW", "ToRGB8",
           "Window", "compile_steps"]
