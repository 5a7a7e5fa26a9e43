"""``python -m examples.talking_head --data_path prebake --steps 300 ...``; see README.md."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import prebake

from .config import parse_args
from .run import run


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = parse_args(argv)
    try:
        run(cfg)
    except (prebake.PrebakeError, ValueError) as e:  # a bad --data, encoder file or cache: one line, the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
