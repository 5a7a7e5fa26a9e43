"""Checks of the loading parameters (Loader, views, watch): a bad value is a typed prebake error that names
the parameter, the value and what is allowed, before it reaches numpy or torch as something else."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

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


def check_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device, or an OptionError now if this machine does not have it."""
    try:
        if device is not None and (isinstance(device, bool) or not isinstance(device, (str, torch.device, int))):
            raise TypeError(f"a {type(device).__name__}")
        d = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise OptionError(f"device={shown(device)} is not a device ({e}); pass 'cpu', 'cuda', 'cuda:1' or a "
                          "torch.device") from None
    if d.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise OptionError(f"device={str(device)!r}, but this machine has no CUDA device "
                              f"(torch {torch.__version__}, "
                              f"{build}); pass device='cpu', or choose what exists: "
                              "device='cuda' if torch.cuda.is_available() else 'cpu'")
        if d.index is not None and d.index >= count:
            raise OptionError(f"device={str(device)!r}, but this machine has {count} CUDA device(s), "
                              f"cuda:0..cuda:{count - 1}")
    elif d.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError(f"device={str(device)!r}, but MPS is not available here; pass device='cpu'")
    return d


def gather_threads(threads: Any, device: torch.device, in_threads: bool) -> int:
    """The gather threads of a pass; 0 gathers in the loop's own thread, inside ``next()``.

    ``"auto"`` is none on a CPU device: the training step's own (OpenMP) threads use every core, so
    gather threads only pre-empt them, and handing each batch over costs more than gathering it.
    An epoch of 1,000 CIFAR-sized items with a normalising step took 3.8 ms on 2 threads and
    1.3 ms in the loop's thread (10,000 items: 20 and 10.7 ms; a DataLoader without workers 1.7
    and 10.2 ms; benchmarks/loader.py). Threads stay where the host is otherwise idle
    (a CUDA device) and for ``transform_in_threads``.
    """
    if isinstance(threads, str) and threads == "auto":
        return 2 if device.type != "cpu" or in_threads else 0
    if isinstance(threads, str):
        raise OptionError(f"threads={threads!r}: threads must be 'auto' or a whole number >= 1 of gather threads; "
                          "pass threads='auto' (the default) or threads=2")
    return whole(threads, "threads", 1, fix=": pass threads='auto' (none on a CPU, 2 on CUDA) or a count >= 1")
