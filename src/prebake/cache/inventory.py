"""``info``, ``ls`` and ``clear``: what caches exist under a directory, and their state.

States: ``committed`` (manifest present, sources unchanged), ``stale`` (an older
format, or what ``staleness`` says changed), ``partial`` (an unfinished build that
the same command resumes), ``damaged`` (a prebake manifest that fails its checksum or
schema: ``verify`` says why, and only a person may delete it), and, for ``clear`` only,
``foreign`` (a ``manifest.json`` or ``.partial`` folder that is not prebake's: left alone).

``clear`` deletes only what :mod:`prebake.cache.ownership` proves is prebake's, never
follows a symlink, and says what it skipped and why.

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

from ..errors import CacheNotFoundError, ForeignOutputError, OptionError
from .files import lock_holder, read_manifest
from .format import FORMAT_VERSION, LOCK_SUFFIX, MANIFEST, PARTIAL_SUFFIX, REPLACED_SUFFIX
from .ownership import inspect_cache, lock_problem, partial_problem, remove_cache, remove_lock, remove_partial

#: ``staleness(manifest)``: why a committed cache's inputs no longer match it (empty: they do).
Staleness = Callable[[dict[str, Any]], list[str]]


@dataclass
class Entry:
    path: str
    state: str  # committed | stale | partial | damaged | foreign
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
    inputs = _mapping(m["fingerprint"].get("inputs"))
    source = {k: v for k, v in _mapping(inputs.get("source")).items() if k != "files"}
    transforms = inputs.get("transforms")
    state, _, reasons = _state(m, staleness)
    return {
        "path": str(p),
        "num_items": m["num_items"],
        "bytes": dir_bytes(p),
        "columns": {n: {k: c[k] for k in ("dtype", "shape", "ragged", "schema") if k in c}
                    for n, c in m["columns"].items()},
        "classes": m["classes"],
        "skipped": len(m["skipped"]),
        "source": source,
        "transforms": [t for t in transforms if _is_step(t)] if isinstance(transforms, list) else [],
        "fingerprint": m["fingerprint"]["digest"][:16],
        "created": m["created"],
        "prebake_version": m["prebake_version"],
        "stats": m["stats"],
        "state": state,
        "reasons": reasons,  # why it is stale (printed by 'prebake info')
    }


def _mapping(value: Any) -> dict[str, Any]:
    """A manifest value that should be an object; anything else (a checksum-valid odd manifest) reads as empty."""
    return value if isinstance(value, dict) else {}


def _is_step(t: Any) -> bool:
    return isinstance(t, dict) and isinstance(t.get("name"), str)


def find_caches(root: str | os.PathLike[str], staleness: Staleness | None = None,
                foreign: bool = False) -> list[Entry]:
    """Every cache and partial build under ``root`` (``root`` itself included); with ``foreign``,
    also each directory that looks like one but is not prebake's (state "foreign").

    Never enters a symlink below ``root``; a symlinked ``root`` is listed at its target."""
    root = Path(root)
    if not root.exists():
        raise CacheNotFoundError(f"{root} does not exist")
    entries = []
    for dirpath, dirnames, filenames in os.walk(root.resolve() if root.is_symlink() else root):
        entry = _entry(Path(dirpath), filenames, staleness)
        if entry is not None and (foreign or entry.state != "foreign"):
            entries.append(entry)
        if entry is not None and entry.state != "foreign":
            dirnames.clear()
        else:
            dirnames[:] = sorted(n for n in dirnames if not n.endswith(REPLACED_SUFFIX))
    return sorted(entries, key=lambda e: e.path)


def _entry(d: Path, filenames: list[str], staleness: Staleness | None) -> Entry | None:
    if d.name.endswith(PARTIAL_SUFFIX):
        problem = partial_problem(d)
        if problem is not None:
            return Entry(str(d), "foreign", None, 0, [f"not a prebake build, left alone: {problem}"])
        return Entry(str(d), "partial", None, dir_bytes(d), ["unfinished build; re-run it to resume"])
    if MANIFEST not in filenames:
        return None
    found = inspect_cache(d)
    if found.kind in ("foreign", "link", "file"):
        return Entry(str(d), "foreign", None, 0, [f"not a prebake cache, left alone: {found.problem}"])
    if found.manifest is None:
        return Entry(str(d), "damaged", None, dir_bytes(d), [str(found.problem)])
    state, items, reasons = _state(found.manifest, staleness)
    notes = _notes(found.manifest) + ([f"{found.problem}; clear leaves it alone"] if found.problem else [])
    return Entry(str(d), state, items, dir_bytes(d), reasons, notes)


def _notes(manifest: dict[str, Any]) -> list[str]:
    """What the manifest says could not be checked when it was built (its source's "unverified")."""
    source = _mapping(_mapping(manifest["fingerprint"].get("inputs")).get("source"))
    note = source.get("unverified")
    return [str(note)] if note else []


def _state(m: dict[str, Any], staleness: Staleness | None) -> tuple[str, int | None, list[str]]:
    inputs = _mapping(m["fingerprint"].get("inputs"))
    reasons = []
    if inputs.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        reasons.append(f"format version {inputs.get('format_version')} -> {FORMAT_VERSION}")
    if staleness is not None:
        try:
            reasons += staleness(m)
        except (AttributeError, TypeError, KeyError, ValueError) as e:  # a checksum-valid manifest of odd values
            reasons.append(f"cannot tell whether its inputs changed: the manifest records them in a form this "
                           f"prebake does not read ({type(e).__name__}: {e}); rebuild it to record them again")
    return ("stale" if reasons else "committed"), int(m["num_items"]), reasons


# -- clear ---------------------------------------------------------------------------------------

@dataclass
class ClearPlan:
    """What ``clear`` deletes (``(path, kind)``, kind "cache", "partial" or "lock") and what it leaves alone, why."""

    delete: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def take(self, path: Path, kind: str, problem: str | None) -> None:
        """Delete ``path`` when nothing is wrong with it, else leave it alone and say why."""
        if problem is None:
            self.delete.append((path, kind))
        else:
            self.skipped.append((path, problem))


def clear_plan(path: str | os.PathLike[str]) -> ClearPlan:
    """The provably-prebake caches, build directories and lock files under ``path``, and the rest left alone."""
    root = Path(path)
    if root.is_symlink():
        raise OptionError(f"{root} is a symbolic link (to {os.readlink(root)}); clear never follows symlinks, so "
                          f"it refuses it: give the directory itself ({root.resolve()}) to clear what is there")
    plan = ClearPlan()
    for e in find_caches(root, foreign=True):
        p = Path(e.path)
        if e.state in ("foreign", "damaged"):
            plan.skipped.append((p, e.reasons[0]))
            continue
        base = p.with_name(p.name[: -len(PARTIAL_SUFFIX)]) if e.state == "partial" else p
        holder = lock_holder(base) if lock_problem(base.with_name(base.name + LOCK_SUFFIX)) is None else None
        if holder is not None:
            plan.skipped.append((p, f"a build is running{f' (pid {holder})' if holder > 0 else ''}, left alone"))
            continue
        problem = inspect_cache(p).problem if e.state != "partial" else None
        plan.take(p, "partial" if e.state == "partial" else "cache", problem and f"{problem}: left alone")
        if problem is None:
            _add_siblings(plan, base)
    plan.delete = sorted(set(plan.delete))
    plan.skipped = sorted(set(plan.skipped))
    return plan


def _add_siblings(plan: ClearPlan, base: Path) -> None:
    """``<base>.replaced`` and ``<base>.lock``, when they are prebake's."""
    replaced, lock = (base.with_name(base.name + s) for s in (REPLACED_SUFFIX, LOCK_SUFFIX))
    if replaced.exists() or replaced.is_symlink():
        plan.take(replaced, "cache", inspect_cache(replaced).problem)
    if lock.exists() or lock.is_symlink():
        plan.take(lock, "lock", lock_problem(lock))


def clear(plan: ClearPlan) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Delete what ``plan`` names, each checked again just before; ``(deleted, left alone with why)``."""
    remove = {"cache": remove_cache, "partial": remove_partial, "lock": remove_lock}
    deleted, refused = [], []
    for p, kind in plan.delete:
        try:
            remove[kind](p)
            deleted.append(p)
        except ForeignOutputError as e:  # something arrived after the plan was made
            refused.append((p, str(e)))
    return deleted, refused


def dir_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
