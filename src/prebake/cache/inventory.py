"""``info``, ``ls`` and ``clear``: what caches exist under a directory, and their state.

States: ``committed`` (manifest present, sources unchanged), ``stale`` (an older
format, or what ``staleness`` says changed), ``partial`` (an unfinished build that
the same command resumes).

Whether a cache's inputs changed is the bake's knowledge, not the format's: callers
pass a ``staleness(manifest) -> reasons`` function (the CLI passes
:func:`prebake.bake.freshness.source_changes`). Without one, only the format is checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CacheCorruptError, CacheNotFoundError, FormatError
from .files import read_manifest
from .format import FORMAT_VERSION, LOCK_SUFFIX, MANIFEST, PARTIAL_SUFFIX, REPLACED_SUFFIX

#: ``staleness(manifest)``: why a committed cache's inputs no longer match it (empty: they do).
Staleness = Callable[[dict[str, Any]], list[str]]


@dataclass
class Entry:
    path: str
    state: str  # committed | stale | partial
    items: int | None
    bytes: int
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked (a dataset without fingerprint())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def info(path: str | os.PathLike[str], staleness: Staleness | None = None) -> dict[str, Any]:
    """A summary of one committed cache, for humans and ``--json``."""
    p = Path(path)
    if not (p / MANIFEST).is_file():
        raise CacheNotFoundError(f"no prebake cache at {p} (no {MANIFEST})")
    m = read_manifest(p)
    inputs = m.get("fingerprint", {}).get("inputs", {})
    source = {k: v for k, v in inputs.get("source", {}).items() if k != "files"}
    state, _, reasons = _state(p, staleness)
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
        "state": state,
        "reasons": reasons,  # why it is stale (printed by 'prebake info')
    }


def find_caches(root: str | os.PathLike[str], staleness: Staleness | None = None) -> list[Entry]:
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
            state, items, reasons = _state(d, staleness)
            entries.append(Entry(str(d), state, items, dir_bytes(d), reasons, _notes(d)))
            dirnames.clear()
        else:
            dirnames[:] = sorted(n for n in dirnames if not n.endswith(REPLACED_SUFFIX))
    return sorted(entries, key=lambda e: e.path)


def _notes(d: Path) -> list[str]:
    """What the manifest says could not be checked when it was built (its source's "unverified")."""
    try:
        note = read_manifest(d)["fingerprint"]["inputs"].get("source", {}).get("unverified")
    except (FormatError, CacheCorruptError, CacheNotFoundError, AttributeError):
        return []
    return [str(note)] if note else []


def _state(d: Path, staleness: Staleness | None) -> tuple[str, int | None, list[str]]:
    try:
        m = read_manifest(d)
    except (FormatError, CacheCorruptError) as e:
        return "stale", None, [str(e)]
    inputs = m.get("fingerprint", {}).get("inputs", {})
    reasons = []
    if inputs.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        reasons.append(f"format version {inputs.get('format_version')} -> {FORMAT_VERSION}")
    if staleness is not None:
        reasons += staleness(m)
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
