"""How a cache is made: sources -> per-item transforms -> worker processes -> an atomic commit.

:mod:`.build` runs a build; :mod:`.worker` is what each process does; :mod:`.writer`
keeps the partial directory, its journal and the commit; :mod:`.fingerprint` and
:mod:`.plugins` decide when a cache is stale; :mod:`.sources` reads the inputs.
Members import on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_members

if TYPE_CHECKING:
    from .build import BuildOptions, BuildReport, ProgressFn, build_all, build_one, resolve_sources, select_split
    from .memory import write_arrays
    from .sources import Source, SourceOptions

__all__ = ["BuildOptions", "BuildReport", "ProgressFn", "Source", "SourceOptions", "build_all", "build_one",
           "resolve_sources", "select_split", "write_arrays"]
__getattr__, __dir__ = lazy_members(__name__, {
    **{n: ".build" for n in ("BuildOptions", "BuildReport", "ProgressFn", "build_all", "build_one",
                             "resolve_sources", "select_split")},
    "write_arrays": ".memory", "Source": ".sources", "SourceOptions": ".sources",
})
