"""Every exception prebake raises on purpose.

Messages carry the value, what was expected, and the fix, and name the file.
"""

from __future__ import annotations

import re


class PrebakeError(Exception):
    """Base class of all prebake errors.

    ``counts``: ``(kept, total, skipped)`` when the error ends a build whose items were counted (too many skipped,
    every item bad), so the CLI can end it with ``kept K of N, skipped S`` as every build ends."""

    counts: tuple[int, int, int] | None = None

    def counted(self, kept: int, total: int, skipped: int) -> PrebakeError:
        """This error with the build's ``counts``."""
        self.counts = (kept, total, skipped)
        return self


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


class ForeignOutputError(PrebakeError):
    """An output path holds something prebake cannot prove it wrote (another program's files, a
    damaged cache); it is left exactly as it was."""


class SchemaError(PrebakeError):
    """The items of a column cannot share one column: dtypes no dtype holds exactly (int64 beside
    uint64, text beside numbers), or different numbers of axes. Nothing is committed."""


class TooManySkippedError(PrebakeError):
    """More items were skipped as bad than ``max_skipped`` allows. Nothing is committed."""


class SplitsError(PrebakeError):
    """A rebuild cannot carry a cache's saved splits (``splits.json``) over to its new rows."""


class SamplingError(PrebakeError, ValueError):
    """A loader configuration whose ranks could not all make the same number of steps."""


class ViewError(PrebakeError, ValueError):
    """A view of a cache (windows, elements, tuples) asked for something the cache cannot give."""


class ResumeError(PrebakeError, ValueError):
    """A ``Loader.load_state_dict`` state that was saved by a different loader (items, subset, view)."""


class OptionError(PrebakeError, ValueError):
    """An option value, or a combination of options, that cannot work; raised before any work starts."""


class IndicesError(OptionError, ViewError, IndexError):
    """Indices that select no valid items: out of range, not whole numbers, not 1-D, or a boolean mask of
    another length. An OptionError (``Loader(indices=)``), a ViewError (a view's ``indices=``) and an
    IndexError (``cache[...]``), so code that catches any of those catches it."""


class IteratorSupersededError(PrebakeError, RuntimeError):
    """``next()`` on a Loader's iterator after a newer ``iter(loader)``, ``set_epoch`` or ``load_state_dict``."""


class MissingExtraError(PrebakeError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra that installs it."""


# -- naming options in messages ------------------------------------------------------------------

#: Options that are switches: Python spells them ``force=True`` (the CLI's table makes them ``--force``).
SWITCHES = frozenset({"force", "strict", "allow_empty", "content_hash", "yes", "segment_cycles", "rgb"})


def opt(name: str, value: object = None) -> str:
    """An option as a Python user writes it, in backticks: `` `image_size=224` ``, `` `image_size` `` without a
    value, `` `force=True` `` for a switch; fenced by one backtick more than the value holds in a row, as
    Markdown does.

    Every message that tells the user to change an option names it through here. The backticks mark it for
    the CLI, which renders each marked option as its flag (``--image-size 224``, ``--force``) where it prints
    (``prebake.cli.spelling``), so a CLI user is never told about a Python parameter, nor a Python user about a
    flag, and a message made in a worker process renders the same.
    """
    body = f"{name}=True" if name in SWITCHES else name if value is None else f"{name}={_plain(value)!r}"
    fence = "`" * (max(map(len, re.findall("`+", body)), default=0) + 1)
    return f"{fence}{body}{fence}"


def _plain(value: object) -> object:
    """A value as a Python literal the CLI can read back: a path as its text, a numpy scalar as its number."""
    if hasattr(value, "__fspath__"):
        return str(value)
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "shape", None) == () else value
