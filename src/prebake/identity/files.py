"""The identity of a source's files (and of the files transforms read): by metadata or by content.

A changed identity is what makes a cache stale when its inputs change; the fingerprint
(:mod:`.fingerprint`) keeps one per file, and :mod:`.reads` one per file read while baking.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..cache.files import file_checksum

#: The identity of a file, by metadata: ``[size, mtime_ns, ctime_ns]``; by content: ``[size, "xxh3_64:<hex>"]``.
Identity = list[Any]
_CONTENT = "xxh3_64:"


def file_identity(paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str],
                  content: bool = False) -> dict[str, Identity]:
    """``{relative path: identity}`` for each file; a missing one gets ``[-1, ...]``.

    By metadata (the default) the identity is ``[size, mtime_ns, ctime_ns]``. The inode
    change time ``st_ctime_ns`` is set to *now* by the kernel on every write, truncation,
    ``chmod``, rename or ``os.utime`` of the file, and no unprivileged call can set it
    back, so an edit that keeps the size and restores the mtime is still seen. It does
    not see: an edit made while the system clock was set back, one made through the raw
    block device, or filesystems that do not keep ctime. It also changes when the data
    is copied or restored (``cp -a``, ``rsync``, ``tar x``), which then reads as
    "modified" although the bytes are equal: ``content=True`` (``--content-hash``)
    compares the bytes instead, at the cost of reading every file once per build.
    """
    root = Path(root)
    under = os.fspath(root) + os.sep
    return {relative_key(p, root, under): _identity(os.fspath(p), content) for p in paths}


def relative_key(p: str | os.PathLike[str], root: str | os.PathLike[str], under: str | None = None) -> str:
    """The key of ``p`` in a :func:`file_identity` table of ``root`` (``under``: ``root`` and a separator, when the
    caller has it): what ``os.path.relpath`` gives, without its cost for a path joined under ``root``."""
    name = os.fspath(p)
    under = under if under is not None else os.fspath(Path(root)) + os.sep
    rel = name[len(under):] if name.startswith(under) else ""
    if not rel or rel.startswith(os.sep) or ".." in rel.split(os.sep):
        rel = os.path.relpath(p, root)
    return rel


def refresh_identity(recorded: dict[str, Identity], root: str | os.PathLike[str]) -> dict[str, Identity]:
    """The current identity of every file in ``recorded``, each of the same kind as recorded."""
    root = Path(root)
    return {rel: _identity(root / rel, _is_content(v)) for rel, v in recorded.items()}


def _is_content(identity: Any) -> bool:
    return isinstance(identity, list) and len(identity) == 2 and str(identity[1]).startswith(_CONTENT)


def _identity(p: str | os.PathLike[str], content: bool) -> Identity:
    try:
        if content:
            return [os.stat(p).st_size, _CONTENT + file_checksum(p)]
        st = os.stat(p)
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    except OSError:
        return [-1, _CONTENT + "missing"] if content else [-1, -1, -1]
