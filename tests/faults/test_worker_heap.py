"""A build worker keeps freed memory for the next item (bake/pool.py keep_heap): items that grow one after another
reuse the pages of those before, and a worker leaves malloc alone where the user tuned it."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prebake.bake.pool import WorkerPool

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")

_MB = 1 << 20


def _pages_touched(_: object) -> int:
    """In a worker: items of 2 to 30 MB, each larger than the last (photos of every size meet this often), made,
    filled and freed; the new pages that cost, in 4 KB pages."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for size in range(2 * _MB, 30 * _MB, 700_000):
        item = np.ones(size, np.uint8)
        del item
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def in_worker() -> int:
    pool = WorkerPool(1, initializer=lambda: None)
    try:
        [got] = list(pool.imap_unordered(_pages_touched, [None]))
    finally:
        pool.close()
    return int(got)


def _fresh(**env: str) -> int:
    """:func:`in_worker` from a fresh interpreter: a worker forked from this one would inherit its heap."""
    code = "from tests.faults.test_worker_heap import in_worker; print(in_worker())"
    tuned = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    clean = {k: v for k, v in os.environ.items() if k not in tuned}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env={**clean, **env},
                         capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.split()[-1])


def test_a_worker_reuses_its_heap_for_items_of_growing_size() -> None:
    largest = 30 * _MB // 4096
    kept = _fresh()
    assert kept < 2 * largest  # 7,600 pages: the largest item's; before: 22,500, the items' pages mapped anew
    assert _fresh(MALLOC_TRIM_THRESHOLD_="131072") > 2 * kept  # the user's own setting: left as it is
