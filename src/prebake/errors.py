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

_FRONT_END = {"cli": False}
#: Options that are switches: the CLI spells them ``--force``, Python ``force=True``.
_SWITCHES = frozenset({"force", "strict", "allow_empty", "content_hash", "yes", "segment_cycles", "rgb"})
#: Python names whose CLI flag is spelled otherwise (a repeatable flag takes one value at a time).
CLI_FLAGS = {"label_columns": "--label-column", "stages": "--stage", "keep_columns": "--keep-column",
             "dtypes": "--dtype"}


def use_cli_names(on: bool = True) -> bool:
    """Make :func:`opt` spell options as CLI flags (``prebake`` does, while it runs); returns the old setting."""
    previous, _FRONT_END["cli"] = _FRONT_END["cli"], on
    return previous


def cli_names() -> bool:
    """Whether messages name options as the CLI's flags (while ``prebake`` runs)."""
    return bool(_FRONT_END["cli"])


def opt(name: str, value: object = None) -> str:
    """An option as the user writes it: ``--image-size 224`` on the CLI, ``image_size=224`` in Python
    (``image_size`` without a value; switches are ``--force`` and ``force=True``).

    Every message that tells the user to change an option names it through here, so a
    CLI user is never told about a Python parameter, nor a Python user about a flag.
    """
    if _FRONT_END["cli"]:
        flag = CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
        return flag if value is None or name in _SWITCHES else f"{flag} {value}"
    if name in _SWITCHES:
        return f"{name}=True"
    return name if value is None else f"{name}={value!r}"
