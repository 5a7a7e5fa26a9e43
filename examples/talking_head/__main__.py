"""``python -m examples.talking_head --data_path prebake --steps 300 ...`` from the repository root; from
``prebake-demo/`` (or any folder) the same by path: ``python ../examples/talking_head ...``. A first argument
``bench`` runs the benchmark (``python -m examples.talking_head.bench``). See README.md."""

from __future__ import annotations

import logging
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

import prebake


def main(argv: Sequence[str] | None = None) -> int:
    from .config import parse_args
    from .run import run

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # python -m examples.talking_head bench ...: the benchmark, from anywhere
        from .bench import main as bench

        return bench(list(argv[1:]))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = parse_args(argv)
    try:
        run(cfg)
    except (prebake.PrebakeError, ValueError) as e:  # a bad --data, encoder file or cache: one line, the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if not __package__:  # run by path (python ../examples/talking_head from prebake-demo/): as the package it is
        sys.path[0] = str(Path(__file__).resolve().parents[2])  # the repository root, not this folder
        runpy.run_module("examples.talking_head", run_name="__main__", alter_sys=True)
    else:
        sys.exit(main())
