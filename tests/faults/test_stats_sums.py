"""A column's sum is exact for 8-bit integers of any size, layout and value, summed in 16-bit blocks first
(cache/stats.py: _sum)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import prebake
from benchmarks.trials.schema import Items
from prebake.cache.stats import chunk_stats


def _build(items: list[Any], out: Path, **kw: Any) -> Any:
    return prebake.build(Items(items, np.arange(len(items)), "values"), out, progress=False, **kw)


def _exact(values: np.ndarray) -> int:
    return int(values.astype(np.int64).sum())


def test_8_bit_sums_are_exact_at_every_size_and_extreme() -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.int8):
        info = np.iinfo(dtype)
        for n in (0, 1, 255, 256, 257, 4095, 4096, 4097, 65_536, 65_537, 3 * 451 * 449):
            for values in (rng.integers(info.min, info.max + 1, n).astype(dtype), np.full(n, info.min, dtype),
                           np.full(n, info.max, dtype)):
                got = chunk_stats(values)
                assert (got is None) == (n == 0)
                if got is not None:
                    assert got[2] == _exact(values) and got[:2] == [int(values.min()), int(values.max())], (dtype, n)
                    held = chunk_stats(values, bounds_held=True)
                    assert held == [int(info.min), int(info.max), got[2], got[3]], (dtype, n)


def test_8_bit_sums_of_views_are_exact() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (3, 801, 607), dtype=np.uint8)
    for view in (image, image[:, ::2, 1:], image.transpose(2, 0, 1), image[1:, 3:700, 5:9]):
        assert chunk_stats(view)[2] == _exact(view)
    signed = rng.integers(-128, 128, (9000, 3), dtype=np.int8)[::3]
    assert chunk_stats(signed)[2] == _exact(signed)


@pytest.mark.parametrize("workers, chunk_rows", [(0, None), (0, 2), (2, 3)])
def test_a_column_whose_range_spans_its_dtype_keeps_exact_statistics(tmp_path, workers, chunk_rows) -> None:
    """Once a chunk's values of an integer dtype reach both of its bounds, its later items of that dtype are only
    summed (chunk_stats's bounds_held): the statistics stay those of every value, in any order of the items."""
    rng = np.random.default_rng(2)
    full = np.arange(256, dtype=np.uint8).reshape(16, 16)
    signed = np.arange(-128, 128, dtype=np.int8).reshape(8, 32)
    values = [rng.integers(10, 21, (5, 7)).astype(np.uint8), full, rng.integers(100, 111, (9, 4)).astype(np.uint8),
              signed, rng.integers(-3, 4, (2, 3)).astype(np.int8), np.full((3, 3), 7, np.uint8),
              np.array([[300, 2]], dtype=">u2"), rng.integers(0, 256, (6, 11)).astype(np.uint8)]
    for order in (range(len(values)), reversed(range(len(values)))):
        items = [{"x": values[k], "id": k} for k in order]
        out = tmp_path / f"c{workers}-{chunk_rows}-{items[0]['id']}"
        cache = _build(items, out, workers=workers, chunk_rows=chunk_rows)
        assert len(cache) == len(values) and cache.manifest["skipped"] == []
        got = cache.manifest["stats"]["columns"]["x"]
        every = np.concatenate([v.astype(np.int64).reshape(-1) for v in values])
        assert got["min"] == int(every.min()) == -128 and got["max"] == int(every.max()) == 300
        assert got["mean"] == pytest.approx(int(every.sum()) / every.size, rel=1e-15)
        assert cache.manifest["columns"]["x"]["dtype"] == "<i4"
        for i in range(len(cache)):
            assert np.array_equal(cache[i]["x"], values[int(cache[i]["id"])])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_range_short_of_its_dtype_is_the_values_own(tmp_path, workers) -> None:
    """Items of a dtype whose values never reach both bounds keep their own [min, max], chunk by chunk."""
    values = [np.full((2, k + 1), 10 + k, np.uint8) for k in range(6)] + [np.array([[1, 254]], np.uint8)]
    items = [{"x": v, "id": k} for k, v in enumerate(values)]
    cache = _build(items, tmp_path / "c", workers=workers, chunk_rows=4)
    got = cache.manifest["stats"]["columns"]["x"]
    assert (got["min"], got["max"]) == (1, 254)
    cache = _build(items[:6], tmp_path / "d", workers=workers, chunk_rows=4)
    got = cache.manifest["stats"]["columns"]["x"]
    assert (got["min"], got["max"]) == (10, 15) and cache.manifest["columns"]["x"]["dtype"] == "|u1"
