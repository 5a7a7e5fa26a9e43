"""benchmarks/faults.py: a quick run of a few rows prints the table and writes the JSON at 0 failures; the plan has
every row, and the saved full run has a row for each. Every row's trial runs in its own tests/faults/test_*.py;
all rows at once, quickly: ``make faults-quick``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "faults.py"
ROWS = 42


def test_a_quick_run_prints_the_table_and_writes_its_rows(tmp_path):
    out = tmp_path / "faults.json"
    only = ["truncations", "spelling", "decode-copies"]
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out),
                           *(a for name in only for a in ("--only", name))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["quick"] and [r["row"] for r in report["rows"]] == only
    assert all(r["trials"] > 0 and r["failures"] == 0 for r in report["rows"]), report["rows"]
    assert done.stdout.startswith("| what was tried | trials | failures |")
    assert all(r["what"] in done.stdout for r in report["rows"])


def test_the_plan_has_every_row_and_the_saved_run_each_of_them():
    sys.path.insert(0, str(ROOT))
    from benchmarks.faults import plan

    names = [name for name, _ in plan(True)]
    assert len(names) == ROWS and len(set(names)) == ROWS and names == [name for name, _ in plan(False)]
    saved = json.loads((ROOT / "benchmarks" / "results" / "faults-cpu-2core.json").read_text())
    assert not saved["quick"] and [r["row"] for r in saved["rows"]] == names  # rerun make faults after adding one
    assert all(r["failures"] == 0 for r in saved["rows"])
