"""Item 6: a full disk is a clear error up front (it was a SIGBUS with one worker, a hang with two)."""

from __future__ import annotations

import os

import pytest

from benchmarks.trials.crash import write_dataset
from benchmarks.trials.diskfull import IMAGE_BYTES, can_mount, disk_full, run_scenario

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc"),
                                reason="needs fork and /proc (Linux)")


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
def test_a_build_that_cannot_fit_fails_up_front_and_leaves_nothing(tmp_path, workers, how):
    if how == "tmpfs" and not can_mount(tmp_path):
        pytest.skip("mounting a tmpfs is not allowed here; the rlimit case stands in")
    rc, r = run_scenario(tmp_path, "disk", how=how, size=IMAGE_BYTES // 2, spec=write_dataset(tmp_path),
                         workers=workers)
    assert rc == 0, f"the build died (exit {rc}): {r}"  # before: SIGBUS (one worker) or no exit (two)
    assert r["error"] == "DiskFullError", r
    if how == "tmpfs":  # what the fixed columns need (image and label, with their .npy headers), and the fix
        assert f"needs {IMAGE_BYTES + 128 + 3000 * 8 + 128:,} bytes" in r["message"], r["message"]
        assert "bytes free" in r["message"] and "build into a directory on another disk" in r["message"]
    else:
        assert "file size limit" in r["message"], r["message"]
    assert "cache.partial" in r["message"]
    assert r["old_intact"] and r["left"] == [], r


def test_disk_full_trials(tmp_path):
    row = disk_full(tmp_path, trials=4)
    assert row.failures == 0, row.examples
