"""The cost of recording the files that transforms read while baking (identity/reads.py).

    python benchmarks/reads.py                 # 2,000 tiny items, 11 rounds
    python benchmarks/reads.py --items 500 --rounds 3

Each round builds the same source from scratch in two fresh processes (the fastest of
five builds in each): one as prebake does (the audit hook installed, recording around every transform), once with the
hook never installed. Two transforms: one that opens no file, and one that reads a small
JSON table on every call (the worst case: one recorded open per item). workers=0 bakes in
the building process, so the per-item cost is not hidden behind parallel workers.
Prints a table of medians and their ratio (and the fastest of all rounds), and writes JSON to
benchmarks/results/reads-cpu-2core.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import json, sys, time
from pathlib import Path
import numpy as np
import prebake.identity.reads as R
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.steps import compile_steps

src, out, lut, hook, reads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5] == "1"
if not hook:
    R._hooked = False  # as if the hook were never installed: recording stays off


def transform(item):
    if reads:
        with open(lut) as f:
            item["value"] = np.float32(json.load(f)["scale"])
    else:
        item["value"] = np.float32(item["label"])
    return item


best = float("inf")
for k in range(5):  # the fastest of five builds: the machine's other load only ever adds time
    t0 = time.perf_counter()
    build_all(resolve_sources(src), f"{out}-{k}", BuildOptions(compile_steps([transform]), workers=0))
    best = min(best, time.perf_counter() - t0)
print(best)
'''


def one(d: Path, src: Path, lut: Path, hook: bool, reads: bool) -> float:
    out = d / f"cache-{int(hook)}{int(reads)}"
    cmd = [sys.executable, "-c", CHILD, str(src), str(out), str(lut), str(int(hook)), str(int(reads))]
    seconds = float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    for k in range(5):
        subprocess.run(["rm", "-rf", f"{out}-{k}"], check=True)
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "runs" / "reads" / "reads-cpu-2core.json",
                    help="JSON path (default: runs/reads/reads-cpu-2core.json)")
    ap.add_argument("--save", action="store_true", help="also update benchmarks/results/reads-cpu-2core.json")
    args = ap.parse_args()
    from prebake.measure.bench import write_results
    from prebake.synthetic import write_npz

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = write_npz(d / "src", n=args.items, size=(8, 8))
        lut = d / "lut.json"
        lut.write_text(json.dumps({"scale": 3}))
        for reads in (False, True):
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.rounds):
                for hook in (False, True):  # alternate, so drift hits both alike
                    times[hook].append(one(d, src, lut, hook, reads))
            off, on = statistics.median(times[False]), statistics.median(times[True])
            rows.append({"transform": "reads a JSON per item" if reads else "opens no file", "items": args.items,
                         "without_hook_s": off, "with_hook_s": on, "ratio": on / off,
                         "fastest_ratio": min(times[True]) / min(times[False]),
                         "all_without": times[False], "all_with": times[True]})
    print("| transform | items | without hook (s) | with hook (s) | ratio | ratio of the fastest |\n"
          "|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['transform']} | {r['items']:,} | {r['without_hook_s']:.4f} | {r['with_hook_s']:.4f} | "
              f"{r['ratio']:.3f} | {r['fastest_ratio']:.3f} |")
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
              "rounds": args.rounds, "rows": rows}
    for path in write_results(result, args.out, Path(__file__).parent / "results" / "reads-cpu-2core.json"
                              if args.save else None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
