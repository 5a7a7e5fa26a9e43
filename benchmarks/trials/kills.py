"""kill -9: of the builder at many points of a build, a rebuild and a compaction; of one worker.

After the builder is killed, the same build resumes and ends byte-identical to an
uninterrupted one, with nothing left over. After a worker is killed (SIGKILL, as the
out-of-memory killer does; SIGBUS, as a write into a full disk's map did), the build
stops within seconds with a WorkerDiedError that names the chunk and the signal, and
the same build resumes.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import prebake
from prebake.cache.format import PARTIAL_SUFFIX, REPLACED_SUFFIX

from . import Row
from .crash import (
    CHUNK_ROWS,
    NUM_ITEMS,
    assert_same_cache,
    build_dataset,
    join_forked,
    kill_blocked_worker,
    run_forked,
    start_forked,
    write_dataset,
    write_transform,
)

#: Kill points inside the commit (see benchmarks/trials/crash.py); the _compact ones are the
#: compaction that drops skipped rows.
COMMIT_POINTS = ["seal:entry", "_compact:entry", "_compact:mid", "_compact:exit", "_stitch:exit", "seal:exit",
                 "publish:entry", "publish:exit", "swap_into_place:entry", "swap_into_place:mid",
                 "swap_into_place:exit"]
KILLED = -signal.SIGKILL


class References:
    """The test dataset and transform, and uninterrupted builds of both (made once per work dir)."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.spec, self.tf = write_dataset(workdir), write_transform(workdir)
        self.plain, self.with_tf = workdir / "ref-plain", workdir / "ref-tf"
        if not self.plain.exists():
            build_dataset(self.spec, self.plain)
        if not self.with_tf.exists():
            build_dataset(self.spec, self.with_tf, transform=self.tf)


def kill_builder(workdir: Path, trials: int, seed: int = 0) -> Row:
    """SIGKILL the builder: mid-build at a random point, or at a commit point; over no cache or an older one."""
    row = Row("kill -9 of the builder (build, rebuild, compaction); resume: byte-identical, no leftovers")
    refs, rng = References(workdir), random.Random(seed)
    for t in range(trials):
        rebuild, workers = rng.random() < 0.5, rng.choice([0, 2])
        kill = f"progress:{rng.uniform(0.05, 0.95):.3f}" if rng.random() < 0.5 else rng.choice(COMMIT_POINTS)
        out = workdir / f"killed-{t}"
        shutil.rmtree(out, ignore_errors=True)
        if rebuild:
            shutil.copytree(refs.plain, out)  # an older committed cache, made without the transform
        want = refs.with_tf if rebuild else refs.plain
        cfg: dict[str, Any] = {"spec": refs.spec, "out": str(out), "workers": workers, "kill": kill}
        if rebuild:
            cfg["transform"] = refs.tf
        where = f"trial {t}: {'rebuild' if rebuild else 'build'}, {workers} workers, kill at {kill}"
        try:
            rc = run_forked(cfg)
            report = build_dataset(refs.spec, out, workers=workers, transform=cfg.get("transform"))
            assert_same_cache(out, want)
            assert prebake.verify(out).ok
            leftovers = _leftovers(out)
        except (AssertionError, prebake.PrebakeError, OSError) as e:
            row.fail(f"{where}: {type(e).__name__}: {e}")
            continue
        row.check(rc == KILLED and not leftovers and report.action in ("resumed", "rebuilt", "up to date", "built"),
                  f"{where}: exit {rc}, then {report.action}, leftovers {leftovers}")
        shutil.rmtree(out, ignore_errors=True)
    return row


def _leftovers(out: Path) -> list[str]:
    extra = [p.name for p in out.parent.iterdir()
             if p.name in (out.name + PARTIAL_SUFFIX, out.name + REPLACED_SUFFIX)]
    return extra + [p.name for p in out.iterdir() if p.name.startswith("_")
                    and p.name not in ("_item_ids.npy", "_item_keys.json")]


def kill_worker(workdir: Path, trials: int, seed: int = 0) -> Row:
    """Kill one of two workers while it is inside a chunk; the build must stop and say so."""
    row = Row("kill of one pool worker (SIGKILL, SIGBUS, SIGSEGV): the build stops naming chunk and signal; resumes")
    refs, rng = References(workdir), random.Random(seed)
    seconds = []
    for t in range(trials):
        item = rng.randrange(CHUNK_ROWS, NUM_ITEMS - 1)
        if item % 97 == 13:
            item += 1  # a bad item raises before it blocks
        sig = rng.choice([signal.SIGKILL, signal.SIGBUS, signal.SIGSEGV])
        out, flag = workdir / f"worker-{t}", workdir / f"worker-{t}.flag"
        shutil.rmtree(out, ignore_errors=True)
        report_file = workdir / f"worker-{t}.json"
        report_file.unlink(missing_ok=True)
        child = start_forked({"spec": refs.spec, "out": str(out), "workers": 2, "report_to": str(report_file),
                              "env": {"PREBAKE_TEST_BLOCK": f"{item}:{flag}"}})
        where = f"trial {t}: {sig.name} to the worker baking item {item}"
        try:
            kill_blocked_worker(flag, sig)
            t0 = time.monotonic()
            rc = join_forked(child, timeout=120)
            seconds.append(time.monotonic() - t0)
            result = json.loads(report_file.read_text()) if report_file.exists() else {}
            message = result.get("message", "")
            report = build_dataset(refs.spec, out, workers=2)
            assert_same_cache(out, refs.plain)
            leftovers = _leftovers(out)
        except (AssertionError, prebake.PrebakeError, OSError) as e:
            row.fail(f"{where}: {type(e).__name__}: {e}")
            continue
        finally:
            flag.touch()
        chunk = f"chunk {item // CHUNK_ROWS} "
        named = result.get("error") == "WorkerDiedError" and chunk in message and sig.name in message
        row.check(rc == 3 and named and report.action == "resumed" and not leftovers,
                  f"{where}: exit {rc}, {result}, then {report.action}, leftovers {leftovers}")
        shutil.rmtree(out, ignore_errors=True)
    if seconds:
        row.notes["max_seconds_to_stop"] = round(max(seconds), 2)
    return row
