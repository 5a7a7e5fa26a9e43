"""examples/medical3d/segment.py: volumes of many extents with label maps, trained on balanced patches and
evaluated by grid tiles stitched back into whole volumes; its Dice per volume rises well above chance."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("nibabel")
from examples.medical3d.segment import main  # noqa: E402


@pytest.mark.slow
def test_a_tiny_run_learns_the_lesions_and_logs_dice_per_volume(tmp_path):
    assert main(["--out", str(tmp_path / "seg"), "--volumes", "8", "--epochs", "3", "--workers", "0"]) == 0
    with (tmp_path / "seg" / "dice.csv").open() as f:
        rows = list(csv.DictReader(f))
    val = sorted({int(r["item"]) for r in rows})
    assert len(val) == 2 and len(rows) == 3 * len(val)  # 8 volumes, a quarter held out: one row each per epoch
    shapes = {r["shape"] for r in rows}
    assert len(shapes) == 2 and all(40 <= int(d) <= 72 for s in shapes for d in s.split("x"))  # stitched whole
    last = [float(r["dice"]) for r in rows if r["epoch"] == "2"]
    first = [float(r["dice"]) for r in rows if r["epoch"] == "0"]
    assert min(last) > 0.5 and sum(last) > sum(first), (first, last)
