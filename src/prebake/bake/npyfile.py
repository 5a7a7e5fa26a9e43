"""``.npy`` files written whole (offsets, shapes, shards): the bytes ``np.save`` writes, and a full disk
reported as the OSError it is, with its errno, so the build can say how to resume (bake/space.py)."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np


class _Writes:
    """A file object numpy does not take for a real file, so ``np.save`` writes through Python's
    ``write``: a full disk is then ENOSPC, not numpy's "N requested and M written" without an errno."""

    def __init__(self, f: BinaryIO):
        self.write = f.write


def save_npy(f: BinaryIO, arr: np.ndarray) -> None:
    """``np.save(f, arr)``, the same bytes, with a full disk reported as an OSError that has its errno."""
    np.save(_Writes(f), arr, allow_pickle=False)
