"""Crash safety of the schema from every item: SIGKILL while items spill and while the commit rewrites
the columns they changed (bake/rewrite.py), then a re-run must give the bytes of an uninterrupted build.

The test dataset (benchmarks/trials/crash.py, PREBAKE_TEST_MIXED=1) has images of two sizes (a ragged
N-D column), a ragged column of two dtypes (promoted) and strings of growing length (widened), plus
bad items (so the columns the commit does not rewrite are compacted).
"""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest

import prebake
from benchmarks.trials.crash import CHUNK_ROWS, NUM_ITEMS, assert_same_cache, build_dataset, run_forked, write_dataset
from prebake.cache.files import read_manifest
from prebake.cache.format import REWRITE, REWRITTEN, partial_path

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc"),
                                reason="needs fork and /proc (Linux)")

KILLED = -signal.SIGKILL
MIXED = {"PREBAKE_TEST_MIXED": "1"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The dataset module and an uninterrupted build of its mixed items."""
    d = tmp_path_factory.mktemp("schema_crash")
    spec = write_dataset(d)
    ref = d / "ref"
    os.environ.update(MIXED)
    try:
        assert build_dataset(spec, ref).action == "built"
    finally:
        del os.environ["PREBAKE_TEST_MIXED"]
    m = read_manifest(ref)
    assert m["columns"]["image"]["shape"] == [3, 16, None] and m["columns"]["sig"]["dtype"] == "<i4"
    assert m["columns"]["name"]["dtype"] == "<U40" and m["skipped"]
    return SimpleNamespace(dir=d, spec=spec, ref=ref)


def _kill_then_resume(env, out, kill: str, workers: int = 0) -> None:
    cfg = {"spec": env.spec, "out": str(out), "workers": workers, "env": MIXED}
    assert run_forked({**cfg, "kill": kill}) == KILLED
    assert not (out / "manifest.json").exists()
    assert run_forked(cfg) == 0
    assert_same_cache(out, env.ref)
    assert prebake.verify(out).ok and not partial_path(out).exists()


@pytest.mark.parametrize("kill", ["rewrite_columns:entry", "write_column:exit", "rewrite_columns:mid",
                                  "rewrite_columns:exit", "_compact:entry", "seal:exit", "publish:entry"])
def test_kill_during_the_commit_time_rewrite_resumes_byte_identical(env, tmp_path, kill):
    _kill_then_resume(env, tmp_path / "c", kill)


@pytest.mark.parametrize("workers, frac", [(0, 0.3), (2, 0.6)])
def test_kill_while_items_spill_resumes_byte_identical(env, tmp_path, workers, frac):
    _kill_then_resume(env, tmp_path / "c", f"progress:{frac}", workers)


def test_a_kill_after_the_rewrite_is_marked_done_resumes_from_its_files(env, tmp_path):
    out = tmp_path / "c"
    cfg = {"spec": env.spec, "out": str(out), "workers": 0, "env": MIXED}
    assert run_forked({**cfg, "kill": "rewrite_columns:mid"}) == KILLED  # marked done, its first file moved
    part = partial_path(out)
    assert (part / REWRITTEN).exists() and (part / "image.offsets.npy").exists()
    assert sorted(p.name for p in (part / REWRITE).iterdir()) == ["image.shapes.npy", "image.values.npy", "name.npy",
                                                                 "sig.offsets.npy", "sig.values.npy"]
    assert run_forked(cfg) == 0
    assert_same_cache(out, env.ref)
    cache = prebake.open(out)
    assert {cache[i]["image"].shape[2] for i in range(len(cache))} == {16, 20}
    good = [i for i in range(NUM_ITEMS) if i % 97 != 13]
    assert len(cache) == len(good) and CHUNK_ROWS < NUM_ITEMS  # several chunks, each with its own spill shard
    assert cache.manifest["columns"]["sig"]["schema"]["dtypes"] == {
        "<i2": sum(i % 7 != 3 for i in good), "<i4": sum(i % 7 == 3 for i in good)}
    assert [str(cache[k]["name"]) for k in range(3)] == ["n" * (1 + i % 40) for i in good[:3]]
