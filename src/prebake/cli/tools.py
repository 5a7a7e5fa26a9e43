"""``prebake demo`` and ``prebake bench``: the commands that run pipelines (they import torch)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._echo import echo, echo_json


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
        echo_json(result, indent=1, default=str)
    else:
        echo("\n".join(result["lines"]))
    return 0 if result["ok"] else 1


def bench(args: argparse.Namespace) -> int:
    from ..cache.reader import open_cache
    from ..measure.bench import BenchOptions, image_size, run_any, run_bench
    from ..measure.bench.report import plot, pyplot, table, table_any

    if args.plot:
        pyplot()  # fail before the run, not after it
    view, column, length = (("windows", args.windows[0], _length(args.windows[1])) if args.windows else
                            ("elements", args.elements, 16) if args.elements else (None, None, 16))
    opts = BenchOptions(batch_size=args.batch_size, image_size=args.image_size, device=args.device,
                        seconds=args.seconds, rounds=args.rounds, limit=args.limit, workers=args.workers,
                        only=args.only, peers=not args.no_peers, workdir=Path(args.workdir) if args.workdir else None,
                        view=view, column=column, length=length, context=args.context, columns=args.columns)
    quiet = args.quiet or args.json
    progress = None if quiet else lambda line: echo(line, file=sys.stderr)
    images = view is None and args.columns is None and image_size(open_cache(args.path)) is not None
    result = run_bench(args.path, opts, progress) if images else run_any(args.path, opts, progress)
    if args.out:
        Path(args.out).write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    if args.plot:
        plot(result, Path(args.plot))
    lines = table(result) if images else table_any(result)  # type: ignore[arg-type]
    if args.json:
        echo_json(result.as_dict(), indent=1)
    else:
        echo("\n".join(lines))
    return 0


def _length(text: str) -> int:
    from ..errors import OptionError

    if not text.isdigit() or int(text) < 1:
        raise OptionError(f"--windows COLUMN LENGTH: LENGTH={text!r} is not a whole number >= 1 of rows per "
                          "window; pass e.g. --windows frames 16")
    return int(text)
