"""Item 3 (stale caches reported "up to date") and item 15 (a touch forced a full rebuild)."""

from __future__ import annotations

import pytest

from benchmarks.trials.staleness import CASES


@pytest.mark.parametrize("case", list(CASES), ids=[f.__name__ for f in CASES.values()])
def test_a_changed_input_is_a_miss_with_its_reason_and_then_a_hit(tmp_path, case):
    ok, detail = CASES[case](tmp_path)
    assert ok, detail
