"""benchmarks/augment.py: a quick run prints the table and writes the JSON, each suite in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "augment.py"


@pytest.mark.slow
def test_quick_run_writes_every_suite_from_fresh_processes(tmp_path):
    out = tmp_path / "augment.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--repeat", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("each in a fresh process") == 2
    report = json.loads(out.read_text())
    assert report["quick"] and report["repeats"] == 2 and report["process"].startswith("each suite")
    rows = {(r["suite"], r["pipeline"]): r for r in report["rows"]}
    for suite, pipeline in [("images", "prebake (uint8 in)"), ("vit", "prebake flip+normalize at 32, resize 224"),
                            ("signals", "prebake six ops")]:
        row = rows[(suite, pipeline)]
        assert len(row["samples_per_s_per_repeat"]) == 2 and row["samples_per_s"] > 0
        assert pipeline in done.stdout  # the printed table

