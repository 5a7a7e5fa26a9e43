"""Would ``prebake build`` rebuild this cache now? Answered from what its manifest recorded.

The fingerprint of a build keeps, beside its digest, how the source was opened (path,
kind, options, split). :func:`rebuild_reasons` opens it again the same way, describes it,
and fingerprints it with the transforms and options the cache was built with, so added,
removed and modified source files, new classes, and a new prebake format all show, and so
do changed files that a transform or stage read while baking (:mod:`prebake.identity.reads`).
It never imports user code: a changed ``--transform`` function, or the data behind a
``--dataset`` function, is found by the next build, which names what changed.
Used by ``prebake ls`` and ``prebake info`` (through :mod:`prebake.cache.inventory`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import PrebakeError
from ..identity import fingerprint as fpr
from ..identity.files import refresh_identity
from ..identity.reads import changes as read_changes
from ..sources import SourceOptions, detect


def rebuild_reasons(manifest: dict[str, Any]) -> list[str]:
    """Why a build of the same inputs would rebuild the cache of ``manifest`` (empty: it would not)."""
    fp = manifest.get("fingerprint") or {}
    inputs, origin = fp.get("inputs") or {}, fp.get("origin")
    if not isinstance(origin, dict):
        return source_changes(manifest) + read_changes(inputs)  # built before origins were recorded
    try:
        options: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                   for k, v in (origin.get("options") or {}).items()}
        sources = detect(origin["path"], origin.get("kind"), SourceOptions(**options))
    except (PrebakeError, OSError, KeyError, TypeError) as e:
        return [f"the source cannot be opened as it was built: {e}"]
    src = sources.get(origin.get("split", ""))
    if src is None:
        return [f"the source {origin['path']} has no split {origin.get('split')!r} any more"]
    if (inputs.get("options") or {}).get("content_hash"):
        src = src.with_content_hash()
    now = fpr.make(src.describe(), inputs.get("transforms", []), inputs.get("options", {}))
    return read_changes(inputs) if now["digest"] == fp.get("digest") else fpr.explain(inputs, now["inputs"])


def source_changes(manifest: dict[str, Any]) -> list[str]:
    """Which of the source files recorded in ``manifest`` changed since the build (empty: none)."""
    source = manifest.get("fingerprint", {}).get("inputs", {}).get("source", {})
    if not (source.get("files") and source.get("root")):
        return []
    now = refresh_identity(source["files"], Path(source["root"]))  # by metadata or content, as recorded
    return fpr.explain_files(source["files"], now)
