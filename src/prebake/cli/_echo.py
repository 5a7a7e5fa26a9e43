"""The one way the CLI writes to the terminal (the library itself only logs)."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from .spelling import render, render_json


def echo(*parts: Any, file: IO[str] | None = None) -> None:
    """Write ``parts`` as one line to stdout (or ``file``, such as ``sys.stderr``), like ``print``, with every
    option the library named the Python way spelled as its flag."""
    stream = sys.stdout if file is None else file
    stream.write(render(" ".join(str(p) for p in parts)) + "\n")


def echo_json(value: Any, **kwargs: Any) -> None:
    """Write ``value`` as JSON to stdout, each string in it rendered as :func:`echo` renders a line."""
    sys.stdout.write(json.dumps(render_json(value), **kwargs) + "\n")
