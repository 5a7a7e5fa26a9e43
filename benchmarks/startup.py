"""How fast the light ``prebake`` commands start: wall time of whole processes, in one run.

Each command runs ``--repeat`` times as a fresh process on a small cache; the table gives
the median (and min-max). Beside it, in the same run, ``python -c "import torch"`` and
``python -c "import prebake.augment"`` (which imports torch): what each command paid when
``import prebake`` imported torch. Target: under 0.3 s for ``--version``, ``--help``,
``ls``, ``info``, ``verify`` and ``clear`` on a 2-core machine.

    python benchmarks/startup.py            # prints the table, writes results/startup-<machine>.json
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7, help="fresh processes per command (default 7)")
    p.add_argument("--out", type=Path, help="JSON path (default: runs/startup/startup-<machine>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/startup-<machine>.json")
    args = p.parse_args()
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
    record = {"machine": machine("cpu"), "repeat": args.repeat, "rows": result}
    for path in write_results(record, args.out or here.parent / "runs" / "startup" / name,
                              here / "results" / name if args.save else None):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
