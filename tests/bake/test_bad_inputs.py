"""Bad items are skipped with a clear reason; every other item is identical to a clean build."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import prebake
from prebake.steps import CenterCrop, Resize
from prebake.synthetic import write_bad_images, write_csv_table, write_image_folder


def _reasons(cache) -> dict[str, str]:
    return {s["key"]: s["reason"] for s in cache.manifest["skipped"]}


def _same_items(a, b):
    assert len(a) == len(b)
    for col in a.columns:
        assert np.array_equal(np.asarray(a.column(col)), np.asarray(b.column(col))), col


def test_bad_image_files_are_skipped_and_the_rest_is_untouched(tmp_path):
    clean = write_image_folder(tmp_path / "clean", classes=("a", "b"), per_class=3, size=(20, 20))
    dirty = tmp_path / "dirty"
    shutil.copytree(clean, dirty)
    expected = write_bad_images(dirty / "a")  # truncated jpg/png/webp, garbage, empty, text, bomb
    os.symlink(dirty / "a" / "gone.png", dirty / "b" / "missing.png")  # listed, but the file is not there
    expected["missing.png"] = "file not found"
    assert len(expected) >= 8

    good = prebake.build(clean, tmp_path / "c1", [Resize(16)], workers=0)
    bad = prebake.build(dirty, tmp_path / "c2", [Resize(16)], workers=2, chunk_rows=3)
    reasons = _reasons(bad)
    assert len(reasons) == len(expected)
    for name, want in expected.items():
        key = next(k for k in reasons if k.endswith(name))
        assert want in reasons[key], (name, reasons[key])
    _same_items(good, bad)
    assert prebake.verify(tmp_path / "c2").ok


def test_bad_csv_rows_are_skipped(tmp_path):
    clean_csv = write_csv_table(tmp_path / "clean", n=10)
    dirty_csv = write_csv_table(tmp_path / "dirty", n=10, bad_rows=True)  # missing file, empty path, short row
    with open(dirty_csv, "a") as f:
        f.write("scans,benign\n")  # a directory, not a file
        f.write("scans/0001.png,benign,extra\n")  # too many fields
    good = prebake.build(clean_csv, tmp_path / "c1", workers=0)
    bad = prebake.build(dirty_csv, tmp_path / "c2", workers=0)
    keys, reasons = list(_reasons(bad)), list(_reasons(bad).values())
    assert len(reasons) == 5
    assert any("file not found" in r for r in reasons)
    assert any("empty path" in r for r in reasons)
    assert any("has 1 fields" in r for r in reasons)
    assert any("directory" in r for r in reasons)
    assert any("has 3 fields" in r for r in reasons)
    assert all(k.startswith("row ") for k in keys)  # each names its CSV line
    _same_items(good, bad)


class _Items:
    """A dataset whose items 3..8 are each unusual in a different way (4, 5, 6 and 8 are bad; 3 and 7 only
    differ from item 0, and are kept)."""

    def __init__(self, n=12):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = np.full((2, 4), i, dtype=np.float32)
        if i == 3:
            x = np.zeros((2, 5), np.float32)  # another shape: kept at its own
        if i == 4:
            x[0, 0] = np.nan  # NaN
        if i == 5:
            raise OSError(f"cannot read record {i}")  # the dataset itself fails
        if i == 7:
            x = x.astype(np.float64)  # another dtype: the column becomes float64
        return {"x": x, "label": i}


def _fail_on_nine(item):
    if item.get("label") == 9:
        raise ValueError("transform refused item 9")
    return item


def test_bad_dataset_items_are_skipped(tmp_path):
    cache = prebake.build(_Items(), tmp_path / "c", [_fail_on_nine], workers=0)
    reasons = {int(k): r for k, r in _reasons(cache).items()}
    assert sorted(reasons) == [4, 5, 9]  # unlike item 0 is not bad: 3 and 7 are kept
    assert "NaN" in reasons[4]
    assert "OSError: cannot read record 5" in reasons[5]
    assert "ValueError: transform refused item 9" in reasons[9]
    assert cache.targets.tolist() == [0, 1, 2, 3, 6, 7, 8, 10, 11]
    assert cache.manifest["columns"]["x"]["dtype"] == "<f8" and cache.manifest["columns"]["x"]["shape"] == [2, None]
    assert cache[3]["x"].shape == (2, 5) and not cache[3]["x"].any()
    assert [float(cache[k]["x"][0, 0]) for k in (0, 1, 2, 4, 5, 6, 7, 8)] == [0, 1, 2, 6, 7, 8, 10, 11]


def test_crop_larger_than_the_image_is_a_bad_item(tmp_path):
    root = write_image_folder(tmp_path / "imgs", classes=("a",), per_class=2, size=(20, 20))
    write_image_folder(tmp_path / "small", classes=("a",), per_class=1, size=(8, 8))
    shutil.copy(tmp_path / "small" / "a" / "a_000.png", root / "a" / "tiny.png")
    cache = prebake.build(root, tmp_path / "c", [CenterCrop(16)], workers=0)
    assert len(cache) == 2
    assert "smaller than the 16x16 crop" in _reasons(cache)["a/tiny.png"]


def test_strict_fails_on_the_first_bad_item_and_names_the_file(tmp_path):
    root = write_image_folder(tmp_path / "imgs", classes=("a",), per_class=2)
    (root / "a" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(prebake.StrictModeError, match="zz_broken.jpg"):
        prebake.build(root, tmp_path / "c", strict=True, workers=0)
    with pytest.raises(prebake.CacheNotFoundError):
        prebake.open(tmp_path / "c")


def test_a_source_with_no_good_item_says_why(tmp_path):
    root = tmp_path / "imgs"
    write_bad_images(root / "a")
    with pytest.raises(prebake.SourceError, match="no item of the source could be baked"):
        prebake.build(root, tmp_path / "c", workers=0)
