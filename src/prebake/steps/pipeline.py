"""A list of steps made ready to run: what the workers apply to each item, and the stages after them.

``compile_steps([Resize(64), my_fn, Stage(...)])`` keeps the user's order. A function of
yours becomes a :class:`~prebake.steps.base.Function`; a :class:`~prebake.steps.ToCHW` goes
before each one and at the end of the per-item steps (so functions, and the cache, see
``(C, H, W)`` arrays, never PIL images); :class:`~prebake.Stage` s are batched and run in the
building process after every per-item step, so a per-item step after a stage is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError
from .audio import BandPass, Resample
from .base import Function, Item, Step, where
from .image import ToCHW
from .monai import expand as expand_monai
from .stage import Stage

_PROBE_ITEMS = 5


@dataclass(frozen=True)
class Pipeline:
    """Compiled steps: ``items`` run per item in the workers, in order; ``stages`` run batched after them."""

    items: tuple[Any, ...] = (ToCHW(),)
    stages: tuple[Stage, ...] = ()
    remainder: Any = None  # a MONAI Compose's transforms from its first random one on: applied per batch

    def __call__(self, item: Item) -> Item:
        for step in self.items:
            item = step(item)
        return item

    def describe(self) -> list[dict[str, Any]]:
        """The fingerprint entries of every step, in order (the stages' last)."""
        return [s.describe() for s in self.items] + [s.describe() for s in self.stages]

    def ragged_outputs(self) -> tuple[str, ...]:
        """The ragged columns the steps add (the cycles of a segmentation)."""
        return tuple(c for s in self.items for c in getattr(s, "ragged", ()))

    def check_inputs(self, source: Any) -> None:
        """Before any work: every step finds the columns it needs in the source's first item that reads."""
        if not any(getattr(s, "needs", ()) for s in self.items):
            return  # nothing to check: reading an item here would cost every build, up-to-date ones too
        for index in range(min(len(source), _PROBE_ITEMS)):
            try:
                item = source.read(index)
            except Exception:  # noqa: BLE001 - a bad item: the build reports it; look at the next one
                continue
            _check_columns(self.items, item, source)
            _check_nyquist(self.items, item)
            return


def compile_steps(steps: Iterable[Any] | None) -> Pipeline:
    """``steps`` (steps, functions of yours, stages) as a :class:`Pipeline`; see the module docstring."""
    if steps is None:
        return Pipeline()
    steps, remainder = expand_monai(steps)  # a MONAI Compose: its deterministic prefix as steps (steps/monai.py)
    if isinstance(steps, (Step, Stage)) or callable(steps) and not isinstance(steps, (list, tuple)):
        steps = [steps]
    if not isinstance(steps, (list, tuple)):
        raise OptionError(f"steps is a {type(steps).__name__}; give a list of steps, e.g. "
                          "steps=[prebake.steps.Resize(224), my_function]")
    items: list[Any] = []
    stages: list[Stage] = []
    for k, step in enumerate(steps):
        if isinstance(step, type) and issubclass(step, (Step, Stage, Function)):  # callable, but not a step
            raise OptionError(f"steps[{k}] is the class {step.__name__}, not a step; give one with its parameters, "
                              f"e.g. {step.__name__}(...) as prebake.steps documents it")
        if isinstance(step, Stage):
            stages.append(step)
            continue
        if stages:
            raise OptionError(f"steps[{k}] ({_shown(step)}) comes after the stage {stages[-1].name!r}: a stage runs "
                              "batched after every per-item step, so put the per-item steps first")
        if isinstance(step, Function) or not isinstance(step, Step) and callable(step):
            items += [ToCHW(), step if isinstance(step, Function) else Function(step)]
        elif isinstance(step, Step):
            items.append(step)
        else:
            raise OptionError(f"steps[{k}] is a {type(step).__name__} ({step!r}); a step is a prebake.steps "
                              "object, a function item -> item, or a prebake.Stage")
    if not items or not isinstance(items[-1], (Function, ToCHW)):
        items.append(ToCHW())
    return Pipeline(tuple(items), tuple(stages), remainder)


def _shown(step: Any) -> str:
    return str(step) if isinstance(step, (Step, Function)) else getattr(step, "__name__", type(step).__name__)


def _check_columns(steps: Sequence[Any], item: Item, source: Any) -> None:
    for step in steps:
        missing = [c for c in getattr(step, "needs", ()) if c not in item]
        if missing:
            raise OptionError(f"{where(step)} needs a {' and '.join(map(repr, step.needs))} column, but the items of "
                              f"{_name(source)} have {sorted(item)}; drop {where(step)} for this source")


def _check_nyquist(steps: Sequence[Any], item: Item) -> None:
    """Each band-pass against the rate at its place in the list: the item's, or the last Resample's before it."""
    rate, resample = item.get("sample_rate"), None
    for step in steps:
        if isinstance(step, Resample):
            rate, resample = step.rate, step
        elif isinstance(step, Function):
            rate = None  # a function of yours may change the rate: the build checks each item
        elif isinstance(step, BandPass) and rate is not None and step.high >= int(rate) / 2:
            at = (f"half of {where(resample)}" if resample is not None
                  else f"half the sample rate, and the signals are at {int(rate)} Hz")
            raise OptionError(f"{where(step)}: HIGH {step.high:g} Hz must be below {at} (Nyquist {int(rate) / 2:g} Hz)")


def _name(source: Any) -> str:
    root = source.describe().get("root") if hasattr(source, "describe") else None
    return f"{root} ({source.kind})" if root else f"the {getattr(source, 'kind', 'source')} source"
