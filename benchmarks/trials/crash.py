"""Helpers for test_crash.py and test_staleness.py, and a script for fresh-interpreter builds.

A killed build runs in a real child process: either forked from the test process
(:func:`run_forked`, cheap: torch is already imported) or started as a fresh
interpreter (``python benchmarks/trials/crash.py '<json config>'``, :func:`script_cmd`).
Either way the child installs its kill hook (SIGKILL at a chosen point) *in the child
only* and runs ``prebake.bake.build.build_all``.

Config keys: ``spec`` (dataset ``file.py:make``), ``out``, ``workers``, ``transform``
(``file.py:fn``), ``kill`` (``progress:FRACTION`` or ``<function>:entry|mid|rmtree|exit`` for
``seal`` (``PartialCache.seal``) or ``_compact``, ``_stitch``, ``publish``, ``swap_into_place``
(functions of ``prebake.bake.commit``), ``rewrite_columns`` or ``write_column`` (of
``prebake.bake.rewrite``: the commit-time rewrite of columns whose items differ)), ``env``
(variables set in the child; ``PREBAKE_TEST_BLOCK`` holds one item, see
:func:`kill_blocked_worker`), ``checkpoint0`` (journal every finished chunk; default
on), ``no_exchange`` (make swap_into_place take its rename-aside fallback),
``report_to`` (a file for the JSON result: the action and reasons, or the error, in which
case the child exits with status 3), ``options`` (more BuildOptions fields).
"""

from __future__ import annotations

import faulthandler
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

CHUNK_ROWS = 64
NUM_ITEMS = 3000

# A numpy-backed map-style dataset: every item is derived from its index. Items with
# i % 97 == 13 raise (bad items, so the commit compacts the fixed columns); "sig" is a
# ragged int16 column. PREBAKE_TEST_DELAY slows every item; PREBAKE_TEST_BLOCK="i:FLAG"
# makes item i write FLAG.pid and wait until FLAG exists. PREBAKE_TEST_MIXED=1 makes the
# items unlike each other, so the commit rewrites columns (bake/rewrite.py): every 5th
# image is 3x16x20 (a ragged N-D column), every 7th sig int32 (promoted), and a "name"
# column of growing length (widened).
DATASET_SRC = '''
import os
import time

import numpy as np

N = 3000
BAD_EVERY = 97


class Items:
    classes = [f"c{k}" for k in range(10)]

    def __init__(self, n=N):
        self.n = n
        self.delay = float(os.environ.get("PREBAKE_TEST_DELAY", "0"))

    def __len__(self):
        return self.n

    def fingerprint(self):
        mixed = ", mixed" if os.environ.get("PREBAKE_TEST_MIXED") else ""
        return f"index-derived items, n={self.n}{mixed}"  # no files: the code is the whole identity

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        block = os.environ.get("PREBAKE_TEST_BLOCK")
        if block and i == int(block.split(":", 1)[0]):
            flag = block.split(":", 1)[1]
            with open(flag + ".pid", "w") as f:
                f.write(str(os.getpid()))
            deadline = time.monotonic() + 60
            while not os.path.exists(flag) and time.monotonic() < deadline:
                time.sleep(0.01)
        if i % BAD_EVERY == 13:
            raise ValueError(f"item {i} is broken on purpose")
        image = ((np.arange(3 * 16 * 16, dtype=np.int64) * (i + 1) + 7 * i) % 251).astype(np.uint8)
        sig = (np.arange(1 + i % 5, dtype=np.int64) * 1000 - i).astype(np.int16)
        if not os.environ.get("PREBAKE_TEST_MIXED"):
            return {"image": image.reshape(3, 16, 16), "label": i % 10, "sig": sig}
        if i % 5 == 4:
            image = ((np.arange(3 * 16 * 20, dtype=np.int64) * (i + 1)) % 251).astype(np.uint8)
        sig = sig.astype(np.int32) * 1000 if i % 7 == 3 else sig
        return {"image": image.reshape(3, 16, -1), "label": i % 10, "sig": sig, "name": "n" * (1 + i % 40)}


def make():
    return Items()
'''

TRANSFORM_SRC = '''
def invert(item):
    item["image"] = 255 - item["image"]
    item["sig"] = item["sig"] * 2
    return item
'''


def write_dataset(d: Path) -> str:
    (d / "ds.py").write_text(DATASET_SRC)
    return f"{d / 'ds.py'}:make"


def write_transform(d: Path) -> str:
    (d / "tf.py").write_text(TRANSFORM_SRC)
    return f"{d / 'tf.py'}:invert"


def build_options(workers: int = 0, transform: str | None = None, **kw: Any) -> Any:
    from prebake.bake.build import BuildOptions
    from prebake.identity.plugins import load_object
    from prebake.steps import compile_steps

    steps = compile_steps([load_object(transform)] if transform else [])
    return BuildOptions(pipeline=steps, workers=workers, chunk_rows=CHUNK_ROWS, ragged=("sig",), **kw)


def build_dataset(spec: str, out: str | os.PathLike[str], progress: Any = None, **kw: Any) -> Any:
    """An in-process build of the test dataset; returns the one BuildReport."""
    from prebake.bake.build import build_all
    from prebake.sources import DatasetSource

    [report] = build_all({"": DatasetSource.from_spec(spec)}, out, build_options(**kw), progress)
    return report


# -- the child side ------------------------------------------------------------------------------


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def install_kill(kill: str | None) -> Any:
    """Patch prebake (in this process only) to SIGKILL itself at ``kill``; returns a progress fn or None."""
    if not kill:
        return None
    target, _, when = kill.partition(":")
    if target == "progress":
        frac = float(when)

        def progress(split: str, done: int, total: int) -> None:
            if done >= frac * total:
                _die()

        return progress
    import prebake.bake.commit as W
    import prebake.bake.partial as P
    import prebake.bake.rewrite as R

    owner: Any = P.PartialCache if target == "seal" else R if target in ("rewrite_columns", "write_column") else W
    orig = getattr(owner, target)
    assert when in ("entry", "mid", "rmtree", "exit"), kill

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when == "entry":
            _die()
        if when == "mid":  # die just after the first rename (or rename-exchange) this function makes
            real_replace = os.replace

            def replace(*a: Any, **k: Any) -> None:
                real_replace(*a, **k)
                _die()

            os.replace = replace  # type: ignore[assignment]
            real_exchange = getattr(W, "_exchange", None)
            if real_exchange is not None:

                def exchange(*a: Any, **k: Any) -> Any:
                    swapped = real_exchange(*a, **k)
                    if swapped:
                        _die()
                    return swapped

                W._exchange = exchange
        if when == "rmtree":  # die while the old cache is being deleted, once its first file is gone
            real_unlink = os.unlink

            def unlink(path: Any, *a: Any, **k: Any) -> None:
                real_unlink(path, *a, **k)
                if Path(path).parent.name.endswith(".replaced"):
                    _die()

            os.unlink = unlink  # type: ignore[assignment]
        result = orig(*args, **kwargs)
        if when == "exit":
            _die()
        return result

    setattr(owner, target, wrapper)
    return None


def child_main(cfg: dict[str, Any]) -> None:
    for k, v in cfg.get("env", {}).items():
        os.environ[k] = v
    import prebake.bake.build  # noqa: F401

    B = sys.modules["prebake.bake.build"]
    if cfg.get("checkpoint0", True):
        B._CHECKPOINT_S = 0.0  # journal every finished chunk, so a kill leaves resumable work
    if cfg.get("no_exchange"):  # as on a filesystem without renameat2(RENAME_EXCHANGE)
        import prebake.bake.commit as W

        W._exchange = lambda a, b: False
    progress = install_kill(cfg.get("kill"))
    from prebake.errors import PrebakeError

    try:
        report = build_dataset(cfg["spec"], cfg["out"], progress, workers=cfg.get("workers", 0),
                               transform=cfg.get("transform"), lock_timeout=cfg.get("lock_timeout"),
                               **cfg.get("options", {}))
    except PrebakeError as e:
        result = {"error": type(e).__name__, "message": str(e)}
        if cfg.get("report_to"):
            Path(cfg["report_to"]).write_text(json.dumps(result))
        os._exit(3)
    result = {"action": report.action, "reasons": report.reasons, "reused": report.reused,
              "warnings": report.warnings}
    if cfg.get("report_to"):
        Path(cfg["report_to"]).write_text(json.dumps(result))
    else:
        print(json.dumps(result))


def _forked_entry(cfg: dict[str, Any]) -> None:
    os.setsid()  # its own process group, so orphaned pool workers can be found and reaped
    faulthandler.disable()  # a worker killed with SIGBUS or SIGSEGV on purpose needs no stack dump
    child_main(cfg)


# -- the parent side -----------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(d))
    return pids


def reap_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGKILL what is left of the process group of a child we started (its orphaned workers)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


def start_forked(cfg: dict[str, Any]) -> Any:
    p = mp.get_context("fork").Process(target=_forked_entry, args=(cfg,))
    p.start()
    return p


def join_forked(p: Any, timeout: float = 60.0, reap: bool = True) -> int:
    # Poll (waitpid) rather than p.join(): join waits on a pipe that orphaned pool workers
    # inherited, so it would also wait for them.
    deadline = time.monotonic() + timeout
    while p.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if p.exitcode is None:
        p.kill()
        p.join()
        reap_group(p.pid)
        raise AssertionError(f"build child did not finish in {timeout} s")
    if reap:
        reap_group(p.pid)
    return p.exitcode


def kill_blocked_worker(flag: Path, sig: int, timeout: float = 60.0) -> int:
    """Wait until a worker is held inside the ``PREBAKE_TEST_BLOCK`` item (mid-chunk), send it ``sig``; its pid."""
    pid_file = Path(f"{flag}.pid")
    deadline = time.monotonic() + timeout
    while not pid_file.exists() or not pid_file.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker reached the blocking item in {timeout} s")
        time.sleep(0.005)
    pid = int(pid_file.read_text())
    os.kill(pid, sig)
    return pid


def run_forked(cfg: dict[str, Any], timeout: float = 60.0) -> int:
    """Run a build in a forked child; its exit code (-9 when it SIGKILLed itself)."""
    return join_forked(start_forked(cfg), timeout)


def can_exchange(d: Path) -> bool:
    """Whether renameat2(RENAME_EXCHANGE) works in directory ``d`` (Linux, most filesystems)."""
    import ctypes

    a, b = d / ".xchg-a", d / ".xchg-b"
    a.mkdir()
    b.mkdir()
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        return renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0
    except (OSError, AttributeError):
        return False
    finally:
        a.rmdir()
        b.rmdir()


def script_cmd(cfg: dict[str, Any]) -> list[str]:
    """A fresh-interpreter command that runs :func:`child_main` with ``cfg``."""
    return [sys.executable, str(Path(__file__).resolve()), json.dumps(cfg)]


# -- comparing caches ----------------------------------------------------------------------------


def snapshot(path: str | os.PathLike[str]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file's bytes (manifest.json apart) and the manifest without "created" (nor its
    checksum, which covers "created").

    build.log is left out: it says when the build ran and whether it resumed, by design."""
    root = Path(path)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    files.pop("build.log", None)
    manifest = json.loads(files.pop("manifest.json"))
    manifest.pop("created")
    manifest.pop("manifest_xxh3_64")
    return files, manifest


def assert_same_cache(got: str | os.PathLike[str], want: str | os.PathLike[str]) -> None:
    got_files, got_manifest = snapshot(got)
    want_files, want_manifest = snapshot(want)
    assert sorted(got_files) == sorted(want_files)
    for name, data in want_files.items():
        assert got_files[name] == data, f"{name} differs from the uninterrupted build"
    assert got_manifest == want_manifest


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
