"""A full disk: a small tmpfs in a private mount namespace where mounting is allowed
(root, or CAP_SYS_ADMIN), otherwise RLIMIT_FSIZE (a real kernel limit: writes past it fail
with EFBIG). Each trial runs in a forked child, so neither the mount nor the limit leaks.

A build that cannot fit must fail with DiskFullError before it writes rows (needed
bytes, free bytes, the path, the fix), never die of SIGBUS or hang; the old cache stays
untouched and nothing is left behind. A build that runs out of room later (the commit
needs a second copy of the rows to drop skipped ones) names its partial directory and
resumes, byte-identical, once there is room.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import traceback
from pathlib import Path
from typing import Any

import numpy as np

import prebake

from . import Row
from .crash import assert_same_cache, build_dataset, join_forked, write_dataset

_CLONE_NEWNS, _MS_REC, _MS_PRIVATE, _MS_REMOUNT = 0x00020000, 16384, 1 << 18, 32
IMAGE_BYTES = 3000 * 3 * 16 * 16  # the fixed image column of the test dataset (benchmarks/trials/crash.py)


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def mount_tmpfs(where: Path, size: int, remount: bool = False) -> bool:
    """Mount (or resize) a tmpfs of ``size`` bytes at ``where``, in this process's own mount namespace."""
    libc = _libc()
    if not remount:
        if libc.unshare(_CLONE_NEWNS) != 0:
            return False
        if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            return False
    flags = _MS_REMOUNT if remount else 0
    return libc.mount(b"tmpfs", os.fsencode(where), b"tmpfs", flags, f"size={size}".encode()) == 0


def can_mount(workdir: Path) -> bool:
    """Whether a forked child can mount a tmpfs here."""
    probe = workdir / "mount-probe"
    probe.mkdir(exist_ok=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - reports through its exit status
        os._exit(0 if mount_tmpfs(probe, 1 << 20) else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _scenario(cfg: dict[str, Any]) -> dict[str, Any]:
    """In the child: fill the disk as ``cfg`` says, build, and say what happened."""
    disk, spec, workers = Path(cfg["disk"]), cfg["spec"], cfg["workers"]
    if cfg["how"] == "tmpfs":
        disk.mkdir(parents=True, exist_ok=True)
        if not mount_tmpfs(disk, cfg["size"]):
            return {"setup": "mount failed"}
    old = disk / "cache"
    prebake.write_arrays(old, {"x": np.arange(4000, dtype=np.int64)})  # the cache a rebuild must not harm
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    if cfg["how"] == "rlimit":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["size"], resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    out = {"how": cfg["how"]}
    try:
        build_dataset(spec, old, workers=workers)
        out["error"] = None
    except prebake.PrebakeError as e:
        out.update(error=type(e).__name__, message=str(e))
    out["old_intact"] = {p.name: p.read_bytes() for p in old.iterdir()} == before and prebake.verify(old).ok
    out["left"] = sorted(p.name for p in disk.iterdir() if p.name not in ("cache", "cache.lock"))
    if cfg.get("then_room"):  # free space (a bigger tmpfs), then the same build again
        mount_tmpfs(disk, cfg["then_room"], remount=True)
        out["after"] = build_dataset(spec, old, workers=workers).action
        out["same"] = _same(old, Path(cfg["ref"]))
        out["left_after"] = sorted(p.name for p in disk.iterdir() if p.name not in ("cache", "cache.lock"))
    return out


def _same(got: Path, want: Path) -> bool:
    try:
        assert_same_cache(got, want)
    except AssertionError:
        return False
    return prebake.verify(got).ok


def _child(cfg: dict[str, Any]) -> None:
    os.setsid()
    try:
        result = _scenario(cfg)
    except BaseException as e:  # noqa: BLE001 - anything untyped is the finding; report it
        result = {"crash": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
    Path(cfg["report"]).write_text(json.dumps(result))
    os._exit(0)


def run_scenario(workdir: Path, name: str, **cfg: Any) -> tuple[int, dict[str, Any]]:
    import multiprocessing as mp

    report = workdir / f"{name}.json"
    report.unlink(missing_ok=True)
    cfg = {"disk": str(workdir / name), "report": str(report), **cfg}
    child = mp.get_context("fork").Process(target=_child, args=(cfg,))
    child.start()
    rc = join_forked(child, timeout=120)
    return rc, json.loads(report.read_text()) if report.exists() else {}


def disk_full(workdir: Path, trials: int) -> Row:
    """``trials`` full-disk builds, alternating one and two workers; with tmpfs also the late case."""
    row = Row("disk full: a clear error up front, old cache untouched, nothing left behind")
    spec = write_dataset(workdir)
    ref = workdir / "ref-full"
    if not ref.exists():
        build_dataset(spec, ref)
    how = "tmpfs" if can_mount(workdir) else "rlimit"
    row.notes["disk"] = "a tmpfs in a private mount namespace" if how == "tmpfs" else "RLIMIT_FSIZE"
    for t in range(trials):
        workers = (0, 2)[t % 2]
        late = how == "tmpfs" and t % 4 >= 2  # the rows fit, the commit's second copy does not
        size = int(IMAGE_BYTES * 1.5) if late else IMAGE_BYTES // 2
        shutil.rmtree(workdir / f"full-{t}", ignore_errors=True)
        rc, r = run_scenario(workdir, f"full-{t}", how=how, size=size, spec=spec, workers=workers,
                             then_room=4 * IMAGE_BYTES if late else None, ref=str(ref))
        where = f"trial {t}: {how} of {size:,} bytes, {workers} workers{', late' if late else ''}"
        message = r.get("message", "")
        clear = r.get("error") == "DiskFullError" and "bytes" in message and ("free" in message or "limit" in message)
        ok = rc == 0 and clear and r.get("old_intact")
        if late:
            ok = ok and ".partial" in message and r.get("after") == "resumed" and r.get("same") and not r["left_after"]
        else:
            ok = ok and not r.get("left")
        row.check(bool(ok), f"{where}: exit {rc}, {r}")
    return row
