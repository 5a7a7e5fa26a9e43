"""``python -m examples.medical3d --config examples/medical3d/config.json``; see README.md."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import prebake

from .config import ConfigError, load_config
from .run import run


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.medical3d",
                                description="3-D CNN on NIfTI volumes from a CSV, fed by prebake (seed 002's workflow).")
    p.add_argument("--config", type=Path, required=True, help="a JSON or YAML config (see config.json)")
    p.add_argument("--csv", type=Path, help="override csv_path: your CSV of volume paths and labels")
    p.add_argument("--base_path", type=Path, help="override base_path: what the CSV's paths are relative to")
    p.add_argument("--epochs", type=int, help="override epochs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        if args.csv is not None:
            cfg.csv_path, cfg.synthetic_patients = args.csv, 0
        if args.base_path is not None:
            cfg.base_path = args.base_path
        if args.epochs is not None:
            cfg.epochs = args.epochs
        run(cfg)
    except (ConfigError, prebake.PrebakeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
