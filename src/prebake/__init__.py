"""prebake: bake deterministic preprocessing once, load whole batches at memory speed.

>>> import prebake
>>> cache = prebake.build("data/cifar-10-batches-py", "cache/cifar10")  # doctest: +SKIP
>>> cache["train"][0]["image"].shape  # doctest: +SKIP
(3, 32, 32)

Members import on first use: ``import prebake`` does not import torch until a name
that needs it (``prebake.Loader``, ``prebake.open``, ...) is touched.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Union

from ._lazy import lazy_members
from ._version import __version__
from .config import load_config
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
    SourceError,
    SplitsError,
    StrictModeError,
    UnsafePickleError,
    ViewError,
    WorkerDiedError,
)

if TYPE_CHECKING:
    from . import augment
    from .bake.build import BuildOptions, BuildReport
    from .bake.memory import write_arrays
    from .cache.export import export_hdf5
    from .cache.reader import Cache, Ragged
    from .cache.reader import open_cache as open
    from .cache.splits import load_splits, split
    from .cache.verify import VerifyReport, verify
    from .load.loader import Loader
    from .load.signals import crop_or_pad
    from .load.views import Elements, Windows
    from .measure.watch import Watch, WatchReport, watch
    from .sources import Source, SourceOptions
    from .steps.stage import Stage

log = logging.getLogger("prebake")

#: ``progress(split, items_done, items_total)``; True/None: a bar on a terminal; False: none.
Progress = Union[bool, None, Callable[[str, int, int], None]]


def build(
    source: Any = None,
    out: str | os.PathLike[str] | None = None,
    *,
    progress: Progress = None,
    source_options: SourceOptions | None = None,
    **settings: Any,
) -> Cache | dict[str, Cache]:
    """Bake ``source`` into a cache at ``out`` and open it.

    Parameters:
        source: a path (a CIFAR-10/100 folder, a folder of class subfolders of images
            or audio files, a folder of video clips, a ``.csv`` table, ``.npy``/``.npz``
            arrays), a :class:`Source`,
            or any map-style dataset. Leave it out when ``dataset="module:function"``.
        out: the cache directory; a source with splits (CIFAR's train and test, an image
            folder with ``train/`` and ``val/``) builds one cache per split in ``out/<split>``.
        progress: None (the default) shows a progress bar when stderr is a terminal;
            False shows none; a function ``progress(split, done, total)`` is called instead.
        source_options: a :class:`SourceOptions`, instead of the CSV settings below.
        **settings: the settings of ``prebake build``, by their Python names
            (``prebake build --help`` describes each): ``kind``, ``split``, ``dataset``,
            ``transform`` (a function item -> item, or ``"module:function"``),
            ``image_size``, ``shorter_side``, ``crop``, ``sample_rate``, ``bandpass``
            (LOW, HIGH), ``channel`` and ``audio_dtype`` (audio), ``fps`` and ``frame_size`` (video),
            ``segment_cycles``, ``cycle_length``, ``heart_rate`` (LOW, HIGH) and ``cycle_fallback``
            (cardiac cycles, :class:`~prebake.steps.cycles.SegmentCycles`), ``ragged``, ``path_column``,
            ``label_columns``, ``base_dir``,
            ``delimiter``, ``workers``, ``force``, ``strict``, ``allow_empty``, ``stages`` (a
            list of :class:`Stage`: batched steps such as frozen encoders, run after the
            per-item transforms, on CUDA when there is one),
            ``chunk_rows``, ``lock_timeout``, ``executor`` ("local", the default: forked
            workers; "ray": chunks as Ray tasks and stages as Ray actors on a cluster whose
            nodes share ``out``'s filesystem, see :mod:`prebake.bake.ray_executor`) and
            ``ray_address``. ``prebake.build(**prebake.load_config(f))`` runs a config file.

    Returns the :class:`Cache`, or ``{split: Cache}`` for a source with splits;
    ``split="train"`` builds and returns just that one. Called on every rank of a
    ``torch.distributed`` job (torchrun), one rank builds and the others wait for it,
    then open the same cache (see :mod:`prebake.bake.distributed`). Bad items are skipped (see
    ``cache.manifest["skipped"]``) and summarised in a WARNING log; ``strict=True``
    fails on the first one instead.
    """
    from .bake.build import build_all, skipped_summary
    from .bake.distributed import once_per_job
    from .cache.reader import Cache
    from .config import check_settings, resolve
    from .progress import ProgressBars

    given = check_settings({"source": source, "out": out, **settings})
    sources, out_dir, options = resolve(given, source_options)
    bars = ProgressBars(quiet=progress is False) if progress in (None, True, False) else None
    try:
        reports = once_per_job(lambda: build_all(sources, out_dir, options, bars if bars is not None else progress),  # type: ignore[arg-type]
                               out_dir)
    finally:
        if bars is not None:
            bars.close()
    for r in reports:
        if r.skipped and r.action != "up to date":
            log.warning("\n".join(skipped_summary(r, f"{r.out.name}/manifest.json")))
    caches = {r.split: Cache(r.out) for r in reports}
    if given.get("split") is not None:
        return caches[given["split"]]
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
    "Elements",
    "ForeignOutputError",
    "FormatError",
    "IndicesError",
    "IteratorSupersededError",
    "Loader",
    "OptionError",
    "PrebakeError",
    "Ragged",
    "ResumeError",
    "SamplingError",
    "Source",
    "SourceError",
    "SourceOptions",
    "SplitsError",
    "Stage",
    "StrictModeError",
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
    "load_config",
    "crop_or_pad",
    "load_splits",
    "open",
    "split",
    "verify",
    "watch",
    "write_arrays",
]

__getattr__, __dir__ = lazy_members(__name__, {
    "augment": ".augment:",
    "BuildOptions": ".bake.build", "BuildReport": ".bake.build",
    "write_arrays": ".bake.memory",
    "Source": ".sources", "SourceOptions": ".sources", "Stage": ".steps.stage",
    "Cache": ".cache.reader", "Ragged": ".cache.reader", "open": ".cache.reader:open_cache",
    "VerifyReport": ".cache.verify", "verify": ".cache.verify",
    "export_hdf5": ".cache.export", "split": ".cache.splits", "load_splits": ".cache.splits",
    "Loader": ".load.loader", "crop_or_pad": ".load.signals", "Elements": ".load.views", "Windows": ".load.views",
    "Watch": ".measure.watch", "WatchReport": ".measure.watch", "watch": ".measure.watch",
})
