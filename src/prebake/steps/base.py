"""The contract of a per-item step, and a function of yours as one.

A step is ``item dict -> item dict``, deterministic, and says what it is: a built-in step is a
frozen dataclass (:class:`Step`) whose fields are its parameters. :meth:`Step.describe` is the
step's entry in the fingerprint and what ``prebake info`` and a rebuild's reason print, so a
changed parameter rebuilds the cache and says which. ``needs`` names the columns a step reads
(checked on the first items before any work), ``ragged`` the columns it adds whose first axis
varies per item, ``option`` the ``prebake build`` flag that writes it.

Any other callable in a list of steps is one of yours: :class:`Function` wraps it, and its
code (and the weights of any ``nn.Module`` it reaches) enter the fingerprint.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import BadItemError, OptionError
from ..identity.code import code_identity

Item = dict[str, Any]


class Step:
    """Base of the built-in steps (each a frozen dataclass whose fields are its parameters)."""

    needs: ClassVar[tuple[str, ...]] = ()
    ragged: ClassVar[tuple[str, ...]] = ()
    option: ClassVar[str | None] = None
    #: Modules the step imports on first use: a build imports them once before its workers fork.
    imports: ClassVar[tuple[str, ...]] = ()

    def __call__(self, item: Item) -> Item:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The step's fingerprint entry: its name and parameters, as JSON values."""
        return {"name": type(self).__name__, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    def __str__(self) -> str:
        return text(self.describe())


def text(described: dict[str, Any]) -> str:
    """'Resize(size=224)', 'BandPass(low=25.0, high=400.0, order=4)', 'function(mymod:crop)'."""
    if described.get("name") == "user":
        return f"function({described.get('function', '?')})"
    params = ", ".join(f"{k}={v}" for k, v in described.items() if k != "name" and v is not False)
    return f"{described.get('name', '?')}({params})"


def hint(step: str) -> str:
    """How to ask for a step in a message: its class, marked for the CLI, which prints the step's flag."""
    return f"`prebake.steps.{step}`"


def where(step: Step) -> str:
    """A step as its user wrote it, ``Resize(size=224)``; marked for the CLI when it has a flag, which it prints."""
    return f"`{step}`" if step.option else str(step)


def refuse(step: Any, field: str, allowed: str) -> OptionError:
    value = getattr(step, field)
    return OptionError(f"{type(step).__name__}({field}={value!r}): {field} takes {allowed}")


def _real(v: Any) -> bool:
    """A real number that is not a bool (True is an int to Python, never a size or a level here)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def size_field(step: Any, field: str) -> None:
    """``step.field`` must be a whole number >= 1 (a bool is not one); stored as an int."""
    v = getattr(step, field)
    if not _real(v) or not math.isfinite(v) or int(v) != v or v < 1:
        raise refuse(step, field, "a whole number >= 1")
    object.__setattr__(step, field, int(v))


def number_field(step: Any, field: str, test: Callable[[float], bool], allowed: str) -> None:
    """``step.field`` must be a finite number passing ``test``; stored as a float."""
    v = getattr(step, field)
    if not _real(v) or not math.isfinite(v) or not test(v):
        raise refuse(step, field, allowed)
    object.__setattr__(step, field, float(v))


class Function:
    """A function of yours, ``item -> item``, as a step. Its code enters the fingerprint, and so
    do the weights of any ``nn.Module`` it reaches. ``spec`` is the ``"module:function"`` it was
    loaded from, when it was (how a config file names it)."""

    def __init__(self, fn: Callable[[Item], Item], spec: str | None = None):
        if not callable(fn):
            raise OptionError(f"a step must be callable (item dict -> item dict), got {type(fn).__name__}")
        self.fn, self.spec = fn, spec
        self.identity = code_identity(fn)

    def __call__(self, item: Item) -> Item:
        out = self.fn(item)
        if not isinstance(out, dict):
            raise BadItemError(f"transform {self.identity['name']} returned {type(out).__name__}, expected a dict")
        return out

    def describe(self) -> dict[str, Any]:
        ident = self.identity
        return {"name": "user", "function": ident["name"], "code": ident["code"], "weights": ident["weights"]}

    def __str__(self) -> str:
        return f"function({self.spec or self.identity['name']})"
