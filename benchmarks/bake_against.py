"""The bake benchmark against an older commit: the same builds from both trees, in one run.

    python benchmarks/bake.py --against 720a4b1              # table; JSON to runs/bake/bake-vs-main-cpu-2core.json
    python benchmarks/bake.py --against 720a4b1 --save       # also benchmarks/results/bake-vs-main-cpu-2core.json

``git archive`` writes that commit's ``src/`` and HEAD's into the run directory (so uncommitted work in
the checkout is not what is measured). Each build is a fresh process
(``PYTHONPATH`` picks the tree) over the same source data, calling that tree's own API for the same
work (before the split ``prebake.build`` took ``image_size=``; now ``steps=[Resize(...)]``). Rounds are
interleaved, the order of the two trees alternating; both trees' caches are checked to hold
byte-identical ``.npy`` columns first. Reported per row: median build seconds and CPU seconds (the
process and the workers it reaped) of each tree, and current/previous as a throughput ratio (items/s of
the current tree over the previous one's: >= 1 is no slowdown), with the range of the per-round ratios, and
the same ratio of CPU seconds (steadier than wall time when other work shares the cores).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from prebake.synthetic import cifar10_once, write_image_folder

ROOT = Path(__file__).resolve().parents[1]
#: The last commit before the bake/ split (f1347e3, its first commit, moved bake/'s modules into packages).
PREVIOUS_MAIN = "720a4b1"

# Runs in a fresh interpreter from one tree: the build through that tree's API, timed around the call.
_CHILD = r"""
import inspect, json, resource, sys, time
import numpy, PIL.Image, torch  # both trees use them: their import is not the build's time
import prebake

kind, source, out, size, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if "steps" in inspect.signature(prebake.build).parameters:
    from prebake.steps import Resize
    work = {"steps": [Resize(size)] if size else []}
else:
    work = {"image_size": size} if size else {}


def cpu():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


c0, t0 = cpu(), time.perf_counter()
prebake.build(source, out, kind=kind, workers=workers, progress=False, **work)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "cpu_s": cpu() - c0, "module": prebake.__file__}))
"""


def archive(commit: str, into: Path) -> tuple[str, Path]:
    """``git archive`` of ``commit``'s ``src/`` under ``into``; returns the full hash and the tree's ``src``."""
    full = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, capture_output=True, text=True, check=True)
    sha = full.stdout.strip()
    tar = subprocess.run(["git", "archive", sha, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    return sha, into / "src"


def configs(workdir: Path, train: int, test: int, photos: int) -> list[dict[str, Any]]:
    """The builds both trees support: CIFAR python batches as stored, and PNGs decoded and resized (down, and up
    to 224 px, where the resize and the bytes written are the work)."""
    cifar = cifar10_once(workdir / f"cifar10-synthetic-{train}-{test}", train, test)
    folder = workdir / f"photos-{photos}"
    if not folder.exists():
        write_image_folder(folder, classes=("cat", "dog"), per_class=photos // 2, size=(48, 40))
    return [
        {"row": f"CIFAR-10 python batches, {train + test:,} images at 32 px, 2 workers", "kind": "cifar",
         "source": cifar, "size": 0, "workers": 2, "items": train + test},
        {"row": f"CIFAR-10 python batches, {train + test:,} images at 32 px, 1 worker", "kind": "cifar",
         "source": cifar, "size": 0, "workers": 1, "items": train + test},
        *({"row": f"image folder, {photos:,} PNGs 48x40 resized to {size} px, 2 workers", "kind": "imagefolder",
           "source": folder, "size": size, "workers": 2, "items": photos // 2 * 2} for size in (32, 224)),
    ]


def one_build(tree: Path, config: dict[str, Any], out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [config["kind"], str(config["source"]), str(out), str(config["size"]), str(config["workers"])]
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env,
                          cwd=out.parent)
    if proc.returncode != 0:
        raise SystemExit(f"{config['row']} from {tree} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not Path(result["module"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the build meant for {tree} imported prebake from {result['module']}")
    return result


def columns(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.npy"))}


def same_columns(a: Path, b: Path) -> None:
    """Both caches hold the same .npy files, byte for byte (the manifests differ: fingerprints name the steps)."""
    ca, cb = columns(a), columns(b)
    if not ca or ca.keys() != cb.keys() or any(ca[k] != cb[k] for k in ca):
        diff = sorted(k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k))
        raise SystemExit(f"{a} and {b} differ in {diff}: the two trees did not do the same work")


def run(against: str, rounds: int, workdir: Path, run_dir: Path, train: int, test: int,
        photos: int) -> dict[str, Any]:
    head, current = archive("HEAD", run_dir / "current")
    sha, previous = archive(against, run_dir / "previous")
    trees = {"current": current, "previous": previous}
    cases = configs(workdir, train, test, photos)
    outs = run_dir / "out"
    outs.mkdir(parents=True, exist_ok=True)
    for k, case in enumerate(cases):  # same work first: byte-identical columns from both trees
        for name, tree in trees.items():
            one_build(tree, case, outs / f"{k}-{name}")
        same_columns(outs / f"{k}-current", outs / f"{k}-previous")
        print(f"same columns from both trees: {case['row']}")
    timings: dict[tuple[int, str], list[dict[str, Any]]] = {(k, n): [] for k in range(len(cases)) for n in trees}
    loads = []
    for r in range(rounds):
        for k, case in enumerate(cases):
            for name in (("current", "previous") if r % 2 == 0 else ("previous", "current")):
                timings[(k, name)].append(one_build(trees[name], case, outs / f"{k}-{name}"))
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{rounds} done, load {loads[-1]:.2f}")
    shutil.rmtree(outs)
    why = "the last commit before the bake/ split (f1347e3 started it)" if sha.startswith(PREVIOUS_MAIN) else \
        "given with --against"
    return {"current": {"commit": head}, "against": {"commit": sha, "why": why},
            "rounds": rounds, "load_1min_after_each_round": loads,
            "rows": [_row(case, timings[(k, "current")], timings[(k, "previous")]) for k, case in enumerate(cases)]}


def _row(case: dict[str, Any], cur: list[dict[str, Any]], prev: list[dict[str, Any]]) -> dict[str, Any]:
    med = {name: {key: statistics.median(t[key] for t in runs) for key in ("seconds", "cpu_s")}
           for name, runs in (("current", cur), ("previous", prev))}
    paired = [p["seconds"] / c["seconds"] for c, p in zip(cur, prev)]
    return {"row": case["row"], "kind": case["kind"], "items": case["items"], "workers": case["workers"],
            "current_s": med["current"]["seconds"], "previous_s": med["previous"]["seconds"],
            "current_cpu_s": med["current"]["cpu_s"], "previous_cpu_s": med["previous"]["cpu_s"],
            "ratio": med["previous"]["seconds"] / med["current"]["seconds"],
            "cpu_ratio": med["previous"]["cpu_s"] / med["current"]["cpu_s"],
            "ratio_per_round": paired, "current_runs_s": [c["seconds"] for c in cur],
            "previous_runs_s": [p["seconds"] for p in prev]}


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['current']['commit'][:10]} (HEAD) vs {result['against']['commit'][:10]} "
          f"({result['rounds']} interleaved rounds, medians; "
          f"load {min(result['load_1min_after_each_round']):.2f}-{max(result['load_1min_after_each_round']):.2f})")
    print(f"{'build':<62} {'current s':>9} {'cpu s':>6} {'previous s':>10} {'cpu s':>6} {'ratio':>6}  per round"
          "    cpu ratio")
    for r in result["rows"]:
        spread = f"{min(r['ratio_per_round']):.2f}-{max(r['ratio_per_round']):.2f}"
        print(f"{r['row']:<62} {r['current_s']:>9.3f} {r['current_cpu_s']:>6.2f} {r['previous_s']:>10.3f} "
              f"{r['previous_cpu_s']:>6.2f} {r['ratio']:>5.2f}x  {spread:<11} {r['cpu_ratio']:.2f}x")
    print("ratio: items/s of the current tree / the previous tree's (>= 0.95: no slowdown); cpu ratio: CPU seconds "
          "of the previous tree / the current one's")


def main(against: str, rounds: int, workdir: Path, save: bool, machine: dict[str, Any], train: int, test: int,
         photos: int) -> int:
    from prebake.measure.bench import write_results

    run_dir = ROOT / "runs" / "bake-vs-main"
    result = {"benchmark": "bake against a previous commit", "machine": machine, "device": "cpu",
              **run(against, rounds, workdir, run_dir, train, test, photos),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print_table(result)
    name = "bake-vs-main-cpu-2core.json"
    for path in write_results(result, run_dir / name, ROOT / "benchmarks" / "results" / name if save else None,
                              root=ROOT):
        print(f"wrote {path}")
    return 0
