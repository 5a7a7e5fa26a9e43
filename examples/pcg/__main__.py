"""``python -m examples.pcg --config examples/pcg/configs/default.yaml --data_path prebake``; see README.md."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import prebake

from .config import ConfigError, load
from .run import DATA_PATHS, run


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.pcg", description="Contrastive pretraining on heart "
                                "sounds (seed 004) fed by the seed's pipelines or by prebake.")
    p.add_argument("--config", type=Path, help="YAML with seed 004's sections (default: the built-in defaults)")
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
    sys.exit(main())
