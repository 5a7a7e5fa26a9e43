"""prebake: bake deterministic preprocessing once, load whole batches at memory speed.

>>> import prebake
>>> cache = prebake.build("data/cifar-10-batches-py", "cache/cifar10")  # doctest: +SKIP
>>> cache["train"][0]["image"].shape  # doctest: +SKIP
(3, 32, 32)
"""

from __future__ import annotations

import os
from typing import Any

from ._version import __version__
from .bake.build import BuildOptions, BuildReport, ProgressFn, build_all, resolve_sources, select_split
from .errors import (
    BadItemError,
    BuildLockedError,
    CacheChangedError,
    CacheCorruptError,
    CacheNotFoundError,
    DiskFullError,
    FormatError,
    PrebakeError,
    SamplingError,
    SourceError,
    StrictModeError,
    UnsafePickleError,
    WorkerDiedError,
)
from .bake.memory import write_arrays
from .bake.sources import Source, SourceOptions
from .cache.reader import Cache, Ragged, open_cache
from .cache.verify import VerifyReport, verify
from .load.loader import Loader
from .measure.watch import Watch, WatchReport, watch
from . import augment

open = open_cache  # prebake.open(path) -> Cache


def build(
    source: Any,
    out: str | os.PathLike[str],
    *,
    kind: str | None = None,
    split: str | None = None,
    source_options: SourceOptions | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> Cache | dict[str, Cache]:
    """Bake ``source`` into a cache at ``out`` and open it.

    ``source`` is a path (CIFAR directory, image folder, CSV, .npy/.npz), a
    :class:`Source`, or any map-style dataset. ``options`` are the fields of
    :class:`BuildOptions` (``image_size``, ``crop``, ``workers``, ``force``,
    ``strict``, ``transform``, ...).

    Returns the :class:`Cache`, or ``{split: Cache}`` when the source has splits
    (CIFAR train/test, an image folder with train/ and val/), built into
    ``out/<split>``. ``split="train"`` builds and returns just that one.
    """
    sources = resolve_sources(source, kind=kind, options=source_options)
    sources = select_split(sources, split)
    reports = build_all(sources, out, BuildOptions(**options), progress)
    caches = {r.split: Cache(r.out) for r in reports}
    if split is not None:
        return caches[split]
    return caches[""] if "" in caches else caches


__all__ = [
    "BadItemError",
    "BuildLockedError",
    "BuildOptions",
    "BuildReport",
    "Cache",
    "CacheChangedError",
    "CacheCorruptError",
    "CacheNotFoundError",
    "DiskFullError",
    "FormatError",
    "Loader",
    "PrebakeError",
    "Ragged",
    "SamplingError",
    "Source",
    "SourceError",
    "SourceOptions",
    "StrictModeError",
    "UnsafePickleError",
    "VerifyReport",
    "Watch",
    "WatchReport",
    "WorkerDiedError",
    "__version__",
    "augment",
    "build",
    "open",
    "verify",
    "watch",
    "write_arrays",
]
