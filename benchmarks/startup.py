"""How fast the light ``prebake`` commands start: wall time of whole processes, in one run.

Each command runs ``--repeat`` times as a fresh process on a small cache; the table gives
the median (and min-max). Beside it, in the same run, ``python -c "import torch"`` and
``python -c "import prebake.augment"`` (which imports torch): what each command paid when
``import prebake`` imported torch. Target: under 0.3 s for ``--version``, ``--help``,
``ls``, ``info``, ``verify`` and ``clear`` on a 2-core machine.

Bake start-up: a fresh process builds a tiny source (an image folder, an audio folder with
``--sample-rate``, a CSV of NIfTI volumes) with 1 and 2 workers, two items a chunk; the row
gives the seconds from the build's call to its first finished chunk (workers ready, first
items baked; the imports the source and steps pull in included) and to the commit. Target:
first chunk <= 0.5 s. The last column counts from the child's first line instead, so it also holds the import of
``prebake.bake.build`` itself (about 0.15-0.2 s here). ``--pythonpath DIR`` runs the builds against another tree (a
``git archive`` of an older commit), for a before/after in one run.

    python benchmarks/startup.py            # prints the tables, writes runs/startup/startup-<machine>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from prebake.measure.bench import device_tag, machine, write_results

TARGET_S = 0.3
BAKE_TARGET_S = 0.5

#: One build in a fresh process: seconds from build_all's call to the first chunk's progress, and to its end.
_BAKE_CHILD = """
import time
T_START = time.perf_counter()  # before prebake's own imports: the child's first line
import json, sys
from pathlib import Path
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.steps import Resample, compile_steps
source, out, workers, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
first = []
t0 = time.perf_counter()
sources = resolve_sources(source)
steps = compile_steps([Resample(rate)] if rate else [])
build_all(sources, out, BuildOptions(steps, workers=workers, chunk_rows=2),
          progress=lambda split, done, total: first.append(time.perf_counter()) if done and not first else None)
print(json.dumps({"first_s": first[0] - t0, "total_s": time.perf_counter() - t0, "from_start_s": first[0] - T_START,
                  "scipy_signal": "scipy.signal" in sys.modules}))
"""


def timed(cmd: list[str], repeat: int, setup: Callable[[], object] = lambda: None) -> list[float]:
    out = []
    for _ in range(repeat):
        setup()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
    return out


def bake_sources(root: Path) -> dict[str, tuple[Path, int]]:
    """Tiny sources of three kinds, and the sample rate each build resamples to (0: none)."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(16):
        folder = root / "images" / f"c{k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"{k}.png")
        folder = root / "audio" / f"c{k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{k}.wav", rng.uniform(-0.5, 0.5, 8000).astype(np.float32), 8000, subtype="PCM_16")
    sources = {"image folder": (root / "images", 0),
               "audio folder + sample_rate": (root / "audio", 4000)}
    try:
        import nibabel as nib
    except ImportError:
        return sources
    (root / "volumes").mkdir()
    rows = ["path,label"]
    for k in range(16):
        nib.save(nib.Nifti1Image(rng.integers(-100, 100, (16, 16, 8), dtype=np.int16), np.eye(4)),
                 root / "volumes" / f"{k}.nii.gz")
        rows.append(f"{k}.nii.gz,{k % 2}")
    (root / "volumes" / "table.csv").write_text("\n".join(rows) + "\n")
    sources["CSV of NIfTI volumes"] = (root / "volumes" / "table.csv", 0)
    return sources


def bake_startup(repeat: int, pythonpath: str | None) -> list[dict[str, object]]:
    """Seconds to the first baked chunk and to the commit, per source and worker count (medians of ``repeat``)."""
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, (source, rate) in bake_sources(Path(d)).items():
            for workers in (1, 2):
                runs = []
                for k in range(repeat):
                    out = Path(d) / "out" / f"{len(rows)}-{k}"
                    proc = subprocess.run([sys.executable, "-c", _BAKE_CHILD, str(source), str(out), str(workers),
                                           str(rate)], capture_output=True, text=True, env=env)
                    if proc.returncode != 0:
                        raise SystemExit(f"the build of {name} failed: {proc.stderr[-2000:]}")
                    runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                first = statistics.median(r["first_s"] for r in runs)
                rows.append({"source": name, "workers": workers, "first_chunk_s": first,
                             "first_chunk_s_all": [r["first_s"] for r in runs],
                             "from_first_line_s": statistics.median(r["from_start_s"] for r in runs),
                             "build_s": statistics.median(r["total_s"] for r in runs), "target_s": BAKE_TARGET_S,
                             "imported_scipy_signal": any(r["scipy_signal"] for r in runs),
                             "met": first <= BAKE_TARGET_S})
    return rows


def print_bake(rows: list[dict[str, object]], scipy_s: float) -> None:
    print(f"\n{'bake start-up (fresh process)':<48} {'workers':>7} {'first chunk s':>14} {'build s':>8}  target"
          f"  {'from first line s':>17}")
    for r in rows:
        verdict = "met" if r["met"] else "NOT met"
        print(f"{r['source']:<48} {r['workers']:>7} {r['first_chunk_s']:>14.3f} {r['build_s']:>8.3f}  {verdict:<7}"
              f" {r['from_first_line_s']:>16.3f}{'  (imported scipy.signal)' if r['imported_scipy_signal'] else ''}")
    print(f"{'for scale: python -c import scipy.signal (median s)':<48} {'':>7} {scipy_s:>14.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7, help="fresh processes per command (default 7)")
    p.add_argument("--out", type=Path, help="JSON path (default: runs/startup/startup-<machine>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/startup-<machine>.json")
    p.add_argument("--pythonpath", help="run the bake start-up builds against this source tree (PYTHONPATH)")
    p.add_argument("--bake-only", action="store_true", help="only the bake start-up rows")
    args = p.parse_args()
    bake = bake_startup(args.repeat, args.pythonpath)
    scipy_s = statistics.median(timed([sys.executable, "-c", "import scipy.signal"], args.repeat)) - \
        statistics.median(timed([sys.executable, "-c", "pass"], args.repeat))
    print_bake(bake, scipy_s)
    if args.bake_only:
        return
    import prebake

    prebake_cmd = [str(Path(sys.executable).with_name("prebake"))]
    with tempfile.TemporaryDirectory() as d:
        cache, doomed = Path(d) / "caches" / "c", Path(d) / "doomed" / "c"
        columns = {"image": np.zeros((256, 3, 32, 32), np.uint8), "label": np.arange(256) % 10}
        prebake.write_arrays(cache, columns)
        commands = {
            "prebake --version": [*prebake_cmd, "--version"],
            "prebake --help": [*prebake_cmd, "--help"],
            "prebake ls": [*prebake_cmd, "ls", str(cache.parent)],
            "prebake info": [*prebake_cmd, "info", str(cache)],
            "prebake verify": [*prebake_cmd, "verify", str(cache)],
            "prebake clear --yes": [*prebake_cmd, "clear", "--yes", str(doomed)],
            "baseline: python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "baseline: python -c 'import prebake.augment' (torch)": [sys.executable, "-c", "import prebake.augment"],
            "baseline: python -c 'pass'": [sys.executable, "-c", "pass"],
        }
        remake = lambda: prebake.write_arrays(doomed, columns)  # noqa: E731 - a cache for each clear
        rows = {name: timed(cmd, args.repeat, remake if "clear" in name else lambda: None)
                for name, cmd in commands.items()}
    torch_s = statistics.median(rows["baseline: python -c 'import torch'"])
    print(f"{'command':<56} {'median s':>9} {'min-max s':>13} {'import torch is':>16}  target")
    result = []
    for name, times in rows.items():
        med = statistics.median(times)
        light = not name.startswith("baseline")
        verdict = ("met" if med < TARGET_S else "NOT met") if light else ""
        print(f"{name:<56} {med:>9.3f} {min(times):>6.3f}-{max(times):<6.3f} {torch_s / med:>15.1f}x  {verdict}")
        result.append({"command": name, "median_s": med, "min_s": min(times), "max_s": max(times),
                       "seconds": times, "torch_import_over_this": torch_s / med,
                       "target_s": TARGET_S if light else None, "met": med < TARGET_S if light else None})
    name, here = f"startup-{device_tag('cpu')}.json", Path(__file__).resolve().parent
    record = {"machine": machine("cpu"), "repeat": args.repeat, "rows": result, "bake_startup": bake,
              "scipy_signal_import_s": scipy_s, "pythonpath": args.pythonpath}
    for path in write_results(record, args.out or here.parent / "runs" / "startup" / name,
                              here / "results" / name if args.save else None):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
