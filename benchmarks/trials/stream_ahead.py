"""Columns written ahead during the build (bake/stream.py) commit the bytes a rewrite at commit would.

Each trial bakes random mixed items (an image-like column of several sizes and one or two dtypes, a fixed-shape
column of two dtypes, strings of growing width, planted bad items) from scratch, in random chunk sizes, with 1 or
2 workers: the build streams the spilling columns while it bakes and the commit takes a stream only when it holds
exactly the column's values (a dtype promoted at commit makes it fall back to the rewrite; a build in one process
does not stream). Every value must equal the item cast to the column's dtype, every values file the bytes
``np.save`` writes for the items in row order, every checksum that of its file's bytes, and no stream file may be
left in the cache.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import prebake

from . import Row
from .mixed_writes import _check_commit, _make
from .schema import Items


def stream_ahead(work_dir: Path, trials: int, seed: Any = 0) -> Row:
    row = Row("mixed columns written ahead during the build: committed bytes exact, streams only when exact")
    rng = np.random.default_rng(seed)
    log = logging.getLogger("prebake")
    level = log.level
    log.setLevel(logging.CRITICAL)  # every trial skips its planted bad items
    try:
        for t in range(trials):
            tag = f"stream-ahead-{seed}-{t}"
            items, _ = _make(rng)
            out = Path(work_dir) / f"t{t}" / "c"
            cache = prebake.build(Items(items, np.arange(len(items)), tag), out, workers=int(rng.choice([1, 2, 2])),
                                  chunk_rows=int(rng.integers(1, 6)), progress=False)
            _check_commit(row, cache, items, tag)
            left = sorted(p.name for p in out.rglob("*.stream.bin*"))
            row.check(not left, f"{tag}: stream files left in the cache: {left}")
            shutil.rmtree(out.parent, ignore_errors=True)
    finally:
        log.setLevel(level)
    return row
