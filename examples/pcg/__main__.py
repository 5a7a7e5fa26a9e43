"""``python -m examples.pcg --config examples/pcg/configs/default.yaml --data_path prebake`` from the repository
root; from ``prebake-demo/`` (or any folder) the same by path: ``python ../examples/pcg ...``. A first argument
``bench`` runs the benchmark (``python -m examples.pcg.bench``). See README.md."""

from __future__ import annotations

import argparse
import logging
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

import prebake


def main(argv: Sequence[str] | None = None) -> int:
    from .config import ConfigError, load
    from .run import DATA_PATHS, run

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # python -m examples.pcg bench ...: the benchmark, from anywhere
        from .bench import main as bench

        return bench(list(argv[1:]))
    p = argparse.ArgumentParser(prog="python -m examples.pcg", description="Contrastive pretraining on heart "
                                "sounds (the heart-sound workload) fed by the original pipelines or by prebake.")
    p.add_argument("--config", type=Path,
                   help="YAML with the heart-sound workload's sections (default: the built-in defaults)")
    p.add_argument("--data", type=Path, help="recordings in class folders, DIR/<class>/<file>.wav|flac|ogg "
                   "(default: synthetic ones written under --work)")
    p.add_argument("--data_path", choices=DATA_PATHS, default="prebake")
    p.add_argument("--work", type=Path, default=Path("runs/pcg"), help="the cache (and synthetic recordings)")
    p.add_argument("--csv", type=Path, help="per-epoch CSV (default: WORK/<data_path>.csv)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = load(args.config)
        if args.epochs is not None:
            cfg.train.epochs = args.epochs
        run(cfg, args.data_path, args.work, args.data, args.csv or args.work / f"{args.data_path}.csv")
    except (ConfigError, prebake.PrebakeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if not __package__:  # run by path (python ../examples/pcg from prebake-demo/): as the package it is
        sys.path[0] = str(Path(__file__).resolve().parents[2])  # the repository root, not this folder
        runpy.run_module("examples.pcg", run_name="__main__", alter_sys=True)
    else:
        sys.exit(main())
