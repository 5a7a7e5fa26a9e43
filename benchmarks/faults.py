"""Fault injection with long trial counts: what was tried, how many times, how many failures.

    python benchmarks/faults.py            # every row at full count, a few minutes on 2 cores (make faults)
    python benchmarks/faults.py --quick    # every row with a handful of trials

The trials are the ones ``tests/faults/`` runs with small counts (``benchmarks/trials/``):
real files, real processes, real signals, a real full disk. A failure is any time prebake
returned wrong data silently, hung, died without a message, or raised an exception that
is not a ``prebake.PrebakeError``. Prints a Markdown table and writes JSON to
benchmarks/results/faults-cpu-2core.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.trials: the trials tests/faults runs with small counts

import numpy as np  # noqa: E402
import torch  # noqa: E402

import prebake  # noqa: E402
from benchmarks.trials import Row  # noqa: E402
from benchmarks.trials.concurrency import concurrent_builders, reader_during_swap  # noqa: E402
from benchmarks.trials.corruption import data_flips, manifest_flips, truncations  # noqa: E402
from benchmarks.trials.crops import crops  # noqa: E402
from benchmarks.trials.crops_attacks import crops_attacks  # noqa: E402
from benchmarks.trials.ddp import ddp_subsets  # noqa: E402
from benchmarks.trials.decode_copies import trial_decode_copies  # noqa: E402
from benchmarks.trials.direct_io import trial_direct_io  # noqa: E402
from benchmarks.trials.diskfull import disk_full  # noqa: E402
from benchmarks.trials.docs import docs  # noqa: E402
from benchmarks.trials.formats import formats  # noqa: E402
from benchmarks.trials.fuzz import fuzzed_manifests  # noqa: E402
from benchmarks.trials.geometry import geometry  # noqa: E402
from benchmarks.trials.hangs import VARIANTS, parent_threads  # noqa: E402
from benchmarks.trials.hdf5_exchange import hdf5_exchange  # noqa: E402
from benchmarks.trials.inputs import bad_inputs  # noqa: E402
from benchmarks.trials.integrations import integrations  # noqa: E402
from benchmarks.trials.kills import kill_builder, kill_worker  # noqa: E402
from benchmarks.trials.loading import loading  # noqa: E402
from benchmarks.trials.messages import messages  # noqa: E402
from benchmarks.trials.mixed_faults import trial_mixed_faults  # noqa: E402
from benchmarks.trials.mixed_writes import mixed_writes  # noqa: E402
from benchmarks.trials.monai import monai  # noqa: E402
from benchmarks.trials.native import native_loops  # noqa: E402
from benchmarks.trials.options_resources import options_resources  # noqa: E402
from benchmarks.trials.output_safety import output_safety  # noqa: E402
from benchmarks.trials.patches import patches  # noqa: E402
from benchmarks.trials.patches_attacks import patches_attacks  # noqa: E402
from benchmarks.trials.placed import trial_placed  # noqa: E402
from benchmarks.trials.reads import reads  # noqa: E402
from benchmarks.trials.release import release  # noqa: E402
from benchmarks.trials.resample import resample  # noqa: E402
from benchmarks.trials.schema import schema  # noqa: E402
from benchmarks.trials.spelling import spelling  # noqa: E402
from benchmarks.trials.staleness import staleness  # noqa: E402
from benchmarks.trials.steps import steps  # noqa: E402
from benchmarks.trials.stream_ahead import stream_ahead  # noqa: E402
from benchmarks.trials.weights import weights  # noqa: E402

ALL_MASKS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)
QUICK_HANGS = ("torch-outer", "stage")  # --quick: the reported transform and a Stage; MONAI costs ~7 s to import


def plan(quick: bool) -> list[tuple[str, Callable[[Path], Row]]]:
    """(name, trial) in the order of the table; counts are full or --quick."""
    def n(full: int, small: int) -> int:
        return small if quick else full

    return [
        ("kill-builder", lambda d: kill_builder(d, n(200, 4), seed=1)),
        ("kill-worker", lambda d: kill_worker(d, n(60, 2), seed=2)),
        ("manifest-flips", lambda d: manifest_flips(d, stride=n(1, 25), masks=ALL_MASKS if not quick else (1,))),
        ("data-flips", lambda d: data_flips(d, n(5000, 50), seed=3)),
        ("truncations", lambda d: truncations(d, n(2000, 20), seed=4)),
        ("fuzzed-manifests", lambda d: fuzzed_manifests(d, n(2000, 30), seed_=5)),
        ("bad-inputs", lambda d: bad_inputs(d)),
        ("concurrent-builders", lambda d: concurrent_builders(d, n(20, 1), builders=3)),
        ("reader-during-swap", lambda d: reader_during_swap(d, n(300, 10))),
        ("disk-full", lambda d: disk_full(d, n(20, 4))),
        ("staleness", lambda d: staleness(d, repeats=n(3, 1))),
        ("ddp-subsets", lambda d: ddp_subsets(d, n(1000, 30), seed=6)),
        ("output-safety", lambda d: output_safety(d, n(840, 14), seed=7)),
        ("hdf5-exchange", lambda d: hdf5_exchange(d, n(500, 10), seed=8)),
        ("loading", lambda d: loading(d, n(1500, 30), seed=9)),
        ("options-resources", lambda d: options_resources(d, n(600, 20), seed=10)),
        ("reads", lambda d: reads(d, n(64, 8), seed=11)),
        ("hangs", lambda d: parent_threads(d, n(3, 1), variants=tuple(VARIANTS) if not quick else QUICK_HANGS)),
        ("weights", lambda d: weights(d, n(300, 20), seed=12)),
        ("steps", lambda d: steps(d, n(200, 8), seed=13)),
        ("loading-release", lambda d: release(d, n(200, 10), seed=14)),
        ("integrations", lambda d: integrations(d, n(90, 6), seed=15)),
        ("monai", lambda d: monai(d, n(60, 3), seed=16)),
        ("docs", lambda d: docs(d, n(300, 20), seed=17)),
        ("formats", lambda d: formats(d, n(688, 24), seed=18)),
        ("geometry", lambda d: geometry(d, n(300, 18), seed=19)),
        ("schema", lambda d: schema(d, n(200, 8), seed=20)),
        ("patches", lambda d: patches(d, n(200, 4), seed=21)),
        ("crops", lambda d: crops(d, n(240, 6), seed=22)),
        ("messages", lambda d: messages(d, n(200, 6), seed=23)),
        ("mixed-writes", lambda d: mixed_writes(d, n(100, 4), seed=24)),
        ("spelling", lambda d: spelling(d, n(1500, 50), seed=25)),
        ("patches-attacks", lambda d: patches_attacks(d, n(200, 4), seed=26)),
        ("crops-attacks", lambda d: crops_attacks(d, n(300, 6), seed=27)),
        ("decode-copies", lambda d: trial_decode_copies(d, n(400, 10), seed=28)),
        ("direct-io", lambda d: trial_direct_io(d, n(200, 4), seed=29)),
        ("stream-ahead", lambda d: stream_ahead(d, n(60, 3), seed=30)),
        ("resample", lambda d: resample(d, n(200, 10), seed=31)),
        ("mixed-faults", lambda d: trial_mixed_faults(d, n(200, 4), seed=32)),
        ("mixed-faults-1", lambda d: trial_mixed_faults(d, n(100, 4), seed=35, workers=0)),
        ("placed", lambda d: trial_placed(d, n(150, 3), seed=33)),
        ("native", lambda d: native_loops(d, n(20000, 30), seed=36)),
    ]


def table(rows: list[dict]) -> list[str]:
    out = ["| what was tried | trials | failures |", "|---|---:|---:|"]
    for r in rows:
        notes = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in r["notes"].items())
        out.append(f"| {r['what']}{f' ({notes})' if notes else ''} | {r['trials']:,} | {r['failures']} |")
    return out


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "prebake": prebake.__version__, "numpy": np.__version__, "torch": torch.__version__}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a handful of trials per row")
    p.add_argument("--only", action="append", metavar="ROW", help="run only these rows (repeatable)")
    p.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/faults-cpu-2core.json; "
                   "--quick writes nothing unless given)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the trials provoke warnings on purpose
    work = Path(tempfile.mkdtemp(prefix="prebake-faults-"))
    rows = []
    try:
        for name, trial in plan(args.quick):
            if args.only and name not in args.only:
                continue
            (work / name).mkdir()
            t0 = time.perf_counter()
            row = trial(work / name)
            rows.append({"row": name, **row.to_json(), "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{name}: {row.trials:,} trials, {row.failures} failures ({rows[-1]['seconds']} s)",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(table(rows)))
    out = args.out or (None if args.quick else ROOT / "benchmarks" / "results" / "faults-cpu-2core.json")
    if out is not None:
        out.write_text(json.dumps({"machine": machine(), "quick": args.quick, "rows": rows}, indent=1) + "\n")
    return 0 if all(r["failures"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
