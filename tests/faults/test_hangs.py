"""A build never hangs in silence: forked workers after the caller used torch's threads, and a watchdog
that names a transform that never returns."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from benchmarks.trials.hangs import VARIANTS, run_variants


def test_torch_scipy_and_blas_transforms_and_a_stage_after_the_parent_used_threads(tmp_path):
    variants = tuple(v for v in VARIANTS if v != "monai")
    got = run_variants(tmp_path, variants, threads=2, timeout=120)  # before: "hung" (killed after 120 s)
    assert got == dict.fromkeys(variants, "ok"), got


@pytest.mark.slow
def test_a_monai_transform_after_four_parent_threads(tmp_path):
    pytest.importorskip("monai")
    assert run_variants(tmp_path, ("monai",), threads=4, timeout=120) == {"monai": "ok"}


_STUCK = """
import logging, sys, time
import numpy as np, prebake
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")

def never_returns_on_item_5(item):
    if int(item["label"]) == 5:
        time.sleep(3600)
    return item

class D:
    def __len__(self):
        return 12
    def __getitem__(self, i):
        return {"x": np.full(3, i, np.float32), "label": i}
    def fingerprint(self):
        return "stuck-v1"

prebake.build(D(), sys.argv[1], [never_returns_on_item_5], workers=int(sys.argv[2]), progress=False,
              watchdog=float(sys.argv[3]), chunk_rows=4)
"""


def _stderr_until(proc: subprocess.Popen, text: str, seconds: float) -> str:
    """What ``proc`` wrote to stderr until ``text`` appeared twice (or ``seconds`` passed); then it is killed."""
    seen, deadline = "", time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and seen.count(text) < 2:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            seen += line
    finally:
        proc.kill()
        proc.wait()
    return seen


@pytest.mark.parametrize("workers", [2, 0])
def test_the_watchdog_names_the_item_and_the_stack_of_a_transform_that_never_returns(tmp_path, workers):
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(_STUCK))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), str(workers), "0.5"],
                            stderr=subprocess.PIPE, text=True)
    seen = _stderr_until(proc, "watchdog:", 60)
    assert seen.count("WARNING watchdog:") >= 2, seen  # reported, then again later: it keeps waiting, not failing
    first = seen[seen.index("WARNING watchdog:"):]
    assert "has been on item 5 (5) for" in first, first
    assert "never_returns_on_item_5" in first and "stuck.py" in first, first  # the user's frame, by name
    assert ("worker process" in first) == (workers == 2), first
    assert "`watchdog=0` turns this report off" in first, first


def test_watchdog_zero_reports_nothing(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(_STUCK))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), "2", "0"],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # a 0.5 s watchdog reports within 1 s (the test above)
    proc.kill()
    _, err = proc.communicate()
    assert "watchdog" not in err, err
