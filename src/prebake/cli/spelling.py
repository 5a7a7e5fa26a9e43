"""Messages as the CLI prints them: every option the library marks in backticks, spelled as its flag.

The library names options the Python way, marked (``prebake.errors.opt``): `` `image_size=224` ``,
`` `force=True` ``, `` `dtypes={'v': 'int64'}` ``, and steps as `` `Resize(size=224)` ``,
`` `prebake.steps.Resize` `` or `` `SegmentCycles.length` ``. The CLI renders them here, at the one place it
prints (``echo``, its log handler), from one table made from its own parser, so a message made in a worker
process, or stored in a manifest, prints the same as one raised in this process.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from ..errors import SWITCHES

#: Python names whose flag takes one value at a time: a list is the flag repeated, a dict ``--flag KEY=VALUE``.
REPEATED = {"label_columns": "--label-column", "stages": "--stage", "keep_columns": "--keep-column",
            "dtypes": "--dtype"}
#: Fields of a step that a flag of their own sets.
STEP_FIELDS = {"SegmentCycles.length": "cycle_length", "SegmentCycles.heart_rate": "heart_rate",
               "SegmentCycles.fallback": "cycle_fallback"}
_MARKED = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")  # a Markdown code span on one line: `x`, ``a`b``
_OPTION = re.compile(r"([a-z][a-z0-9_]*)(?:=(.*))?", re.S)
_STEP = re.compile(r"(?:prebake\.steps\.)?([A-Z]\w*)(?:\(.*\)|\.(\w+))?", re.S)


def flag_table(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's flag: an action's ``dest`` -> its first long option string, then the repeatable flags."""
    table: dict[str, str] = {}
    for action in _actions(parser):
        long = [o for o in action.option_strings if o.startswith("--")]
        if long:
            table.setdefault(action.dest, long[0])
    return {**table, **REPEATED}


def _actions(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every action of ``p`` and of its subcommands' parsers."""
    found = list(p._actions)
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                found += _actions(sub)
    return found


@functools.lru_cache(maxsize=1)
def _table() -> Mapping[str, str]:
    from . import parser

    return flag_table(parser())


def render(text: str, flags: Mapping[str, str] | None = None) -> str:
    """``text`` with each marked option or step spelled as its flag; anything else marked is left as it is.

    Each backtick is tried as the start of a span, so a stray one in the user's text (a file named ``a`b``)
    cannot pair with an option's and hide it."""
    table = _table() if flags is None else flags
    out, done = [], 0
    while (start := text.find("`", done)) != -1:
        span = _MARKED.match(text, start)
        spelled = _spell(span.group(2), table) if span else None
        if span is None or spelled is None:
            out.append(text[done:start + 1])
            done = start + 1
        else:
            out.append(text[done:start] + spelled)
            done = span.end()
    return "".join(out) + text[done:]


def render_json(value: Any) -> Any:
    """``value`` (JSON-like) with every string in it rendered, so ``--json`` output names flags too."""
    if isinstance(value, str):
        return render(value)
    if isinstance(value, dict):
        return {k: render_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_json(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``value`` rendered."""
    return json.dumps(render_json(value), **kwargs)


class Formatter(logging.Formatter):
    """The CLI's log lines: the message rendered."""

    def format(self, record: logging.LogRecord) -> str:
        return render(super().format(record))


def _spell(token: str, table: Mapping[str, str]) -> str | None:
    """The flag for a marked token, or None for a token that names no option of the table (a path's text)."""
    option = _OPTION.fullmatch(token)
    if option:
        return _option(option.group(1), option.group(2), table) if option.group(1) in table else None
    step = _STEP.fullmatch(token)
    return _step(step.group(1), step.group(2), table) if step else None


def _option(name: str, value: str | None, table: Mapping[str, str]) -> str | None:
    flag = table[name]
    if value is None or (name in SWITCHES and value == "True"):
        return flag
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        # not a literal (nan, an object's repr): shown as Python wrote it, unless it reaches past the span
        return None if "`" in value else f"{flag} {value}"
    if name in REPEATED and isinstance(parsed, dict):
        return " ".join(f"{flag} {k}={v}" for k, v in parsed.items())
    if name in REPEATED and isinstance(parsed, (list, tuple)):
        return " ".join(f"{flag} {v}" for v in parsed)
    return f"{flag} {parsed}"


def _step(cls: str, field: str | None, table: Mapping[str, str]) -> str | None:
    if field is not None:
        return table.get(STEP_FIELDS.get(f"{cls}.{field}", ""))
    import prebake.steps

    return table.get(getattr(getattr(prebake.steps, cls, None), "option", None) or "")
