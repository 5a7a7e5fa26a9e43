"""benchmarks/views.py: a quick run checks every pipeline gives the same tensors, prints the table, writes the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "views.py"


@pytest.mark.slow
def test_quick_run_compares_every_pipeline_and_writes_the_results(tmp_path):
    out = tmp_path / "views.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--workdir", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["quick"] and report["machine"]["cpu_count"] >= 1
    settings = {s["setting"]: s for s in report["settings"]}
    assert set(settings) == {"windows, batch 8", "windows, batch 64", "elements, batch 64"}
    for name, s in settings.items():
        pipelines = [r["pipeline"] for r in s["rows"]]
        assert pipelines[0].startswith("prebake.Loader") and any("4 workers" in p for p in pipelines)
        assert all(r["samples_per_s"] > 0 for r in s["rows"]) and s["rows"][0]["prebake_ratio"] == 1.0
        assert f"{name}: " in done.stderr and "same tensors from all" in done.stderr  # checked before timing
        assert all(p in done.stdout for p in pipelines)  # the printed table
    assert any("talking-head design" in r["pipeline"] for r in settings["windows, batch 8"]["rows"])
    assert not list(tmp_path.glob("prebake-views-*"))  # the caches it wrote are gone


def test_the_output_check_fails_on_a_pipeline_that_differs():
    import importlib.util

    import numpy as np
    import pytest
    import torch

    spec = importlib.util.spec_from_file_location("views_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["views_bench"] = bench  # dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules["views_bench"]

    def pipe(name, shift):
        def make(order):
            while True:
                yield {"x": torch.arange(3) + shift, "label": torch.zeros(3)}
        return bench.Pipeline(name, make)

    bench.check_same([pipe("a", 0), pipe("b", 0)], np.arange(3), ("x", "label"), batches=2)
    with pytest.raises(RuntimeError, match="c: batch 0 column 'x' differs from a's"):
        bench.check_same([pipe("a", 0), pipe("c", 1)], np.arange(3), ("x", "label"), batches=2)
