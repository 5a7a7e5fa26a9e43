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
import copy
import importlib
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..identity.files import file_identity

if TYPE_CHECKING:
    import numpy as np


class Source(abc.ABC):
    """Base class of every source. See the module docstring for the contract."""

    kind: ClassVar[str] = "source"
    #: Class names, index = label value; None when labels are not class indices.
    classes: list[str] | None = None
    #: Columns whose first axis varies per item (audio signals); always stored ragged.
    ragged_columns: ClassVar[tuple[str, ...]] = ()
    #: How to open this source again (set by :func:`prebake.sources.detect`): what
    #: ``prebake ls`` uses to tell whether a build would now rebuild. None: it cannot be.
    origin: dict[str, Any] | None = None

    @abc.abstractmethod
    def keys(self) -> Sequence[str]:
        """One stable key per item, in source order (used in reports and the manifest)."""

    @abc.abstractmethod
    def read(self, index: int) -> dict[str, Any]:
        """Item ``index`` as a dict; raises :class:`prebake.errors.BadItemError` if bad."""

    #: Identify files by their content (xxh3 of every byte) instead of their metadata; the
    #: build sets it on a copy of the source for ``content_hash=True`` (CLI ``--content-hash``).
    content_hash: bool = False

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity: kind, root, parameters, and ``files``.

        ``files`` maps a path relative to ``root`` to its identity (see
        :func:`file_identity`). A changed entry makes the cache stale.
        """

    def with_content_hash(self) -> Source:
        """A shallow copy of this source that identifies its files by content."""
        twin = copy.copy(self)
        twin.content_hash = True
        return twin

    def __len__(self) -> int:
        return len(self.keys())

    def imports(self) -> tuple[str, ...]:
        """Modules :meth:`read` imports on first use. The build imports them once, before its workers fork,
        so that no worker pays for them again (:func:`import_ahead`)."""
        return ()

    def predicted_sizes(self, column: str) -> np.ndarray | None:
        """Optional: how many elements each item's value of column ``column`` will have (int64, one per item),
        from the files' headers, without decoding them; None (the default) when the source cannot tell. A build of
        items of many shapes lays the column out from it before the workers start, so that each writes its items
        straight to their place (bake/placed.py); an item the guess missed is spilled as it would be without."""
        return None

    def item_identities(self) -> list[str] | None:
        """Optional: one string per item that changes whenever the item's input does.

        With it, a rebuild copies the rows of unchanged items from the old cache and
        bakes only new or changed ones. None (the default) means every item is baked.
        """
        return None

    def item_identities_from(self, files: dict[str, Any]) -> list[str] | None:
        """Optional: :meth:`item_identities` from ``files``, the file table :meth:`describe` just gave (relative path
        -> identity), instead of taking every file's identity again; None (the default): the build calls
        :meth:`item_identities`. It must return exactly what :meth:`item_identities` returns for those files. The
        build uses it only where the class that defines :meth:`item_identities` defines it too and :meth:`describe`
        is prebake's: a subclass that changes either is asked :meth:`item_identities`."""
        return None

    def describe_files(self, root: str | os.PathLike[str], params: dict[str, Any],
                      files: Iterable[str | os.PathLike[str]], content: bool | None = None) -> dict[str, Any]:
        """The usual :meth:`describe` of a source made of files under ``root``.

        ``content=True`` hashes every byte of the files (what sources of a few large files
        do: CIFAR batches, ``.npz``, a CSV table); the default follows :attr:`content_hash`.
        """
        content = self.content_hash if content is None else content
        return {"kind": self.kind, "root": str(root), "params": dict(params),
                "files": file_identity(files, root, content=content)}


def import_ahead(modules: Iterable[str]) -> None:
    """Import ``modules`` in this process: forked workers inherit them instead of each importing its own
    (``scipy.signal`` costs 0.6-1.4 s a process: two workers each paying it started slower than one,
    benchmarks/startup.py). A module that is not installed is left to the reader's own error."""
    for name in dict.fromkeys(modules):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        if name == "PIL.Image":
            from PIL import Image

            Image.init()  # Pillow imports its format plugins at the first open
