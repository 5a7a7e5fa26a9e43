"""``python -m examples.federated --alg fedlora --vit tiny --image_size 224 ...`` from the repository root; from
``prebake-demo/`` (or any folder) the same by path: ``python ../examples/federated ...``. A first argument
``bench`` runs the benchmark (``python -m examples.federated.bench``). See README.md."""

from __future__ import annotations

import logging
import runpy
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import prebake


def main(argv: Sequence[str] | None = None) -> int:
    from .config import parse_args
    from .run import run

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # python -m examples.federated bench ...: the benchmark, from anywhere
        from .bench import main as bench

        return bench(list(argv[1:]))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    from tqdm.auto import tqdm

    def progress(rounds: Iterable[int]) -> Iterable[int]:
        return tqdm(rounds, desc=f"{cfg.alg} rounds", unit="round", dynamic_ncols=True)

    try:
        run(cfg, progress)
    except prebake.PrebakeError as e:  # a bad --data or --cache: one line that names the path and the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if not __package__:  # run by path (python ../examples/federated from prebake-demo/): as the package it is
        sys.path[0] = str(Path(__file__).resolve().parents[2])  # the repository root, not this folder
        runpy.run_module("examples.federated", run_name="__main__", alter_sys=True)
    else:
        sys.exit(main())
