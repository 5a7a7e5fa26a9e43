"""The one way the CLI writes to the terminal (the library itself only logs)."""

from __future__ import annotations

import sys
from typing import IO, Any


def echo(*parts: Any, file: IO[str] | None = None) -> None:
    """Write ``parts`` as one line to stdout (or ``file``, such as ``sys.stderr``), like ``print``."""
    stream = sys.stdout if file is None else file
    stream.write(" ".join(str(p) for p in parts) + "\n")
