"""The files that transforms and stages open while baking: part of what a cache was made from.

A transform that loads a checkpoint lazily (``global ckpt; if ckpt is None: ckpt = torch.load(PATH)``)
or reads a lookup table on every call depends on that file, but neither its code nor its
parameters say so. While a build runs the per-item transforms (:func:`prebake.bake.worker.bake_item`)
and the stages, a ``sys.addaudithook`` hook notes every file opened for reading; each chunk's
:class:`~prebake.bake.plan.ChunkResult` carries what its process noted back to the builder
(and into the journal, so a resumed build keeps it), and the manifest keeps each file's identity
in ``fingerprint.inputs.reads`` (by size, mtime and ctime, or by content with ``content_hash``,
as the source's files: :func:`prebake.identity.files.file_identity`).

The reads are known only once the bake ran, so they are not in the digest a build starts from:
a cache is up to date when its digest matches *and* every file it read is unchanged
(:func:`changes`), else the rebuild names the file.

Not recorded: files opened by the import system and Python's own (``.py``, ``.pyc``, ``.so``,
the standard library, site-packages), ``/proc``, ``/sys`` and ``/dev``, prebake's own files, the
cache being built, the source's own item files (in the fingerprint already), files opened for
writing, and files a transform deleted before its chunk ended (temporary files). Files that native
code opens without Python's ``open`` (HDF5 through h5py, a C library's ``fopen``) are not seen.

An audit hook cannot be removed, so one process-wide hook is installed at the first bake and
does nothing unless a bake is recording: no measurable cost on 2,000 tiny items whose transform
opens no file, +4 % when it reads a JSON for every one of them (benchmarks/reads.py).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..cache.files import read_manifest
from ..cache.format import LOCK_SUFFIX, PARTIAL_SUFFIX, REPLACED_SUFFIX
from ..errors import PrebakeError
from .code import library_dirs
from .files import Identity, file_identity, refresh_identity

log = logging.getLogger("prebake")

#: The identity of a file that two processes saw differently: it changed while the build ran.
CHANGED: Identity = [-2, "changed while the build ran"]
_SHOWN = 3  # files named in a reason; the rest are counted
_PYTHON_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so", ".pth")
_SYSTEM = ("/proc/", "/sys/", "/dev/")
_WRITE = os.O_WRONLY | os.O_TRUNC | os.O_CREAT

_recording = False  # set only while a transform or stage runs
_opened: set[str] = set()  # what this process opened while recording, not yet taken
_hooked: bool | None = None  # None: not tried yet; False: an existing audit hook refused ours


def _hook(event: str, args: tuple[Any, ...]) -> None:
    """Note a file opened for reading while recording; every other event costs one comparison."""
    if _recording and event == "open":
        try:
            path, _mode, flags = args
            if not isinstance(path, int) and not (flags or 0) & _WRITE:  # not a descriptor, not for writing
                _opened.add(os.path.abspath(os.fsdecode(path)))
        except (TypeError, ValueError):
            pass  # not a path: a hook must never break the open it watches


def forget() -> None:
    """Drop what this process noted and nobody took (a failed build's, or the parent's in a forked worker)."""
    _opened.clear()


os.register_at_fork(after_in_child=forget)


def _install() -> bool:
    global _hooked
    if _hooked is None:
        try:
            sys.addaudithook(_hook)
            _hooked = True
        except RuntimeError as e:  # another audit hook vetoed "sys.addaudithook"
            _hooked = False
            log.warning("files that transforms read while baking are not recorded, so a change to one will not "
                        "rebuild the cache (%s); pass --force after changing such a file", e)
    return _hooked


class _Recording:
    def __enter__(self) -> None:
        global _recording
        self._was = _recording
        _recording = _hooked or (_hooked is None and _install())

    def __exit__(self, *exc: object) -> None:
        global _recording
        _recording = self._was


def recording() -> _Recording:
    """``with recording():`` notes the files this process opens for reading (see the module docstring)."""
    return _Recording()


def take() -> dict[str, Identity]:
    """``{path: [size, mtime_ns, ctime_ns]}`` of the files noted since the last call (Python's and the
    system's left out, see the module docstring), and forget them."""
    global _opened
    paths, _opened = _opened, set()
    found: dict[str, Identity] = {}
    for p in sorted(paths):
        if p.startswith(_SYSTEM) or p.endswith(_PYTHON_SUFFIXES) or _is_library(p):
            continue
        try:
            st = os.stat(p)
        except OSError:
            continue  # gone already: a temporary file
        if stat.S_ISREG(st.st_mode):
            found[p] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return found


def _is_library(path: str) -> bool:
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts or real.startswith(_own_dirs())


def _own_dirs() -> tuple[str, ...]:
    return (*library_dirs(), os.path.realpath(Path(__file__).parents[1]) + os.sep)


def merge(into: dict[str, Identity], more: Mapping[str, Identity]) -> dict[str, Identity]:
    """``into`` with ``more`` added; a file seen with two identities became :data:`CHANGED`."""
    for path, identity in more.items():
        into[path] = identity if into.get(path, identity) == identity else CHANGED
    return into


# -- in the building process -------------------------------------------------------------------------


def settle(fp: dict[str, Any], out: Path, recorded: Iterable[Mapping[str, Identity]], content: bool,
           carried: Iterable[str] = ()) -> dict[str, Any]:
    """``fp`` with ``inputs["reads"]``: every file the chunks ``recorded``, this process noted, or the
    cache being replaced read (``carried``), apart from the source's files and the cache's own.

    Each keeps the identity it had when it was read; with ``content`` its bytes are hashed now, if its
    metadata says it is the file that was read. None read: ``fp`` unchanged (its manifest as before).
    """
    seen: dict[str, Identity] = {}
    for r in (*recorded, take()):
        merge(seen, r)
    for path in carried:
        seen.setdefault(path, _now(path))
    source = fp["inputs"].get("source") or {}
    skip = _own_paths(out, source)
    found = {p: _final(p, v, content) for p, v in sorted(seen.items()) if v[0] != -1 and not skip(p)}
    if not found:
        return fp
    return {**fp, "inputs": {**fp["inputs"], "reads": found}}


def _own_paths(out: Path, source: Mapping[str, Any]) -> Any:
    """``skip(path)``: whether ``path`` belongs to the cache being built or is one of the source's files."""
    cache = tuple(str(out) + s for s in ("/", PARTIAL_SUFFIX + "/", REPLACED_SUFFIX + "/"))
    lock = str(out) + LOCK_SUFFIX
    root, files = source.get("root"), source.get("files") or {}
    base = os.path.abspath(root) + os.sep if isinstance(root, str) else None

    def skip(path: str) -> bool:
        if path.startswith(cache) or path == lock:
            return True
        return base is not None and path.startswith(base) and os.path.relpath(path, base) in files

    return skip


def _final(path: str, identity: Identity, content: bool) -> Identity:
    """The identity to keep: the one at read time, or (``content``) the bytes, when unchanged since."""
    if not content or identity == CHANGED:
        return identity
    return _now(path, content=True) if _now(path) == identity else CHANGED


def _now(path: str, content: bool = False) -> Identity:
    return file_identity([path], "/", content)[os.path.relpath(path, "/")]


def carried(out: Path, fp: Mapping[str, Any], reused: bool) -> list[str]:
    """The files the cache at ``out`` read, to record again in the one replacing it: when its rows are
    copied (``reused``), or when it had the same digest (the same code, which may keep a lazily loaded
    file in memory instead of reading it again in this process)."""
    old = _fingerprint(out)
    if not (reused or old.get("digest") == fp["digest"]):
        return []
    return list(_recorded(old.get("inputs")))


def stale_at(cache_dir: Path) -> list[str]:
    """:func:`changes` of the cache (or sealed partial build) at ``cache_dir``; empty when there is none."""
    return changes(_fingerprint(cache_dir).get("inputs") or {})


def _fingerprint(cache_dir: Path) -> dict[str, Any]:
    try:
        fp = read_manifest(cache_dir)["fingerprint"]
    except (OSError, KeyError, PrebakeError):
        return {}
    return fp if isinstance(fp, dict) else {}


# -- is a cache stale? -------------------------------------------------------------------------------


def changes(inputs: Mapping[str, Any]) -> list[str]:
    """Why the files a cache read while baking (``inputs["reads"]``) no longer match it (empty: they do)."""
    recorded = _recorded(inputs)
    if not recorded:
        return []
    now = refresh_identity(recorded, "/")
    changed = [p for p in recorded if now.get(p) != recorded[p]]
    reasons = [f"the file {p} that a transform or stage read while baking {_how(recorded[p], now[p])}"
               for p in changed[:_SHOWN]]
    if len(changed) > _SHOWN:
        reasons.append(f"{len(changed) - _SHOWN} more files that the bake read changed")
    return reasons


def _recorded(inputs: Any) -> dict[str, Identity]:
    """The well-formed entries of ``inputs["reads"]``: ``{absolute path: identity}``."""
    reads = inputs.get("reads") if isinstance(inputs, Mapping) else None
    if not isinstance(reads, dict):
        return {}
    return {p: v for p, v in reads.items() if os.path.isabs(p) and isinstance(v, list) and len(v) in (2, 3)
            and isinstance(v[0], int)}


def changed_since(results: Iterable[Any]) -> list[str]:
    """:func:`changes` of the files that journaled chunks (``ChunkResult`` s) read."""
    seen: dict[str, Identity] = {}
    for r in results:
        merge(seen, getattr(r, "reads", None) or {})
    return changes({"reads": seen})


def _how(old: Identity, new: Identity) -> str:
    if new[0] == -1:
        return "is gone"
    if old == CHANGED:
        return "changed while the build read it"
    if old[0] != new[0]:
        return f"changed (size {old[0]:,} -> {new[0]:,})"
    if len(old) == 2:
        return "changed (same size, other bytes)"
    return "changed (same size, modified since: mtime or ctime)"
