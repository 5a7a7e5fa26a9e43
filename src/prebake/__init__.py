"""prebake: bake deterministic preprocessing once, load whole batches at memory speed.

>>> import prebake
>>> from prebake.steps import Resize
>>> caches = prebake.build("data/cifar-10-batches-py", "cache/cifar10", steps=[Resize(64)])  # doctest: +SKIP
>>> caches["train"][0]["image"].shape  # doctest: +SKIP
(3, 64, 64)

Members import on first use: ``import prebake`` does not import torch until a name
that needs it (``prebake.Loader``, ``prebake.open``, ...) is touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_members
from ._version import __version__
from .errors import (
    BadItemError,
    BuildLockedError,
    CacheChangedError,
    CacheCorruptError,
    CacheNotFoundError,
    DiskFullError,
    ForeignOutputError,
    FormatError,
    IndicesError,
    IteratorSupersededError,
    OptionError,
    PrebakeError,
    ResumeError,
    SamplingError,
    SchemaError,
    SourceError,
    SplitsError,
    StrictModeError,
    TooManySkippedError,
    UnsafePickleError,
    ViewError,
    WorkerDiedError,
)
from .settings import load_config

if TYPE_CHECKING:
    from . import augment, steps
    from .bake.api import build
    from .bake.build import BuildReport
    from .bake.memory import write_arrays
    from .cache.export import export_hdf5
    from .cache.reader import Cache, Ragged
    from .cache.reader import open_cache as open
    from .cache.splits import load_splits, split
    from .cache.verify import VerifyReport, verify
    from .integrations import lightning
    from .load.crops import Crops
    from .load.loader import Loader
    from .load.patches import Patches
    from .load.signals import crop_or_pad
    from .load.views import Elements, Windows
    from .measure.watch import Watch, WatchReport, watch
    from .sources import Source, SourceOptions
    from .steps.stage import Stage

__all__ = [
    "BadItemError",
    "BuildLockedError",
    "BuildReport",
    "Cache",
    "CacheChangedError",
    "CacheCorruptError",
    "CacheNotFoundError",
    "Crops",
    "DiskFullError",
    "Elements",
    "ForeignOutputError",
    "FormatError",
    "IndicesError",
    "IteratorSupersededError",
    "Loader",
    "OptionError",
    "Patches",
    "PrebakeError",
    "Ragged",
    "ResumeError",
    "SamplingError",
    "SchemaError",
    "Source",
    "SourceError",
    "SourceOptions",
    "SplitsError",
    "Stage",
    "Shaped",
    "StrictModeError",
    "TooManySkippedError",
    "UnsafePickleError",
    "VerifyReport",
    "ViewError",
    "Watch",
    "WatchReport",
    "Windows",
    "WorkerDiedError",
    "__version__",
    "augment",
    "build",
    "export_hdf5",
    "lightning",
    "load_config",
    "crop_or_pad",
    "load_splits",
    "open",
    "split",
    "steps",
    "verify",
    "watch",
    "write_arrays",
]

__getattr__, __dir__ = lazy_members(__name__, {
    "augment": ".augment:", "steps": ".steps:", "lightning": ".integrations.lightning:",
    "build": ".bake.api", "BuildReport": ".bake.build",
    "write_arrays": ".bake.memory",
    "Source": ".sources", "SourceOptions": ".sources", "Stage": ".steps.stage",
    "Cache": ".cache.reader", "Ragged": ".cache.reader", "Shaped": ".cache.reader", "open": ".cache.reader:open_cache",
    "VerifyReport": ".cache.verify", "verify": ".cache.verify",
    "export_hdf5": ".cache.export", "split": ".cache.splits", "load_splits": ".cache.splits",
    "Loader": ".load.loader", "crop_or_pad": ".load.signals", "Elements": ".load.views", "Windows": ".load.views",
    "Patches": ".load.patches", "Crops": ".load.crops",
    "Watch": ".measure.watch", "WatchReport": ".measure.watch", "watch": ".measure.watch",
})
