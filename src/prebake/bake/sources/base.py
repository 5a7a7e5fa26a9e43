"""The Source contract: what a bake reads from.

A source enumerates raw items with stable keys and reads one item at a time::

    class MySource(Source):
        kind = "mine"
        def keys(self) -> Sequence[str]: ...        # stable, one per item, source order
        def read(self, index: int) -> dict: ...    # item dict; raise BadItemError if bad
        def describe(self) -> dict: ...            # JSON identity, for the fingerprint

``read`` returns a dict of column name -> value. Image sources return
``{"image": PIL.Image (RGB) | uint8 ndarray (C, H, W), "label": int}``.
Values may be numpy arrays, numpy scalars or Python int/float/bool.

Sources are built in the parent process and reach the worker processes by fork,
so heavy state (decoded CIFAR batches) is loaded once.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar


class Source(abc.ABC):
    """Base class of every source. See the module docstring for the contract."""

    kind: ClassVar[str] = "source"
    #: Class names, index = label value; None when labels are not class indices.
    classes: list[str] | None = None
    #: Columns whose first axis varies per item (audio signals); always stored ragged.
    ragged_columns: ClassVar[tuple[str, ...]] = ()
    #: How to open this source again (set by :func:`prebake.bake.sources.detect`): what
    #: ``prebake ls`` uses to tell whether a build would now rebuild. None: it cannot be.
    origin: dict[str, Any] | None = None

    @abc.abstractmethod
    def keys(self) -> Sequence[str]:
        """One stable key per item, in source order (used in reports and the manifest)."""

    @abc.abstractmethod
    def read(self, index: int) -> dict[str, Any]:
        """Item ``index`` as a dict; raises :class:`prebake.errors.BadItemError` if bad."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity: kind, root, parameters, and ``files``.

        ``files`` maps a path relative to ``root`` to ``[size, mtime_ns]`` (see
        :func:`file_identity`). A changed entry makes the cache stale.
        """

    def __len__(self) -> int:
        return len(self.keys())

    def item_identities(self) -> list[str] | None:
        """Optional: one string per item that changes whenever the item's input does.

        With it, a rebuild copies the rows of unchanged items from the old cache and
        bakes only new or changed ones. None (the default) means every item is baked.
        """
        return None

    def describe_files(self, root: str | os.PathLike[str], params: dict[str, Any],
                      files: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
        """The usual :meth:`describe` of a source made of files under ``root``."""
        return {"kind": self.kind, "root": str(root), "params": dict(params), "files": file_identity(files, root)}


def file_identity(paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str]) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` for files that exist; missing ones get ``[-1, -1]``."""
    root = Path(root)
    out: dict[str, list[int]] = {}
    for p in paths:
        p = Path(p)
        rel = os.path.relpath(p, root)
        try:
            st = p.stat()
            out[rel] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[rel] = [-1, -1]
    return out
