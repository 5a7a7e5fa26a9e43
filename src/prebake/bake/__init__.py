"""Running a build: sources -> per-item steps -> worker processes -> stages -> an atomic commit.

:mod:`.build` runs one (plan, lock, reuse of unchanged rows, the pool); :mod:`.worker` is what
each worker process does with a chunk, kept alive by :mod:`.pool` and :mod:`.watchdog`;
:mod:`.stage_runner` runs the stages (:class:`prebake.Stage`) on every finished chunk;
:mod:`.plan`, :mod:`.partial` and :mod:`.commit` are the partial directory, its journal and
the atomic commit; :mod:`.ray_executor` runs the same chunks on a Ray cluster, and
:mod:`.distributed` makes one rank of a torchrun job build. :mod:`.freshness` answers
"would a build rebuild this cache now?" for ``prebake ls`` and ``info``.

The inputs are read by :mod:`prebake.sources`, each item goes through :mod:`prebake.steps`,
and what a cache was made from (its fingerprint) is :mod:`prebake.identity`.
Members import on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_members

if TYPE_CHECKING:
    from .build import BuildOptions, BuildReport, ProgressFn, build_all, build_one, resolve_sources, select_split
    from .memory import write_arrays

__all__ = ["BuildOptions", "BuildReport", "ProgressFn", "build_all", "build_one", "resolve_sources", "select_split",
           "write_arrays"]
__getattr__, __dir__ = lazy_members(__name__, {
    **{n: ".build" for n in ("BuildOptions", "BuildReport", "ProgressFn", "build_all", "build_one",
                             "resolve_sources", "select_split")},
    "write_arrays": ".memory",
})
