"""Every exception prebake raises on purpose.

Messages carry the value, what was expected, and the fix, and name the file.
"""

from __future__ import annotations


class PrebakeError(Exception):
    """Base class of all prebake errors."""


class CacheNotFoundError(PrebakeError, FileNotFoundError):
    """The path holds no committed cache (missing, or only a partial build)."""


class CacheCorruptError(PrebakeError):
    """A committed cache does not match its manifest (size, checksum, header)."""


class FormatError(PrebakeError):
    """A manifest, column name or dtype that the format does not allow."""


class SourceError(PrebakeError):
    """A source path that cannot be read or detected as a whole."""


class UnsafePickleError(SourceError):
    """A pickle that references a global outside the allowed numpy set."""


class BadItemError(PrebakeError):
    """One source item cannot be baked; the build records it and goes on.

    ``reason`` is the short text stored in the manifest's ``skipped`` list.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class StrictModeError(PrebakeError):
    """``strict=True`` and an item was bad."""


class BuildLockedError(PrebakeError):
    """Another process holds the build lock of this output."""


class ViewError(PrebakeError, ValueError):
    """A view of a cache (windows, elements, tuples) asked for something the cache cannot give."""


class ResumeError(PrebakeError, ValueError):
    """A ``Loader.load_state_dict`` state that was saved by a different loader (items, subset, view)."""
