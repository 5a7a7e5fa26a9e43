"""Options named in messages, over random options, values and the user's text around them.

A trial draws an option of the CLI's table (a switch, a repeatable flag, one that takes a value) and a
value (whole numbers, floats with nan and inf, text with spaces, quotes, backslashes and backticks, paths,
numpy scalars, lists, tuples, a dict), and puts ``opt(name, value)`` in a message between text the user
wrote (file and column names, some with backticks of their own, paired or not). It checks that

- Python reads Python: the marked text is ``name=<repr of the value>`` (``name=True`` for a switch);
- the CLI prints the flag with the value as typed (``--flag VALUE``; a switch alone; a repeatable flag once
  per item, ``--dtype COL=DTYPE`` for a dict), and the user's text around it unchanged;
- the message made in a forked process (a build worker's skip reason) prints the same.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from prebake.cli import parser
from prebake.cli.spelling import REPEATED, flag_table, render
from prebake.errors import SWITCHES, opt

from . import Row

_WORDS = ["scan 3.nii", "a`b.png", "`odd", "col`", "`x`", "`a=b", "data/`raw`/c.csv", "label", "it's", "C:\\x",
          "``", "(1, 2)", "héllo", "= `", ""]


def _value(rng: np.random.Generator, name: str) -> Any:
    if name == "dtypes":
        return {str(rng.choice(["v", "a b", "x`y"])): str(rng.choice(["int64", "float32"]))}
    pick = int(rng.integers(0, 10))
    text = "".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 3))))
    return [int(rng.integers(-5, 10**6)), float(rng.normal() * 10**int(rng.integers(-3, 6))),
            float(rng.choice([math.nan, math.inf, -math.inf, 0.5])), text, PurePosixPath("/d") / text,
            np.int64(rng.integers(0, 99)), np.float32(rng.random()), [text, str(rng.choice(_WORDS))],
            (int(rng.integers(1, 9)), float(rng.random())), None][pick]


def _plain(v: Any) -> Any:
    if isinstance(v, PurePosixPath):
        return str(v)
    return v.item() if isinstance(v, np.generic) else v


def _expected(flag: str, name: str, value: Any) -> str:
    v = _plain(value)
    if value is None or name in SWITCHES:
        return flag
    if name in REPEATED and isinstance(v, dict):
        return " ".join(f"{flag} {k}={x}" for k, x in v.items())
    if name in REPEATED and isinstance(v, (list, tuple)):
        return " ".join(f"{flag} {x}" for x in v)
    return f"{flag} {v}"


def _python_ok(marked: str, name: str, value: Any) -> bool:
    body = marked.strip("`")
    fence = marked[: len(marked) - len(marked.lstrip("`"))]
    want = name if value is None and name not in SWITCHES else \
        f"{name}=True" if name in SWITCHES else f"{name}={_plain(value)!r}"
    return body == want and marked.endswith(fence) and fence not in body


def _made(name_value: tuple[str, Any]) -> str:
    return opt(*name_value)


def spelling(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    """``trials`` random options in random messages, each spelled for Python and rendered for the CLI."""
    row = Row("spelling: options in messages read as Python, print as flags on the CLI, from workers too")
    rng = np.random.default_rng(seed)
    table = flag_table(parser())
    names = sorted(table)
    drawn = []
    for _ in range(trials):
        name = str(rng.choice(names))
        value = None if name in SWITCHES and rng.random() < 0.5 else _value(rng, name)
        before, after = (" ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(0, 4)))) for _ in "ab")
        drawn.append((name, value, f"{before} ", f" {after}"))
    with mp.get_context("fork").Pool(1) as pool:
        forked = pool.map(_made, [(n, v) for n, v, _, _ in drawn])
    for (name, value, before, after), theirs in zip(drawn, forked):
        marked = opt(name, value)
        shown = render(before + marked + after, table)
        want = before + _expected(table[name], name, value) + after
        row.check(_python_ok(marked, name, value), f"Python spelling of {name}={value!r}: {marked}")
        row.check(shown == want, f"CLI: {shown!r}, expected {want!r}")
        row.check(theirs == marked, f"forked: {theirs!r} != {marked!r}")
    return row
