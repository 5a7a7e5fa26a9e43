"""kill -9 at many points (the builder) and of one worker (a dead worker wedged the build)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from benchmarks.trials.crash import (
    CHUNK_ROWS,
    assert_same_cache,
    build_dataset,
    join_forked,
    kill_blocked_worker,
    start_forked,
)
from benchmarks.trials.kills import References, kill_builder, kill_worker

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc"),
                                reason="needs fork and /proc (Linux)")


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return References(tmp_path_factory.mktemp("kills"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGBUS])
def test_a_dead_worker_stops_the_build_naming_the_chunk_and_signal(refs, tmp_path, sig):
    out, flag, result = tmp_path / "cache", tmp_path / "flag", tmp_path / "result.json"
    item = 3 * CHUNK_ROWS + 5
    child = start_forked({"spec": refs.spec, "out": str(out), "workers": 2, "report_to": str(result),
                          "env": {"PREBAKE_TEST_BLOCK": f"{item}:{flag}"}})
    try:
        pid = kill_blocked_worker(flag, sig)  # the worker is inside chunk 3, as the OOM killer would find it
        assert join_forked(child, timeout=60) == 3  # before: the builder waited forever
    finally:
        flag.touch()
    error = json.loads(result.read_text())
    assert error["error"] == "WorkerDiedError"
    chunk = f"chunk 3 (items {3 * CHUNK_ROWS}..{4 * CHUNK_ROWS - 1})"
    assert f"worker process {pid} died while baking {chunk}" in error["message"]
    assert sig.name in error["message"] and "re-run the same command to resume" in error["message"]
    if sig == signal.SIGBUS:
        assert "disk is full" in error["message"]
    report = build_dataset(refs.spec, out, workers=2)
    assert report.action == "resumed"
    assert_same_cache(out, refs.plain)


def test_kill_builder_at_random_points(refs):
    row = kill_builder(refs.dir, trials=8, seed=11)
    assert row.trials == 8 and row.failures == 0, row.examples


def test_kill_one_worker_at_random_items(refs):
    row = kill_worker(refs.dir, trials=3, seed=12)
    assert row.trials == 3 and row.failures == 0, row.examples
