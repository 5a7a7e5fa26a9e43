"""Faults in a build of photos of every size with worker processes: the build whose spill shards, write-ahead
stream and commit go past the page cache (bake/direct.py, bake/stream.py).

Each trial builds the same folder in a forked process with 2 workers and either kills its whole process group at a
random moment (kill -9: the builder, its workers and its threads at once) or sets a file size limit somewhere
between one block and the whole column (a full disk as ``RLIMIT_FSIZE`` gives it). The build must end, fail with a
``DiskFullError`` under a limit, and the same build without the fault must then give the bytes of an uninterrupted
build, with no partial directory left over. A trial fails on anything else: another exception, a hang, other bytes.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import prebake
from prebake.cache.format import partial_path

from . import Row

_TIMEOUT = 120.0


def photos(root: Path, count: int = 48, seed: int = 0) -> Path:
    """PNGs of 60 to 420 px a side in 3 class folders: every item spills, chunks of several MB."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        h, w = (int(v) for v in rng.integers(60, 421, 2))
        folder = root / f"c{k % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{k}.png", compress_level=0)
    return root


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix == ".npy"}


def _child(src: Path, out: Path, report: Path, limit: int, workers: int) -> None:  # pragma: no cover - runs forked
    code = 1
    try:
        os.setpgid(0, 0)
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            prebake.build(str(src), out, workers=workers, chunk_rows=8, progress=False)
            got: dict[str, Any] = {"error": None}
        except Exception as e:  # noqa: BLE001 - reported to the parent, which judges it
            got = {"error": type(e).__name__, "message": str(e)[:500]}
        report.with_suffix(".tmp").write_text(json.dumps(got))
        os.replace(report.with_suffix(".tmp"), report)  # a kill mid-write leaves no report, not half of one
        code = 0
    finally:
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    return None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def trial_mixed_faults(work_dir: Path, trials: int, seed: int | None = 0, workers: int = 2) -> Row:
    """``workers`` 0: the build in its own process, which places the photos itself (bake/stream.py's write_ahead)."""
    who = f"with {workers} workers" if workers > 1 else "in one process"
    row = Row(f"kill -9 or a file size limit during a build of photos of every size {who}; the build again: "
              "the same bytes")
    rng = np.random.default_rng(seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    src = photos(work_dir / "photos")
    ref = work_dir / "ref"
    prebake.build(str(src), ref, workers=2, chunk_rows=8, progress=False)  # the bytes every build must give
    t0 = time.perf_counter()  # a second, warm build: how long the kill window is
    prebake.build(str(src), work_dir / "warm", workers=workers, chunk_rows=8, progress=False)
    took = time.perf_counter() - t0
    shutil.rmtree(work_dir / "warm")
    want = _files(ref)
    column = len(want.get("image.values.npy", b""))
    row.notes = {"killed before the commit": 0, "refused for the limit": 0}
    for k in range(trials):
        out, report = work_dir / f"out{k}", work_dir / f"report{k}.json"
        kill = k % 2 == 0
        limit = 0 if kill else int(rng.integers(4096, column + 1))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            _child(src, out, report, limit, workers)
        if kill:
            time.sleep(float(rng.uniform(0, took * 1.2)))
            _kill_group(pid)
        status = _wait(pid, _TIMEOUT)
        if status is None:
            _kill_group(pid)
            os.waitpid(pid, 0)
            row.fail(f"trial {k}: the build {'with a limit of ' + str(limit) if limit else ''} did not end in "
                     f"{_TIMEOUT:.0f} s")
            continue
        _kill_group(pid)  # workers a killed builder left behind
        if kill and not report.exists():
            row.notes["killed before the commit"] += 1
        elif limit and report.exists() and json.loads(report.read_text())["error"] == "DiskFullError":
            row.notes["refused for the limit"] += 1
        _judge(row, k, out, report, limit, want, workers)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(partial_path(out), ignore_errors=True)
    return row


def _judge(row: Row, k: int, out: Path, report: Path, limit: int, want: dict[str, bytes], workers: int = 2) -> None:
    if limit:
        got = json.loads(report.read_text()) if report.exists() else None
        if got is None:
            row.fail(f"trial {k}: a build under a limit of {limit:,} bytes died without a report")
            return
        if got["error"] not in (None, "DiskFullError"):
            row.fail(f"trial {k}: a limit of {limit:,} bytes raised {got['error']}: {got['message']}")
            return
    try:
        prebake.build(str(out.parent / "photos"), out, workers=workers, chunk_rows=8, progress=False)
    except Exception as e:  # noqa: BLE001 - any exception here is the failure being counted
        row.fail(f"trial {k}: the build after {'a limit' if limit else 'kill -9'} raised {type(e).__name__}: {e}")
        return
    same = _files(out) == want
    left = partial_path(out).exists()
    row.check(same and not left, f"trial {k}: after {'a limit of ' + str(limit) if limit else 'kill -9'}: "
                                 f"{'other bytes' if not same else ''}{' and ' if not same and left else ''}"
                                 f"{'a partial directory left' if left else ''}")
