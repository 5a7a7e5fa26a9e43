"""``prebake demo`` and ``prebake bench``: the commands that run pipelines (they import torch)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from ._echo import echo


def demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..progress import ProgressBars

    bars = ProgressBars(quiet=args.quiet or args.json)
    try:
        result = run_demo(Path(args.workdir), source=Path(args.source) if args.source else None,
                          workers=args.workers, progress=bars, bench_seconds=args.bench_seconds)
    finally:
        bars.close()
    if args.json:
        echo(json.dumps(result, indent=1, default=str))
    else:
        echo("\n".join(result["lines"]))
    return 0 if result["ok"] else 1


def bench(args: argparse.Namespace) -> int:
    from ..measure.bench import BenchOptions, run_bench
    from ..measure.bench.report import plot, pyplot, table

    if args.plot:
        pyplot()  # fail before the run, not after it
    opts = BenchOptions(batch_size=args.batch_size, image_size=args.image_size, device=args.device,
                        seconds=args.seconds, limit=args.limit, workers=args.workers, only=args.only,
                        peers=not args.no_peers, workdir=Path(args.workdir) if args.workdir else None)
    quiet = args.quiet or args.json
    result = run_bench(args.path, opts, progress=None if quiet else lambda line: echo(line, file=sys.stderr))
    if args.out:
        Path(args.out).write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    if args.plot:
        plot(result, Path(args.plot))
    echo(json.dumps(result.as_dict(), indent=1) if args.json else "\n".join(table(result)))
    return 0
