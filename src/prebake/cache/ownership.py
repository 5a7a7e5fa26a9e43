"""What prebake may delete or replace: only what it can prove it wrote.

* a committed cache: a directory whose ``manifest.json`` is a prebake manifest that parses
  and whose self-checksum holds, and that holds nothing but the names that manifest implies
  (:func:`committed_names`): its column files, ``_item_ids.npy``, ``_item_keys.json``,
  ``manifest.json``, ``build.log``, ``splits.json`` and the ``.tmp`` twins of the last three;
* its own build directories beside it: ``<out>.partial`` and ``<out>.replaced`` holding only
  prebake's names (:func:`partial_problem`), and the lock file ``<out>.lock`` holding a pid.

Anything else in an output path is refused before any work with a
:class:`~prebake.errors.ForeignOutputError` that names what is there; ``--force`` never
widens this. A cache is deleted file by file with its manifest last, so a ``kill -9`` in the
middle still leaves a directory that is provably prebake's (and is deleted next time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ForeignOutputError, PrebakeError
from .files import lock_holder, read_manifest
from .format import (
    BUILD_LOG,
    COMPACT,
    COMPACTED,
    FORMAT_NAME,
    ITEM_IDS,
    ITEM_KEYS,
    JOURNAL,
    LOCK_SUFFIX,
    MANIFEST,
    PARTIAL_SUFFIX,
    PLAN,
    REPLACED_SUFFIX,
    REWRITE,
    REWRITTEN,
    SHARDS,
    SPLITS,
    committed_files,
)

#: Files a committed cache holds beside its data files; written through a ``.tmp`` twin.
SIDE_FILES = (MANIFEST, BUILD_LOG, SPLITS)
_FIX = "choose another output directory, or move/remove those files yourself"
_SHOW = 5  # foreign names spelled out in a message; the rest are counted
_LOCK_BYTES = 64  # a pid and a newline; anything longer is not a lock file prebake wrote

_COLUMN_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.values|\.offsets|\.shapes)?\.npy$")
_SHARD_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*\.(\d{6}\.((values|lengths|shapes)\.npy|spill\.bin)|stream\.bin"
                         r"|placed\.(bin|npy))(\.tmp)?$")  # stream.bin, placed.*: bake/stream.py, bake/placed.py
_PARTIAL_FILES = frozenset({PLAN, PLAN + ".tmp", JOURNAL, COMPACTED, REWRITTEN, ITEM_IDS, ITEM_KEYS,
                            ITEM_KEYS + ".tmp", *SIDE_FILES, *(n + ".tmp" for n in SIDE_FILES)})
_PARTIAL_DIRS = {SHARDS: _SHARD_FILE, COMPACT: _COLUMN_FILE, REWRITE: _COLUMN_FILE}
_PARTIAL_MARKERS = (SHARDS, PLAN, MANIFEST)  # a build directory prebake made holds one of these


def committed_names(manifest: dict[str, Any]) -> set[str]:
    """Every name a committed cache with this (checked) manifest may hold."""
    return set(committed_files(manifest)) | set(SIDE_FILES) | {n + ".tmp" for n in SIDE_FILES}


def sibling(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


# -- what is there, and whose it is ------------------------------------------------------------

def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:  # removed since it was seen: nothing of anyone's is there
        return []


def _is_file(e: os.DirEntry[str]) -> bool:
    return e.is_file(follow_symlinks=False)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more ({len(names)} in all)" if len(names) > _SHOW else "")


def _shown(e: os.DirEntry[str]) -> str:
    if e.is_symlink():
        return e.name + " (a symlink)"
    return e.name + ("/" if e.is_dir(follow_symlinks=False) else "")


def _foreign_manifest(path: Path) -> str | None:
    """Why ``path/manifest.json`` is someone else's file; None when it claims to be prebake's."""
    try:
        with open(path / MANIFEST, "rb") as f:
            claimed = json.loads(f.read(64 << 20).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        return f"its {MANIFEST} is not a JSON file prebake wrote ({type(e).__name__})"
    got = claimed.get("format") if isinstance(claimed, dict) else type(claimed).__name__
    return None if got == FORMAT_NAME else f"its {MANIFEST} is not a prebake manifest (format={got!r})"


@dataclass(frozen=True)
class Verdict:
    """Whose the directory at a cache path is. ``kind``: "absent", "empty", "cache" (provably
    prebake's), "mixed" (a cache that also holds foreign files), "damaged" (a prebake manifest that
    fails its checks), "foreign" (no prebake manifest), "link" or "file"; ``problem`` says why it
    must be left alone (None for the first three); ``manifest`` is the checked one, when there is one."""

    kind: str
    problem: str | None = None
    manifest: dict[str, Any] | None = None


def inspect_cache(path: Path) -> Verdict:
    """Whether prebake may replace or delete the cache directory ``path``, and why not."""
    if path.is_symlink():
        return Verdict("link", f"{path} is a symbolic link (to {os.readlink(path)}); prebake never writes through one")
    if not path.exists():
        return Verdict("absent")
    if not path.is_dir():
        return Verdict("file", f"{path} is a file, not a directory")
    entries = _entries(path)
    if not entries:
        return Verdict("empty")
    names = [_shown(e) for e in entries]
    if not any(e.name == MANIFEST and _is_file(e) for e in entries):
        return Verdict("foreign", f"{path} holds no {MANIFEST}, so it is not a prebake cache; "
                                  f"it holds {_listing(names)}")
    foreign = _foreign_manifest(path)
    if foreign is not None:
        return Verdict("foreign", f"{path} is not a prebake cache ({foreign}); it holds {_listing(names)}")
    try:
        manifest = read_manifest(path, any_version=True)
    except PrebakeError as e:
        why = str(e).split("; ")[0]
        return Verdict("damaged", f"{path} looks like a damaged prebake cache, or one of a format without a "
                       f"self-checksum ({why}), so prebake cannot prove it wrote what is there; remove it by hand "
                       f"('rm -r {path}') once you have checked that nothing of yours is inside")
    owned = committed_names(manifest)
    alien = [_shown(e) for e in entries if e.name not in owned or not _is_file(e)]
    if alien:
        return Verdict("mixed", f"{path} is a prebake cache that also holds files prebake did not write: "
                       f"{_listing(alien)}", manifest)
    return Verdict("cache", None, manifest)


def partial_problem(path: Path) -> str | None:
    """Why the build directory ``path`` (``<out>.partial``) is not provably prebake's; None if it is
    (or does not exist)."""
    if path.is_symlink():
        return f"{path} is a symbolic link (to {os.readlink(path)}); prebake never writes through one"
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} is a file, and prebake builds in a directory of that name"
    entries = _entries(path)
    alien = [_shown(e) for e in entries if not _partial_entry(path, e)]
    if alien:
        return f"{path} holds files that are not a prebake build's: {_listing(alien)}"
    if entries and not any(e.name in _PARTIAL_MARKERS for e in entries):
        return (f"{path} holds {_listing([e.name for e in entries])} but no {PLAN}, {SHARDS}/ or {MANIFEST}, "
                "so it is not a build directory prebake made")
    return None


def _partial_entry(path: Path, e: os.DirEntry[str]) -> bool:
    if e.is_dir(follow_symlinks=False) and not e.is_symlink():
        pattern = _PARTIAL_DIRS.get(e.name)
        return pattern is not None and all(_is_file(f) and pattern.match(f.name) for f in _entries(path / e.name))
    return _is_file(e) and (e.name in _PARTIAL_FILES or bool(_COLUMN_FILE.match(e.name)))


def lock_problem(path: Path) -> str | None:
    """Why ``path`` (``<out>.lock``) is not a lock file prebake wrote; None if it is (or does not exist)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        return f"{path} is {kind}, and taking the build lock would truncate it"
    if st.st_size > _LOCK_BYTES:
        return f"{path} holds {st.st_size:,} bytes, not a builder's pid, and taking the build lock would truncate it"
    with open(path, "rb") as f:
        text = f.read(_LOCK_BYTES).strip()
    if text and not text.isdigit():
        return f"{path} holds {text[:20]!r}, not a builder's pid, and taking the build lock would truncate it"
    return None


# -- the one check every build and write_arrays makes before any work --------------------------

def check_output(out: Path) -> dict[str, Any] | None:
    """The manifest of the cache at ``out`` (None: no cache yet), after checking that ``out``,
    ``<out>.partial``, ``<out>.replaced`` and ``<out>.lock`` are all absent or provably prebake's.

    Raises :class:`ForeignOutputError` naming what is there otherwise; nothing is changed. While
    another build of ``out`` holds the lock, its ``.partial`` and ``.replaced`` are in flux: they are
    checked again by this build once it holds the lock (every delete of them checks first).
    """
    manifest = owned_cache(out)
    problem = lock_problem(sibling(out, LOCK_SUFFIX))
    if problem is None and lock_holder(out) is None:
        problem = partial_problem(sibling(out, PARTIAL_SUFFIX)) or inspect_cache(sibling(out, REPLACED_SUFFIX)).problem
    if problem is not None:
        raise _refusal(out, problem)
    return manifest


def owned_cache(out: Path) -> dict[str, Any] | None:
    """The manifest of the provably-ours cache at ``out``, None when there is none yet, else a refusal."""
    found = inspect_cache(out)
    if found.problem is not None:
        raise _refusal(out, found.problem)
    return found.manifest


def _refusal(out: Path, problem: str) -> ForeignOutputError:
    fix = "" if "remove it by hand" in problem else f" — {_FIX}"
    return ForeignOutputError(f"cannot build {out}: {problem}. prebake deletes or replaces only what it can "
                              f"prove it wrote, so nothing was changed{fix}")


# -- deleting what is ours ---------------------------------------------------------------------

def remove_cache(path: Path) -> None:
    """Delete the provably-ours cache (or emptied directory) at ``path``: its own files, the manifest
    last, then the directory. Refuses (ForeignOutputError) when anything there is not its own."""
    found = inspect_cache(path)
    if found.problem is not None:
        raise ForeignOutputError(f"left {path} in place: {found.problem}; prebake deletes only what it can prove "
                                 f"it wrote — {_FIX}")
    if found.manifest is not None:
        names = sorted(committed_names(found.manifest) - {MANIFEST})
        for name in [*names, MANIFEST]:
            (path / name).unlink(missing_ok=True)
    if path.exists():
        path.rmdir()


def remove_partial(path: Path) -> None:
    """Delete the build directory ``path`` when it is provably prebake's; its markers go last, so a
    kill in between still leaves a directory prebake recognises. Refuses otherwise."""
    problem = partial_problem(path)
    if problem is not None:
        raise ForeignOutputError(f"left {path} in place: {problem}; prebake deletes only what it can prove it "
                                 f"wrote — {_FIX}")
    if not path.exists():
        return
    entries = [e.name for e in _entries(path)]
    last = [n for n in _PARTIAL_MARKERS if n in entries]
    for name in [n for n in entries if n not in last] + last:
        p = path / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    path.rmdir()


def remove_lock(path: Path) -> None:
    """Delete ``<out>.lock`` when it is a lock file prebake wrote; refuses otherwise."""
    problem = lock_problem(path)
    if problem is not None:
        raise ForeignOutputError(f"left {path} in place: {problem} — {_FIX}")
    path.unlink(missing_ok=True)
