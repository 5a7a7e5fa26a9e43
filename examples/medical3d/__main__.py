"""``python -m examples.medical3d --config examples/medical3d/config.json`` from the repository root; from
``prebake-demo/`` (or any folder) the same by path: ``python ../examples/medical3d ...``. A first argument
``bench`` runs the benchmark (``python -m examples.medical3d.bench``). See README.md."""

from __future__ import annotations

import argparse
import logging
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

import prebake


def main(argv: Sequence[str] | None = None) -> int:
    from .config import ConfigError, load_config
    from .run import run

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # python -m examples.medical3d bench ...: the benchmark, from anywhere
        from .bench import main as bench

        return bench(list(argv[1:]))
    p = argparse.ArgumentParser(prog="python -m examples.medical3d",
                                description="3-D CNN on NIfTI volumes from a CSV, fed by prebake "
                                            "(the cardiac-imaging workload).")
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
    if not __package__:  # run by path (python ../examples/medical3d from prebake-demo/): as the package it is
        sys.path[0] = str(Path(__file__).resolve().parents[2])  # the repository root, not this folder
        runpy.run_module("examples.medical3d", run_name="__main__", alter_sys=True)
    else:
        sys.exit(main())
