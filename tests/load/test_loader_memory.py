"""DataLoader workers over prebake.open share the page cache; they do not copy the dataset.

Each worker reads its own memory from /proc/self/smaps_rollup while it works. A
memory-mapped column shows up as file-backed pages (page cache, shared by every
process); a copy shows up as anonymous memory. So the bound is on the growth of
each worker's anonymous memory (USS that is not file-backed) while it reads the
whole ~240 MB cache, and a control dataset that does copy must blow that bound,
which shows the measurement can see a copy.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch.utils.data

import prebake

ROWS, ROW_BYTES = 80_000, 3 * 32 * 32  # 246 MB of uint8 images
BATCH = 2_000
ROLLUP = Path("/proc/self/smaps_rollup")
pytestmark = pytest.mark.skipif(not ROLLUP.exists(), reason="needs Linux /proc/self/smaps_rollup")


def _memory_kb() -> dict[str, int]:
    fields = {}
    for line in ROLLUP.read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return {"anon": fields["Anonymous"], "pss": fields["Pss"], "pss_file": fields.get("Pss_File", 0)}


class _Probe(torch.utils.data.Dataset):
    """Reads a batch of rows and returns (pid, bytes summed, this process's memory)."""

    def __init__(self, cache: prebake.Cache, copy: bool = False):
        self.cache, self.copy = cache, copy
        self.held: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.cache)

    def __getitems__(self, idx: list[int]):
        before = _memory_kb()
        image = self.cache.column("image")
        if self.copy and self.held is None:
            self.held = np.array(image)  # what a dataset that loads its data into RAM per worker does
        rows = np.asarray(image[np.sort(idx)])
        return os.getpid(), int(rows.sum(dtype=np.int64)), (before, _memory_kb())


def _first(batch):
    return batch


def _per_worker(dataset: _Probe) -> dict[int, list[tuple[dict[str, int], dict[str, int]]]]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=2, collate_fn=_first,
                                         multiprocessing_context="fork")
    seen: dict[int, list[tuple[dict[str, int], dict[str, int]]]] = {}
    total = 0
    for pid, s, mem in loader:
        seen.setdefault(pid, []).append(mem)
        total += s
    assert total == int(np.load(dataset.cache.path / "image.npy", mmap_mode="r").sum(dtype=np.int64))
    return seen


def _growth_mb(mems: list[tuple[dict[str, int], dict[str, int]]], key: str) -> float:
    """From before the worker's first batch to the highest reading after any batch."""
    return (max(after[key] for _, after in mems) - mems[0][0][key]) / 1024


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (ROWS, ROW_BYTES), dtype=np.uint8)
    return prebake.write_arrays(tmp_path_factory.mktemp("big") / "c", {"image": image})


def test_workers_do_not_copy_the_cache(big):
    size_mb = ROWS * ROW_BYTES / 2**20
    seen = _per_worker(_Probe(big))
    assert len(seen) == 2
    for pid, mems in seen.items():
        anon = _growth_mb(mems, "anon")
        # Each worker reads half the cache (123 MB) through the map; its private, anonymous memory
        # grows only by batch buffers and allocator slack.
        assert anon < 0.1 * size_mb, \
            f"worker {pid} anonymous memory grew {anon:.0f} MB reading a {size_mb:.0f} MB cache"
        assert mems[-1][1]["pss_file"] > mems[0][0]["pss_file"]  # the reads did go through the shared mapping


def test_the_measurement_sees_a_copy(big):
    size_mb = ROWS * ROW_BYTES / 2**20
    seen = _per_worker(_Probe(big, copy=True))
    for pid, mems in seen.items():
        assert _growth_mb(mems, "anon") > 0.9 * size_mb, f"worker {pid} copied the cache but the test missed it"


def test_spawn_workers_receive_a_path_not_the_data(big):
    np.asarray(big.column("image")[:10])  # open the maps; they must not travel
    assert len(pickle.dumps(big)) < 16_384
