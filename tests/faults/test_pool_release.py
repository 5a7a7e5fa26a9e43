"""A fork pool's workers exit as soon as a build's last chunk is in (bake/pool.py: WorkerPool.release), while the
build commits; close() reaps them, and a build leaves no process behind."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import prebake
from prebake.bake.build import _init_worker
from prebake.bake.pool import WorkerPool
from prebake.synthetic import write_image_folder


def _square(x: int) -> int:
    return x * x


def test_release_ends_the_workers_without_waiting_and_close_reaps_them() -> None:
    pool = WorkerPool(2, initializer=_init_worker, initargs=(os.getpid(),))  # as a build's: SIGTERM ends them
    try:
        assert sorted(pool.imap_unordered(_square, range(6))) == [0, 1, 4, 9, 16, 25]
        pool.release()
        deadline = time.monotonic() + 10
        while any(w.process.is_alive() for w in pool.workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(w.process.is_alive() for w in pool.workers)
    finally:
        pool.close()
    assert [w.process.exitcode for w in pool.workers] == [-signal.SIGTERM] * 2
    pool.close()  # again: nothing left to do


def test_a_build_with_workers_leaves_no_process_behind(tmp_path) -> None:
    root = write_image_folder(tmp_path / "img", per_class=6, size=(16, 12))
    cache = prebake.build(root, tmp_path / "c", workers=2, chunk_rows=2, progress=False)
    assert len(cache) == 12 and not mp.active_children()
