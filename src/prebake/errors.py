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


class CacheChangedError(PrebakeError):
    """A cache was rebuilt after a Cache object was opened, so this process would mix two versions."""


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


class WorkerDiedError(PrebakeError):
    """A build worker process died (a signal such as the out-of-memory killer's SIGKILL)."""

    exitcode: int | None = None


class DiskFullError(PrebakeError, OSError):
    """The output's filesystem has no room for the cache being built."""


class SamplingError(PrebakeError, ValueError):
    """A loader configuration whose ranks could not all make the same number of steps."""
