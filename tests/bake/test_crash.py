"""Crash safety: real child processes, real SIGKILL, then a re-run must give the same bytes.

Kill points are installed in the child only (see benchmarks/trials/crash.py). Most children are
forked from the test process (torch is already imported there, which keeps the suite
fast); the lock tests use fresh interpreters and the real CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import filelock
import numpy as np
import pytest

import prebake
from benchmarks.trials.crash import (
    CHUNK_ROWS,
    NUM_ITEMS,
    assert_same_cache,
    build_dataset,
    can_exchange,
    group_members,
    join_forked,
    reap_group,
    run_forked,
    script_cmd,
    start_forked,
    write_dataset,
    write_transform,
)
from prebake.bake.plan import ChunkResult
from prebake.cache.files import file_checksum, read_manifest
from prebake.cache.format import JOURNAL, PLAN, partial_path
from prebake.errors import CacheNotFoundError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc"),
                                reason="needs fork and /proc (Linux)")

NUM_CHUNKS = -(-NUM_ITEMS // CHUNK_ROWS)
KILLED = -signal.SIGKILL  # a child's exit code after SIGKILL


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The dataset and transform modules, and uninterrupted reference builds of both."""
    d = tmp_path_factory.mktemp("crash")
    spec, tf_spec = write_dataset(d), write_transform(d)
    ref_plain, ref_tf = d / "ref_plain", d / "ref_tf"
    assert build_dataset(spec, ref_plain).action == "built"
    assert build_dataset(spec, ref_tf, transform=tf_spec).action == "built"
    skipped = read_manifest(ref_plain)["skipped"]
    assert skipped and len(prebake.open(ref_plain)) == NUM_ITEMS - len(skipped)  # so commit compacts
    return SimpleNamespace(dir=d, spec=spec, tf_spec=tf_spec, ref_plain=ref_plain, ref_tf=ref_tf)


def journal_chunks(out: Path) -> list[int]:
    lines = (partial_path(out) / JOURNAL).read_text().splitlines()
    return [ChunkResult.from_json(line).chunk for line in lines]


def assert_clean(out: Path) -> None:
    """Committed, verified, nothing left over from the build."""
    assert not partial_path(out).exists()
    assert not out.with_name(out.name + ".replaced").exists()
    report = prebake.verify(out)
    assert report.ok, report.problems


def assert_not_openable(out: Path) -> None:
    with pytest.raises(CacheNotFoundError):
        prebake.open(out)
    with pytest.raises(CacheNotFoundError):
        prebake.open(partial_path(out))


# -- 1a. killed while chunks are being processed --------------------------------------------------


@pytest.mark.parametrize("frac", [0.3, 0.8])
@pytest.mark.parametrize("workers", [0, 2])
def test_kill_mid_build_then_resume_is_byte_identical(env, tmp_path, workers, frac):
    out = tmp_path / "cache"
    rc = run_forked({"spec": env.spec, "out": str(out), "workers": workers, "kill": f"progress:{frac}"})
    assert rc == KILLED
    assert (partial_path(out) / PLAN).is_file()
    done = set(journal_chunks(out))
    assert 0 < len(done) < NUM_CHUNKS  # some chunks were durable, some were not
    assert_not_openable(out)  # no older cache existed

    calls = []
    report = build_dataset(env.spec, out, lambda s, d, t: calls.append(d), workers=workers)
    assert report.action == "resumed"
    assert calls[0] == sum(min(CHUNK_ROWS, NUM_ITEMS - c * CHUNK_ROWS) for c in done)
    assert len(calls) == 1 + NUM_CHUNKS - len(done)  # only the missing chunks were processed again
    assert_same_cache(out, env.ref_plain)
    assert_clean(out)


# -- 1b. killed while committing -------------------------------------------------------------------

COMMIT_KILLS = [
    "seal:entry",
    "_compact:entry",
    "_compact:mid",  # after the first compacted column replaced the full-size one
    "_compact:exit",
    "_stitch:exit",
    "seal:exit",  # manifest written inside the partial directory
    "publish:entry",
    "publish:exit",
    "swap_into_place:entry",
    "swap_into_place:mid",  # no older cache: the first rename is the commit itself
    "swap_into_place:exit",
]
COMMITTED_BY = {"publish:exit", "swap_into_place:mid", "swap_into_place:exit"}


@pytest.mark.parametrize("kill", COMMIT_KILLS)
def test_kill_at_commit_then_rerun_is_byte_identical(env, tmp_path, kill):
    out = tmp_path / "cache"
    rc = run_forked({"spec": env.spec, "out": str(out), "kill": kill})
    assert rc == KILLED
    if kill in COMMITTED_BY:
        assert_same_cache(out, env.ref_plain)  # the rename happened: the new cache is complete
    else:
        assert partial_path(out).is_dir()
        with pytest.raises(CacheNotFoundError):
            prebake.open(out)

    report = build_dataset(env.spec, out)
    assert report.action == ("up to date" if kill in COMMITTED_BY else "resumed")
    assert_same_cache(out, env.ref_plain)
    assert_clean(out)
    internal = [p.name for p in out.iterdir() if p.name.startswith("_") and p.name != "_item_keys.json"]
    assert not internal  # no journal, plan, shards


# -- 2. a partial directory never opens as a cache ------------------------------------------------

@pytest.mark.parametrize("kill", [
    "progress:0.5",
    "_compact:exit",
    "seal:exit",  # sealed: manifest.json is inside <out>.partial, still not a cache
    "publish:entry",
])
def test_partial_directory_never_opens_as_cache(env, tmp_path, kill):
    out = tmp_path / "cache"
    assert run_forked({"spec": env.spec, "out": str(out), "kill": kill}) == KILLED
    assert partial_path(out).is_dir()
    assert_not_openable(out)


# -- 1c. killed while rebuilding over an older committed cache ------------------------------------

REBUILD_KILLS = [
    "progress:0.5",
    "_compact:exit",
    "seal:exit",
    "publish:entry",
    "swap_into_place:entry",
    "swap_into_place:mid",  # just after the rename-exchange of old and new
    "swap_into_place:exit",
    "fallback:swap_into_place:mid",  # no rename-exchange: old cache renamed aside, new not yet in
    "fallback:swap_into_place:exit",
]


@pytest.mark.parametrize("kill", REBUILD_KILLS)
def test_kill_during_rebuild_keeps_old_cache_until_published(env, tmp_path, kill):
    out = tmp_path / "cache"
    shutil.copytree(env.ref_plain, out)  # an older committed cache, made without the transform
    fallback = kill.startswith("fallback:")
    kill = kill.removeprefix("fallback:")
    if kill == "swap_into_place:mid" and not fallback and not can_exchange(tmp_path):
        pytest.skip("this filesystem cannot rename-exchange")
    rc = run_forked({"spec": env.spec, "out": str(out), "transform": env.tf_spec, "kill": kill,
                     "no_exchange": fallback})
    assert rc == KILLED
    committed = kill == "swap_into_place:exit" or (kill == "swap_into_place:mid" and not fallback)
    if committed:
        assert_same_cache(out, env.ref_tf)  # the new cache, complete
        assert prebake.verify(out).ok
    elif kill == "swap_into_place:mid":
        # the documented fallback window: no cache at <out>, the old one whole in <out>.replaced
        assert not out.exists()
        assert_same_cache(out.with_name(out.name + ".replaced"), env.ref_plain)
    else:
        cache = prebake.open(out)
        old = prebake.open(env.ref_plain)
        assert len(cache) == len(old)
        for i in (0, 1, len(old) // 2, len(old) - 1):
            for name in ("image", "label", "sig"):
                np.testing.assert_array_equal(cache[i][name], old[i][name])
        assert_same_cache(out, env.ref_plain)
        assert prebake.verify(out).ok

    report = build_dataset(env.spec, out, transform=env.tf_spec)
    assert report.action in (("up to date",) if committed else ("rebuilt", "resumed"))
    assert_same_cache(out, env.ref_tf)
    assert_clean(out)
    assert not np.array_equal(prebake.open(out)[0]["image"], prebake.open(env.ref_plain)[0]["image"])


def test_kill_while_deleting_the_old_cache_leaves_nothing_behind(env, tmp_path):
    if not can_exchange(tmp_path):
        pytest.skip("this filesystem cannot rename-exchange; swap_into_place takes its fallback path")
    out = tmp_path / "cache"
    shutil.copytree(env.ref_plain, out)
    rc = run_forked({"spec": env.spec, "out": str(out), "transform": env.tf_spec,
                     "kill": "swap_into_place:rmtree"})  # one file of the old cache deleted, its manifest last
    assert rc == KILLED
    assert_same_cache(out, env.ref_tf)  # the new cache is in place
    report = build_dataset(env.spec, out, transform=env.tf_spec)
    assert report.action == "up to date"
    assert_same_cache(out, env.ref_tf)
    assert_clean(out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cache")) == ["cache", "cache.lock"]


# -- orphaned workers of a killed build -----------------------------------------------------------


def _wait_gone(pid: int, pgid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while pid in group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_orphaned_worker_of_killed_build_cannot_corrupt_next_build(env, tmp_path):
    out, flag = tmp_path / "cache", tmp_path / "release"
    block = CHUNK_ROWS + 6  # an item of chunk 1: the worker that takes chunk 1 waits for `flag`
    child = start_forked({"spec": env.spec, "out": str(out), "workers": 2, "kill": "progress:0.5",
                          "env": {"PREBAKE_TEST_BLOCK": f"{block}:{flag}"}})
    try:
        assert join_forked(child, reap=False) == KILLED
        pid_file = Path(f"{flag}.pid")  # written by the worker that reached the blocking item
        blocked = int(pid_file.read_text()) if pid_file.exists() else -1
        deadline = time.monotonic() + 30  # let the other, unblocked worker finish and exit
        while set(group_members(child.pid)) - {blocked} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(group_members(child.pid)) <= {blocked}  # at most the orphan inside chunk 1 is left

        def progress(split: str, done: int, total: int) -> None:
            if done == total:  # every chunk of the new build is written; now the orphan finishes
                flag.touch()
                _wait_gone(blocked, child.pid)

        # the user changed the transform and re-runs: a new plan, a fresh partial directory
        report = build_dataset(env.spec, out, progress, transform=env.tf_spec)
        assert report.action == "built"
        assert_clean(out)
        assert_same_cache(out, env.ref_tf)
    finally:
        flag.touch()
        reap_group(child.pid)


# -- 3. two builders of one output ----------------------------------------------------------------


def test_two_builds_at_once_one_builds_one_waits(env, tmp_path):
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "prebake", "build", "--dataset", env.spec, str(out),
           "--ragged", "sig", "--workers", "2", "--json", "--lock-timeout", "60"]
    child_env = {**os.environ, "PREBAKE_TEST_DELAY": "0.0003"}  # ~1 s of baking: the two overlap
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env)
             for _ in range(2)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr.decode()
        [r] = json.loads(stdout)
        results.append(r)
    assert sorted(r["action"] for r in results) == ["built", "up to date"]
    assert all(r["num_items"] == len(prebake.open(env.ref_plain)) for r in results)
    # identical to a single uninterrupted build (which used other chunk sizes), and self-consistent
    assert_same_cache(out, env.ref_plain)
    assert_clean(out)
    for col in read_manifest(out)["columns"].values():
        for name, meta in col["files"].items():
            assert (out / name).stat().st_size == meta["bytes"]
            assert file_checksum(out / name) == meta["xxh3_64"]


def test_killed_lock_holder_does_not_wedge_the_next_build(env, tmp_path):
    out = tmp_path / "cache"
    cfg = {"spec": env.spec, "out": str(out), "workers": 2, "kill": "progress:0.3",
           "env": {"PREBAKE_TEST_DELAY": "0.001"}}  # workers are mid-chunk when the parent dies
    proc = subprocess.Popen(script_cmd(cfg), start_new_session=True)
    try:
        assert proc.wait(timeout=120) == KILLED
        # the lock is free at once, even while the killed builder's workers may still run
        lock = filelock.FileLock(str(out) + ".lock")
        lock.acquire(timeout=0)
        lock.release()
    finally:
        reap_group(proc.pid)
    report = build_dataset(env.spec, out, lock_timeout=30)
    assert report.action == "resumed"
    assert_same_cache(out, env.ref_plain)
    assert_clean(out)


# -- 4. a torn journal line ----------------------------------------------------------------------

TORN = '{"chunk": 9999, "bad": [[1, "trunc'


def test_torn_last_journal_line_is_tolerated(env, tmp_path):
    out = tmp_path / "cache"
    assert run_forked({"spec": env.spec, "out": str(out), "kill": "progress:0.5"}) == KILLED
    done = journal_chunks(out)
    assert done
    with open(partial_path(out) / JOURNAL, "a") as f:
        f.write(TORN)  # no newline: a write cut short
    calls = []
    report = build_dataset(env.spec, out, lambda s, d, t: calls.append(d))
    assert report.action == "resumed"
    assert len(calls) == 1 + NUM_CHUNKS - len(done)
    assert_same_cache(out, env.ref_plain)
    assert_clean(out)


def test_progress_after_a_torn_line_is_kept_by_the_next_resume(env, tmp_path):
    out = tmp_path / "cache"
    assert run_forked({"spec": env.spec, "out": str(out), "kill": "progress:0.3"}) == KILLED
    with open(partial_path(out) / JOURNAL, "a") as f:
        f.write(TORN)
    assert run_forked({"spec": env.spec, "out": str(out), "kill": "progress:0.8"}) == KILLED
    calls = []
    build_dataset(env.spec, out, lambda s, d, t: calls.append(d))
    assert_same_cache(out, env.ref_plain)
    assert calls[0] >= 0.7 * NUM_ITEMS  # resumes near 80 %, where the second run stopped
