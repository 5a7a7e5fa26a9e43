"""``info``, ``ls`` and ``clear``: what caches exist under a directory, and their state.

States: ``committed`` (manifest present, sources unchanged), ``stale`` (the source
files recorded in the fingerprint changed, or an older format), ``partial`` (an
unfinished build that the same command resumes).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import fingerprint as fpr
from .errors import CacheNotFoundError, FormatError
from .format import FORMAT_VERSION, LOCK_SUFFIX, MANIFEST, PARTIAL_SUFFIX, REPLACED_SUFFIX, read_manifest
from .sources.base import file_identity


@dataclass
class Entry:
    path: str
    state: str  # committed | stale | partial
    items: int | None
    bytes: int
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A summary of one committed cache, for humans and ``--json``."""
    p = Path(path)
    if not (p / MANIFEST).is_file():
        raise CacheNotFoundError(f"no prebake cache at {p} (no {MANIFEST})")
    m = read_manifest(p)
    inputs = m.get("fingerprint", {}).get("inputs", {})
    source = {k: v for k, v in inputs.get("source", {}).items() if k != "files"}
    return {
        "path": str(p),
        "num_items": m["num_items"],
        "bytes": dir_bytes(p),
        "columns": {n: {k: c[k] for k in ("dtype", "shape", "ragged")} for n, c in m["columns"].items()},
        "classes": m.get("classes"),
        "skipped": len(m.get("skipped", [])),
        "source": source,
        "transforms": inputs.get("transforms", []),
        "fingerprint": m.get("fingerprint", {}).get("digest", "")[:16],
        "created": m.get("created"),
        "prebake_version": m.get("prebake_version"),
        "stats": m.get("stats", {}),
        "state": _state(p)[0],
    }


def find_caches(root: str | os.PathLike[str]) -> list[Entry]:
    """Every cache and partial build under ``root`` (``root`` itself included)."""
    root = Path(root)
    if not root.exists():
        raise CacheNotFoundError(f"{root} does not exist")
    entries = []
    for dirpath, dirnames, _ in os.walk(root):
        d = Path(dirpath)
        if d.name.endswith(PARTIAL_SUFFIX):
            entries.append(Entry(str(d), "partial", None, dir_bytes(d), ["unfinished build; re-run it to resume"]))
            dirnames.clear()
        elif (d / MANIFEST).is_file():
            state, items, reasons = _state(d)
            entries.append(Entry(str(d), state, items, dir_bytes(d), reasons))
            dirnames.clear()
        else:
            dirnames[:] = sorted(n for n in dirnames if not n.endswith(REPLACED_SUFFIX))
    return sorted(entries, key=lambda e: e.path)


def _state(d: Path) -> tuple[str, int | None, list[str]]:
    try:
        m = read_manifest(d)
    except FormatError as e:
        return "stale", None, [str(e)]
    inputs = m.get("fingerprint", {}).get("inputs", {})
    reasons = []
    if inputs.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        reasons.append(f"format version {inputs.get('format_version')} -> {FORMAT_VERSION}")
    source = inputs.get("source", {})
    if source.get("files") and source.get("root"):
        root = Path(source["root"])
        now = file_identity([root / f for f in source["files"]], root)
        reasons += fpr.explain_files(source["files"], now)
    return ("stale" if reasons else "committed"), int(m["num_items"]), reasons


def clear_targets(path: str | os.PathLike[str]) -> list[Path]:
    """The directories and lock files that ``clear`` would delete under ``path``."""
    targets: list[Path] = []
    for e in find_caches(path):
        p = Path(e.path)
        base = p.with_name(p.name[: -len(PARTIAL_SUFFIX)]) if e.state == "partial" else p
        targets.append(p)
        for extra in (base.with_name(base.name + s) for s in (LOCK_SUFFIX, REPLACED_SUFFIX)):
            if extra.exists():
                targets.append(extra)
    return sorted(set(targets))


def dir_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
