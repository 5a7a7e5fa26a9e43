"""benchmarks/faults.py: a quick run prints the table and writes the JSON, with every row at 0 failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py"


def test_quick_run_prints_the_table_and_writes_every_row(tmp_path):
    out = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["quick"] and len(report["rows"]) == 38
    assert all(r["trials"] > 0 and r["failures"] == 0 for r in report["rows"]), report["rows"]
    assert done.stdout.startswith("| what was tried | trials | failures |")
    assert all(r["what"] in done.stdout for r in report["rows"])
