"""Loading and release: a CPU Loader epoch paid for gather threads it started and stopped every epoch,
and for their hand-offs, and lost to a plain DataLoader at 1,000 items; ``prebake bench`` refused every
cache but a uint8 image one; ``watch`` called a loop whose input pipeline slowed the step by competing for
the CPU compute-bound; examples' benchmarks overwrote the committed results, and examples did not run
from where the quickstart leaves the user.

Each is an attack with tiny real caches and processes, and no timed assertion; the trial at the end throws
random caches, views and settings at the same surface (``benchmarks/trials/release.py``).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import prebake
from benchmarks.trials.release import release
from prebake.cli import main
from prebake.measure.bench import write_results

N = 1000


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    return prebake.write_arrays(tmp_path_factory.mktemp("release") / "c", {
        "image": rng.integers(0, 256, (N, 3, 8, 8), dtype=np.uint8), "label": np.arange(N, dtype=np.int64) % 10,
        "seq": [np.arange(i % 7, dtype=np.int16) + i for i in range(N)]})


def _gather_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("prebake-loader") and t.is_alive()]


# -- a Loader epoch on a CPU costs no more than a DataLoader's ---------------------------------------------

@pytest.mark.parametrize("data", ["cache", "windows", "elements"])
def test_a_cpu_loader_gathers_in_the_loops_thread(cache, data):
    """On a CPU the step's own threads use every core: gather threads only compete with them (and were started
    and joined every epoch), so by default a pass runs no thread, with the same batches as threads=2."""
    view = {"cache": cache, "windows": prebake.Windows(cache, "seq", 2),
            "elements": prebake.Elements(cache, "seq")}[data]
    loader = prebake.Loader(view, 64, seed=1)
    threaded = prebake.Loader(view, 64, seed=1, threads=2)
    assert loader.threads == 0 and threaded.threads == 2
    for epoch in range(3):
        wanted = list(threaded)
        for got, want in zip(loader, wanted, strict=True):
            assert not _gather_threads(), f"epoch {epoch}: gather threads run on a CPU by default"
            assert got.keys() == want.keys()
            for key in got:
                a, b = got[key], want[key]
                assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)) if isinstance(a, list) \
                    else np.array_equal(a, b), f"epoch {epoch} column {key}"


def test_threads_auto_keeps_threads_where_they_pay(cache):
    """A transform asked to run on the gather threads still gets them; an explicit count is kept."""
    assert prebake.Loader(cache, 64, transform=lambda b: b, transform_in_threads=True).threads == 2
    assert prebake.Loader(cache, 64, threads=3).threads == 3
    with pytest.raises(prebake.OptionError, match="threads='automatic'.*'auto' or a whole number"):
        prebake.Loader(cache, 64, threads="automatic")


# -- watch says when the input pipeline's CPU competes with the step ---------------------------------------

def _burn(seconds: float) -> None:
    """A worker of the input pipeline that keeps a core busy (pure Python: no thread pool to share)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(100))


def _batches(steps: int, workers: int):
    """Batches always ready, from a pipeline whose ``workers`` processes keep every core busy meanwhile."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_burn, args=(60.0,), daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for _ in range(steps):
            yield {"x": torch.zeros(8, 4)}
    finally:
        for proc in procs:
            proc.terminate()
            proc.join()


def test_watch_calls_a_cpu_starved_step_input_bound():
    """The step never waits (0% waiting for data), but the input pipeline holds the cores it needs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    w = prebake.watch(_batches(12, cores), report=lambda _: None)
    for _ in w:
        _spin(0.03)
    r = w.report
    assert r.input_bound_fraction < 0.2, "the step should not wait: the batches are always ready"
    assert r.contended and r.verdict == "input-bound"
    assert r.input_cores >= 0.2 * cores and r.as_dict()["contended"] is True
    assert "its CPU competes with the step" in str(r) and "(input-bound)" in str(r)


def test_watch_does_not_call_an_idle_input_pipeline_contended():
    """The same step without the busy workers, on however busy a machine: the step is the bottleneck."""
    w = prebake.watch(_batches(12, 0), report=lambda _: None)
    for _ in w:
        _spin(0.03)
    r = w.report
    assert not r.contended and r.verdict == "compute-bound" and r.input_cores < 0.2


# -- prebake bench for any cache ---------------------------------------------------------------------------

def _bench_cache(tmp_path, kind: str) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(2)
    if kind == "audio":
        from prebake.synthetic import write_audio_folder

        write_audio_folder(tmp_path / "wav", per_class=4, rate=1000, seconds=(0.2, 0.5))
        prebake.build(tmp_path / "wav", tmp_path / "c", workers=1, progress=False)
        return tmp_path / "c", []
    if kind == "volumes":
        prebake.write_arrays(tmp_path / "c", {"ct": rng.integers(-1000, 1000, (9, 1, 6, 7, 8), dtype=np.int16),
                                              "spacing": rng.random((9, 3)).astype(np.float32),
                                              "label": np.arange(9) % 2})
        return tmp_path / "c", []
    prebake.write_arrays(tmp_path / "c", {
        "sig": [rng.standard_normal((int(k), 2)).astype(np.float32) for k in rng.integers(3, 9, 11)],
        "label": np.arange(11) % 3, "name": np.array([f"rec{i}" for i in range(11)])})
    return tmp_path / "c", {"ragged": [], "windows": ["--windows", "sig", "2", "--context", "1"],
                            "elements": ["--elements", "sig"]}[kind]


@pytest.mark.parametrize("kind", ["audio", "volumes", "ragged", "windows", "elements"])
def test_bench_times_any_cache_against_a_dataloader(tmp_path, kind, capsys):
    """Audio, volumes, ragged columns and views: the Loader against DataLoaders over the same items, the same
    values checked, and a line per column."""
    path, view = _bench_cache(tmp_path, kind)
    out = tmp_path / "bench.json"
    rc = main(["bench", str(path), *view, "--seconds", "0.02", "--rounds", "2", "--workers", "0",
               "--batch-size", "4", "--out", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    got = json.loads(out.read_text())
    assert [r["key"] for r in got["rows"]] == ["prebake", "prebake-ram", "dataloader-batches", "dataloader-items"]
    assert all(r["samples_per_s"] > 0 and len(r["per_round"]) == 2 for r in got["rows"])
    cache = prebake.open(path)
    columns = {c["column"]: c for c in got["columns"]}
    assert set(cache.columns) <= set(columns) and all(c["bytes_per_sample"] > 0 for c in columns.values())
    assert all(name in text for name in columns) and "DataLoader x0, item by item" in text
    if kind in ("windows", "elements"):
        assert {"item", "start" if kind == "windows" else "element"} <= set(columns)
        assert got["view"].startswith("Windows" if kind == "windows" else "Elements")


def test_bench_names_a_view_that_does_not_fit(tmp_path, capsys):
    path, _ = _bench_cache(tmp_path, "ragged")
    assert main(["bench", str(path), "--elements", "label", "-q"]) == 2
    assert "'label'" in capsys.readouterr().err
    assert main(["bench", str(path), "--windows", "sig", "two", "-q"]) == 2
    assert "LENGTH='two'" in capsys.readouterr().err


def test_release_trials(tmp_path):
    row = release(tmp_path, trials=30, seed=3)
    assert row.failures == 0, row.examples


# -- examples run from where the quickstart leaves the user; runs never overwrite the results ---------------

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _python(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no checkout on the path but the files named
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", ["federated", "medical3d", "pcg", "talking_head"])
def test_every_example_and_its_benchmark_runs_by_path_from_the_demo_folder(tmp_path, name):
    """``python -m examples.X`` fails in prebake-demo/ (No module named 'examples'); ``python ../examples/X``
    and ``python ../examples/X bench`` work there, as from the repository root."""
    demo = tmp_path / "prebake-demo"
    demo.mkdir()
    for args in ([], ["bench"]) if name == "pcg" else ([],):  # one benchmark: they share the way in
        got = _python([str(Path(os.path.relpath(ROOT / "examples" / name, demo))), *args, "--help"], demo)
        assert got.returncode == 0 and got.stdout.startswith("usage:"), got.stderr[-2000:]


@pytest.mark.slow
def test_a_benchmark_writes_its_run_folder_and_the_results_only_when_saved(tmp_path):
    before = {p.name: p.read_bytes() for p in RESULTS.glob("*.json")}
    got = _python([str(ROOT / "benchmarks" / "views.py"), "--quick", "--workdir", str(tmp_path)], tmp_path)
    assert got.returncode == 0, got.stderr[-2000:]
    written = [Path(line.split("wrote ", 1)[1]) for line in got.stdout.splitlines() if line.startswith("wrote ")]
    assert [p.parent for p in written] == [ROOT / "runs" / "views"] and json.loads(written[0].read_text())["quick"]
    assert {p.name: p.read_bytes() for p in RESULTS.glob("*.json")} == before  # the committed figures untouched
    saved = write_results({"x": 1}, tmp_path / "run" / "a.json", tmp_path / "results" / "a.json")
    assert [p.read_text() for p in saved] == ['{\n "x": 1\n}\n'] * 2
