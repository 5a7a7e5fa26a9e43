"""Whether a committed cache still matches its inputs, read from the fingerprint it recorded.

Used by ``prebake ls`` and ``prebake info`` (through :mod:`prebake.cache.inventory`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import fingerprint as fpr
from .sources.base import refresh_identity


def source_changes(manifest: dict[str, Any]) -> list[str]:
    """Which of the source files recorded in ``manifest`` changed since the build (empty: none)."""
    source = manifest.get("fingerprint", {}).get("inputs", {}).get("source", {})
    if not (source.get("files") and source.get("root")):
        return []
    now = refresh_identity(source["files"], Path(source["root"]))  # by metadata or content, as recorded
    return fpr.explain_files(source["files"], now)
