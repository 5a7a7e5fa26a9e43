"""Items the workers write straight to their place in the column (bake/placed.py) commit the bytes a rewrite would.

Each trial bakes random mixed items (an image-like column of several sizes, sometimes one item of a wider dtype,
a fixed-shape column of two dtypes, strings of growing width, sometimes planted bad items) from a source that
guesses each item's size of the image-like column: right for every row, or wrong for a few (one element more or
fewer, or none); in random chunk sizes, with 2 workers, past the page cache or through it. Items of a few bytes
put many rows, and the edges of both workers' spans, in one disk block. Every value must equal the item cast to
the column's dtype, every values file the bytes ``np.save`` writes for the items in row order, every checksum
that of its file's bytes; no placed or stream file may be left in the cache; and when every guess held and no
item was skipped, the commit must have taken the placed file without reading it back.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.bake import rewrite
from prebake.sources.dataset import DatasetSource

from . import Row
from .mixed_writes import _check_commit
from .schema import Items


class Guessed(DatasetSource):
    """Items whose ``x`` sizes the source guesses (:meth:`Source.predicted_sizes`)."""

    def __init__(self, items: list[Any], guesses: np.ndarray, tag: str):
        super().__init__(Items(items, np.arange(len(items)), tag), name=tag)
        self.guesses = guesses

    def predicted_sizes(self, column: str) -> np.ndarray | None:
        return self.guesses if column == "x" else None


def make_items(rng: np.random.Generator, clean: bool) -> tuple[list[Any], bool]:
    """Random mixed items (None: a planted bad one; none when ``clean``), and whether one is of a wider dtype."""
    n = int(rng.integers(6, 40))
    top = int(rng.choice([4, 40, 90]))  # a few bytes an item (many in one block), or spans of whole blocks
    sizes = [(int(rng.integers(1, top)), int(rng.integers(1, top))) for _ in range(int(rng.integers(2, 5)))]
    wide = not clean and rng.random() < 0.2
    items: list[Any] = []
    for k in range(n):
        h, w = sizes[int(rng.integers(len(sizes)))]
        x = rng.integers(0, 200, (2, h, w)).astype("u2" if wide and k == n // 2 else "u1")
        y = rng.integers(0, 100, (3,)).astype(rng.choice(["i2", "i2", "u1"]))
        items.append({"x": x, "y": y, "s": "s" * int(rng.integers(0, k + 2)), "label": k % 3, "id": k})
    if not clean and rng.random() < 0.5:
        for k in rng.choice(n, size=int(rng.integers(1, 3)), replace=False):
            items[int(k)] = None
    return items, wide


def guesses(rng: np.random.Generator, items: list[Any], wrong: bool) -> np.ndarray:
    """Each item's ``x`` element count (a bad item's: any), a few of them missed when ``wrong``."""
    out = np.array([it["x"].size if it is not None else int(rng.integers(0, 50)) for it in items], np.int64)
    if wrong:
        for k in rng.choice(len(out), size=int(rng.integers(1, 3)), replace=False):
            out[k] = max(0, int(out[k]) + int(rng.choice([-1, 1]))) if rng.random() < 0.7 else 0
    return out


@contextmanager
def counting_read_backs() -> Iterator[list[Path]]:
    """The files the commit reads back to checksum them, while in the block."""
    reads: list[Path] = []
    read = rewrite.read_checksum

    def counted(file: Path) -> str:
        reads.append(file)
        return read(file)

    rewrite.read_checksum = counted
    try:
        yield reads
    finally:
        rewrite.read_checksum = read


def trial_placed(work_dir: Path, trials: int, seed: Any = 0) -> Row:
    row = Row("mixed items placed by 2 workers at their guessed offsets: committed bytes exact, placed file taken "
              "as is only when every guess held")
    rng = np.random.default_rng(seed)
    log = logging.getLogger("prebake")
    level, direct = log.level, os.environ.get("PREBAKE_DIRECT_IO")
    log.setLevel(logging.CRITICAL)  # trials skip their planted bad items
    row.notes = {"taken as is": 0, "written again": 0}
    try:
        for t in range(trials):
            tag = f"placed-{seed}-{t}"
            clean, wrong = rng.random() < 0.5, rng.random() < 0.3
            items, wide = make_items(rng, clean)
            guess = guesses(rng, items, wrong and not clean)
            os.environ["PREBAKE_DIRECT_IO"] = str(rng.choice(["1", "1", "0"]))
            out = Path(work_dir) / f"t{t}" / "c"
            with counting_read_backs() as reads:
                cache = prebake.build(Guessed(items, guess, tag), out, workers=2, chunk_rows=int(rng.integers(1, 7)),
                                      progress=False)
            _check_commit(row, cache, items, tag)
            left = sorted(p.name for p in out.rglob("*") if ".placed." in p.name or ".stream.bin" in p.name)
            row.check(not left, f"{tag}: build files left in the cache: {left}")
            laid_out = len(set(guess.tolist())) > 1
            if clean and laid_out:
                took = not any(p.name.startswith("x.") for p in reads)
                row.check(took, f"{tag}: every guess held and nothing was skipped, but the commit read x back")
            row.notes["taken as is" if clean and laid_out else "written again"] += 1
            shutil.rmtree(out.parent, ignore_errors=True)
    finally:
        log.setLevel(level)
        if direct is None:
            os.environ.pop("PREBAKE_DIRECT_IO", None)
        else:
            os.environ["PREBAKE_DIRECT_IO"] = direct
    return row
