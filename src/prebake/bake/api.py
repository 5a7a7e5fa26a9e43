"""``prebake.build``: the one call that bakes a source into a cache, with every option typed.

Everything is checked before any work: the options' types and ranges (the same table the
CLI and config files use: :data:`prebake.config.RANGES`), the steps (:mod:`prebake.steps`),
the source. Then one build per split, once per ``torch.distributed`` job
(:mod:`prebake.bake.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union, cast

import numpy as np

from ..cache.format import validate_column_name, validate_dtype
from ..config import check_settings
from ..errors import FormatError, OptionError, opt
from ..sources import DatasetSource, SourceOptions
from ..sources.audio import check_channel, check_dtype
from ..sources.images import check_channels
from ..steps import CenterCrop, CropOrPad, Resize, ShorterSide
from ..steps.base import where
from ..steps.pipeline import compile_steps
from .build import BuildOptions, BuildReport, build_all, kept_line, resolve_sources, select_split, skipped_summary
from .distributed import once_per_job
from .schema import dtype_option

log = logging.getLogger("prebake")

#: ``progress(split, items_done, items_total)``; True/None: a bar on a terminal; False: none.
Progress = Union[bool, None, Callable[[str, int, int], None]]

#: Forked workers at most, whatever the core count below it: past this, forking and the pool's pipes cost more.
MAX_WORKERS = 256
EXECUTORS = ("local", "ray")


def build(source: Any = None, out: str | os.PathLike[str] | None = None, steps: Iterable[Any] | None = None, *,
          kind: str | None = None, split: str | None = None, dataset: str | None = None,
          source_options: SourceOptions | None = None, workers: int | None = None, executor: str = "local",
          ray_address: str | None = None, force: bool = False, strict: bool = False, allow_empty: bool = False,
          ragged: Sequence[str] = (), chunk_rows: int | None = None, lock_timeout: float | None = None,
          content_hash: bool = False, watchdog: float = 120.0, dtypes: Mapping[str, str] | None = None,
          max_skipped: float | None = None, progress: Progress = None) -> Any:
    """Bake ``source`` into a cache at ``out`` with ``steps``, and open it.

    Parameters:
        source: a path (a CIFAR-10/100 folder, a folder of class subfolders of images, audio
            or volumes, a folder of video clips, a ``.csv`` table, ``.npy``/``.npz`` arrays, an
            HDF5 file), a :class:`~prebake.Source`, or any map-style dataset.
        out: the cache directory; a source with splits (CIFAR's train and test, an image folder
            with ``train/`` and ``val/``) builds one cache per split in ``out/<split>``.
        steps: what to do to each item, in order (:mod:`prebake.steps`): steps such as
            ``Resize(224)``, functions ``item dict -> item dict`` of yours, and last any
            :class:`~prebake.Stage` (a batched step, such as a frozen encoder on the GPU).
        kind: the source kind when detection from the path is not what you want.
        split: build only this split (for example ``"train"``); the one cache is returned.
        dataset: ``"module:function"`` returning a map-style dataset, instead of ``source``.
        source_options: how sources read (CSV columns, audio channels, video frames, size limits).
        workers: worker processes (None: one per core; 0 or 1: in this process). Above 4 per usable
            core (at most 256) it is lowered to that, with a WARNING. With ``executor="ray"``: chunk
            tasks at a time.
        executor: ``"local"`` (forked workers) or ``"ray"`` (Ray tasks, stages as Ray actors, on a
            cluster whose nodes share ``out``'s filesystem), at ``ray_address``.
        force: rebuild even when the cache is up to date (never deletes anything that is not prebake's).
        strict: fail on the first bad item instead of skipping it.
        allow_empty: commit a cache even when every item is bad.
        ragged: columns whose first axis varies per item.
        chunk_rows: rows per unit of work (default: about 16 MB of rows).
        lock_timeout: seconds to wait for another build of the same output (default: wait).
        content_hash: identify source files by their bytes, not by size, mtime and ctime.
        watchdog: seconds one item may take before the build logs the stack of the worker on it (0: off).
        dtypes: ``{column: dtype}``: every item of the column is cast to that numpy dtype, and a value it
            cannot hold exactly (out of range, a fraction for an integer dtype) makes its item bad. Without
            it a column's dtype comes from every item (bake/schema.py): their one dtype, or numpy's
            promotion of them when that holds every value exactly (else the build stops and says so).
        max_skipped: fail the build, committing nothing, when more items than this are skipped as bad:
            a count (0, 1, 2, ...) or a fraction of the items below 1 (0.05). The baked items are kept, so
            re-running with a higher limit commits them without baking again.
        progress: None shows a bar when stderr is a terminal; False none; or ``progress(split, done, total)``.

    Returns the :class:`~prebake.Cache`, or ``{split: Cache}`` for a source with splits; each
    cache's ``build_report`` (:class:`~prebake.BuildReport`) says what the build did and why.
    Called on every rank of a ``torch.distributed`` job (torchrun), one rank builds and the
    others wait for it, then open the same cache. Bad items (unreadable or invalid; an item unlike
    the first is not bad) are skipped, listed in ``cache.manifest["skipped"]`` and summarised in a
    WARNING log; every build logs ``kept K of N, skipped S`` at INFO.
    """
    from ..cache.reader import Cache
    from ..progress import ProgressBars

    plan = prepare(source, out, steps, kind=kind, split=split, dataset=dataset, source_options=source_options,
                   workers=workers, executor=executor, ray_address=ray_address, force=force, strict=strict,
                   allow_empty=allow_empty, ragged=ragged, chunk_rows=chunk_rows, lock_timeout=lock_timeout,
                   content_hash=content_hash, watchdog=watchdog, dtypes=dtypes, max_skipped=max_skipped)
    bars = ProgressBars(quiet=progress is False) if progress in (None, True, False) else None
    try:
        callback = bars if bars is not None else cast(Callable[[str, int, int], None], progress)  # a callable here
        reports = once_per_job(lambda: build_all(*plan, callback), plan[1])
    finally:
        if bars is not None:
            bars.close()
    for r in reports:
        if r.skipped and r.action != "up to date":
            log.warning("\n".join(skipped_summary(r, f"{r.out.name}/manifest.json")))
        log.info("%s: %s", r.out, kept_line(r))
    for r in reports:
        r.remainder = plan[2].pipeline.remainder
    caches = {r.split: _opened(Cache(r.out), r) for r in reports}
    if split is not None:
        return caches[split]
    return caches[""] if "" in caches else caches


def _opened(cache: Any, report: BuildReport) -> Any:
    cache.build_report = report
    return cache


def prepare(source: Any = None, out: str | os.PathLike[str] | None = None, steps: Iterable[Any] | None = None,
            *, kind: str | None = None, split: str | None = None, dataset: str | None = None,
            source_options: SourceOptions | None = None, **options: Any) -> tuple[dict[str, Any], Any, BuildOptions]:
    """``(sources by split, out, BuildOptions)``, every value checked: what :func:`build` runs (so does the CLI)."""
    given = {k: v for k, v in {"out": out, "kind": kind, "split": split, "dataset": dataset, **options}.items()
             if v is not None and not (k == "ragged" and v == ())}
    if isinstance(given.get("ragged"), str):
        raise OptionError(f"{opt('ragged')} is {given['ragged']!r}: give a list of column names, e.g. ['signal']")
    if "dtypes" in given:
        given["dtypes"] = dtype_settings(given["dtypes"])
    s = check_settings({**given, **({"ragged": list(given["ragged"])} if "ragged" in given else {})})
    if s.get("out") is None:
        raise OptionError("no output directory: give OUT")
    source_options = _checked(source_options)
    pipeline = compile_steps(steps)
    _check_sizes(pipeline, source_options or SourceOptions())
    sources = select_split(_sources(source, s, source_options), s.get("split"))
    executor = _executor(s)
    opts = BuildOptions(pipeline=pipeline, workers=_workers(s.get("workers"), executor), force=bool(s.get("force")),
                        strict=bool(s.get("strict")), allow_empty=bool(s.get("allow_empty")),
                        ragged=tuple(s.get("ragged", ())), lock_timeout=s.get("lock_timeout"),
                        chunk_rows=s.get("chunk_rows"), content_hash=bool(s.get("content_hash")), executor=executor,
                        ray_address=s.get("ray_address"), watchdog=s.get("watchdog", BuildOptions.watchdog),
                        dtypes=parse_dtypes(s.get("dtypes", [])), max_skipped=s.get("max_skipped"))
    return sources, s["out"], opts


def dtype_settings(value: Any) -> list[str]:
    """``dtypes`` from Python (``{column: dtype}``) as the ``COLUMN=DTYPE`` strings the flag and config files give."""
    if isinstance(value, Mapping):
        return [f"{k}={np.dtype(v).name if isinstance(v, (type, np.dtype)) else v}" for k, v in value.items()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise OptionError(f"{opt('dtypes')} is {value!r}: give {{column: dtype}}, e.g. {{'image': 'int16'}}")


def parse_dtypes(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``COLUMN=DTYPE`` strings, checked: a column name and a numpy dtype a cache holds (sorted by column)."""
    out: dict[str, str] = {}
    for text in values:
        name, sep, dtype = text.partition("=")
        example = dtype_option("image", "int16")
        if not sep or not name or not dtype:
            raise OptionError(f"{opt('dtypes')}: {text!r} is not COLUMN=DTYPE; give for example {example}")
        try:
            validate_column_name(name)
            dt = np.dtype(dtype.strip())
            validate_dtype(dt, name)
        except (TypeError, ValueError, SyntaxError, FormatError) as e:
            raise OptionError(f"{opt('dtypes')}: {text!r}: {e}; give a column name and a numpy dtype, for example "
                              f"{example}") from None
        if dt.itemsize == 0 or dt.kind in "OV":
            raise OptionError(f"{opt('dtypes')}: {text!r}: {dt} has no fixed size of values; give a number, bool, "
                              f"or a sized text dtype such as <U32, for example {example}")
        if dt.kind in "Mm" and np.datetime_data(dt)[0] == "generic":  # M8 alone: values no reader can convert
            unit = dt.str[1:3]
            raise OptionError(f"{opt('dtypes')}: {text!r}: {dt} has no time unit; give one, for example "
                              f"{dtype_option(name, f'{unit}[s]')} or {dtype_option(name, f'{unit}[ns]')}")
        if name in out and out[name] != dt.str:
            raise OptionError(f"{opt('dtypes')} gives column {name!r} two dtypes ({np.dtype(out[name])} and {dt}); "
                              "give one")
        out[name] = dt.str
    return tuple(sorted(out.items()))


def _checked(options: Any) -> SourceOptions | None:
    """``source_options`` with every value checked against its setting's type and range, as the flags are."""
    if options is None:
        return None
    if not isinstance(options, SourceOptions):
        raise OptionError(f"source_options is a {type(options).__name__}; give a prebake.SourceOptions")
    given = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    for name in ("label_columns", "keep_columns"):
        if isinstance(given[name], str):  # a str would be read as one column per character
            raise OptionError(f"prebake.SourceOptions: {name} is {given[name]!r}, expected a tuple of column names, "
                              f"e.g. {name}=({given[name]!r},)")
    s = check_settings({k: v for k, v in given.items() if v is not None and not (isinstance(v, tuple) and not v)},
                       "prebake.SourceOptions")
    check_channel(s["channel"])
    check_dtype(s["audio_dtype"])
    check_channels(s.get("channels"))
    changes: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}
    return dataclasses.replace(options, **changes)


def _check_sizes(pipeline: Any, options: SourceOptions) -> None:
    """Steps that make images or volumes past the limits on inputs, refused before any work."""
    for step in pipeline.items:
        if isinstance(step, (Resize, ShorterSide, CenterCrop)) and step.size ** 2 > options.max_pixels:
            raise OptionError(f"{where(step)} makes images of {step.size:,} x {step.size:,} = {step.size ** 2:,} "
                              f"pixels, over the limit of {options.max_pixels:,}; give a smaller size, or raise "
                              f"{opt('max_pixels')}")
        voxels = math.prod(cast("tuple[int, ...]", step.shape)) if isinstance(step, CropOrPad) else 0  # a triple
        if voxels > options.max_voxels:
            raise OptionError(f"{where(step)} makes volumes of {voxels:,} voxels, over the limit of "
                              f"{options.max_voxels:,}; give a smaller shape, or raise {opt('max_voxels')}")


def _sources(source: Any, s: dict[str, Any], options: SourceOptions | None) -> dict[str, Any]:
    if "dataset" in s:
        if source is not None:
            raise OptionError(f"give a SOURCE or {opt('dataset')}, not both")
        return {"": DatasetSource.from_spec(s["dataset"])}
    if source is None:
        raise OptionError(f"nothing to bake: give SOURCE, or {opt('dataset')}")
    return resolve_sources(source, kind=s.get("kind"), options=options)


def _workers(n: int | None, executor: str) -> int | None:
    """``workers``, capped for the local executor at 4 per usable core (at most 256, at least one per core)."""
    if n is None or executor != "local":
        return n
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cap = max(cpus, min(4 * cpus, MAX_WORKERS))  # 4 per core keeps cores busy while workers wait on reads
    if n <= cap:
        return int(n)
    log.warning("%s is more than this machine can use: using %d (4 per usable core, %d here, at most %d); each worker "
                "is a forked process holding an item in memory, so more only cost memory and forks",
                opt("workers", n), cap, cpus, MAX_WORKERS)
    return cap


def _executor(s: dict[str, Any]) -> str:
    """The executor setting, checked: ``ray_address`` only goes with ``executor="ray"``."""
    executor = s.get("executor", "local")
    if executor not in EXECUTORS:
        raise OptionError(f"{opt('executor')} is {executor!r}: use local (forked workers) or ray")
    if "ray_address" in s and executor != "ray":
        raise OptionError(f"{opt('ray_address')} is the cluster of {opt('executor', 'ray')}: add that, or drop "
                          f"{opt('ray_address')}")
    return str(executor)
