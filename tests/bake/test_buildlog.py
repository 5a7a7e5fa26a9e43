"""Each committed build leaves OUT/build.log: what it did and why (the 3-D medical workload's preprocessing.log)."""

from __future__ import annotations

import prebake
from prebake.steps import Resize
from prebake.synthetic import write_csv_table


def test_build_log_says_what_and_why(tmp_path):
    csv = write_csv_table(tmp_path, n=6, bad_rows=True)
    prebake.build(csv, tmp_path / "c", [Resize(16)], workers=0, progress=False)
    text = (tmp_path / "c" / "build.log").read_text()
    assert ": built " in text and "source: csv" in text and "transform: Resize(size=16" in text
    assert "items: 6 committed (6 baked, 0 copied from the previous cache), 3 skipped" in text
    assert "skipped: row 8: scans/missing.png: file not found" in text
    before = text
    prebake.build(csv, tmp_path / "c", [Resize(16)], workers=0, progress=False)  # up to date: untouched
    assert (tmp_path / "c" / "build.log").read_text() == before
    prebake.build(csv, tmp_path / "c", [Resize(20)], workers=0, progress=False)
    text = (tmp_path / "c" / "build.log").read_text()
    assert ": rebuilt " in text and "because: transform Resize: size=16" in text
    assert prebake.verify(tmp_path / "c").ok
