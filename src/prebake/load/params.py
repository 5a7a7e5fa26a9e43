"""Checks of the loading parameters (Loader, views, watch): a bad value is a typed prebake error that names
the parameter, the value and what is allowed, before it reaches numpy or torch as something else."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cache.indices import shown
from ..errors import OptionError, PrebakeError


def whole(value: Any, name: str, least: int, error: type[PrebakeError] = OptionError, fix: str = "") -> int:
    """``value`` as an int ``>= least``: a Python or numpy integer (not a bool, float or string)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise error(f"{name}={shown(value)} is a {type(value).__name__}; {name} must be a whole number (int) "
                    f">= {least}{fix or _example(value, name, least)}")
    if value < least:
        raise error(f"{name}={int(value)} is below {least}; {name} must be a whole number >= {least}"
                    f"{fix or _example(value, name, least)}")
    return int(value)


def _example(value: Any, name: str, least: int) -> str:
    """The fix: the value as a whole number when it reads as one ('8', 8.0), else an allowed value."""
    try:
        as_int = int(value) if isinstance(value, (str, float, np.floating)) and float(value) == int(float(value)) \
            else None
    except (TypeError, ValueError, OverflowError):
        as_int = None
    if as_int is not None and as_int >= least:
        return f": pass {name}={as_int}"
    return f": pass {name}={max(least, 1)} for example" if least <= 1 else f": pass {name}={least} or more"


def flag(value: Any, name: str, error: type[PrebakeError] = OptionError) -> bool:
    """``value`` as a bool: only True or False (a string such as 'no' would otherwise be true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{name}={shown(value)} is a {type(value).__name__}; {name} must be True or False")
    return bool(value)


def names(value: Any, name: str, error: type[PrebakeError] = OptionError) -> list[str] | None:
    """``columns=``: None, or a list of column names (a lone string would be read letter by letter)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise error(f"{name}={shown(value)} is one string; {name} must be a list of column names: "
                    f"pass {name}=[{value!r}]")
    if not isinstance(value, (Sequence, np.ndarray)) or not all(isinstance(c, str) for c in value):
        raise error(f"{name}={shown(value)}: {name} must be a list of column names (str), e.g. "
                    f"{name}=['image', 'label'], or None for all")
    return list(value)


def function(value: Any, name: str, error: type[PrebakeError] = OptionError) -> Any:
    """``value`` when it is None or callable."""
    if value is not None and not callable(value):
        raise error(f"{name}={shown(value)} is a {type(value).__name__}, not callable; {name} must be a "
                    "function (or an nn.Module) called with the batch, or None")
    return value
