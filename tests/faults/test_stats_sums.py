"""A column's sum is exact for 8-bit integers of any size, layout and value, summed in 16-bit blocks first
(cache/stats.py: _sum)."""

from __future__ import annotations

import numpy as np

from prebake.cache.stats import chunk_stats


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


def test_8_bit_sums_of_views_are_exact() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (3, 801, 607), dtype=np.uint8)
    for view in (image, image[:, ::2, 1:], image.transpose(2, 0, 1), image[1:, 3:700, 5:9]):
        assert chunk_stats(view)[2] == _exact(view)
    signed = rng.integers(-128, 128, (9000, 3), dtype=np.int8)[::3]
    assert chunk_stats(signed)[2] == _exact(signed)
