"""verify catches every corrupted byte, truncation, and bad label or float data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import prebake
from prebake.cache.format import sign_manifest
from prebake.cli import main

FILES = ["image.npy", "label.npy", "sig.values.npy", "sig.offsets.npy"]


@pytest.fixture
def cache_dir(tmp_path):
    rng = np.random.default_rng(0)
    prebake.write_arrays(tmp_path / "c", {
        "image": rng.integers(0, 256, (20, 3, 4, 4), dtype=np.uint8),
        "label": np.arange(20) % 4,
        "sig": [rng.standard_normal((i % 5, 2)).astype(np.float32) for i in range(20)],
    }, classes=["a", "b", "c", "d"])
    assert prebake.verify(tmp_path / "c").ok
    return tmp_path / "c"


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("where", ["header", "middle", "last"])
def test_a_flipped_byte_in_any_column_file_is_found(cache_dir, name, where):
    path = cache_dir / name
    data = bytearray(path.read_bytes())
    pos = {"header": 20, "middle": len(data) // 2 + 64, "last": len(data) - 1}[where]
    pos = min(pos, len(data) - 1)
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))
    report = prebake.verify(cache_dir)
    assert not report.ok
    assert any(name in p and "checksum" in p for p in report.problems), report.problems
    assert main(["verify", str(cache_dir), "-q"]) == 1


@pytest.mark.parametrize("name", FILES)
def test_a_truncated_file_is_found_and_refused_at_open(cache_dir, name):
    path = cache_dir / name
    size = path.stat().st_size
    os.truncate(path, size - 8)
    report = prebake.verify(cache_dir)
    assert any(name in p and f"{size - 8:,} bytes" in p for p in report.problems), report.problems
    with pytest.raises(prebake.CacheCorruptError, match=name):
        prebake.open(cache_dir)


def test_a_missing_file_is_found(cache_dir):
    (cache_dir / "label.npy").unlink()
    assert any("label.npy is missing" in p for p in prebake.verify(cache_dir).problems)


def test_labels_out_of_class_range_and_nan_are_problems(tmp_path):
    prebake.write_arrays(tmp_path / "c", {"label": np.array([0, 1, 5]), "x": np.array([1.0, np.nan, 2.0])},
                         classes=["a", "b"])
    problems = prebake.verify(tmp_path / "c").problems
    assert any("labels range 0..5, but there are 2 classes" in p for p in problems)
    assert any("x.npy: 1 rows contain NaN or Inf (first: row 1)" in p for p in problems)


def test_class_imbalance_and_empty_classes_are_warnings(tmp_path):
    prebake.write_arrays(tmp_path / "c", {"label": np.array([0] * 30 + [1] * 2)}, classes=["a", "b", "c"])
    report = prebake.verify(tmp_path / "c")
    assert report.ok and any("no items: 2 (c)" in w for w in report.warnings)


def test_an_edited_manifest_histogram_is_a_problem(cache_dir):
    m = json.loads((cache_dir / "manifest.json").read_text())
    m["stats"]["label_histogram"]["0"] += 1
    (cache_dir / "manifest.json").write_text(json.dumps(m))
    assert any("manifest checksum" in p for p in prebake.verify(cache_dir).problems)
    (cache_dir / "manifest.json").write_text(json.dumps(sign_manifest(m)))  # edited and re-signed
    assert any("histogram" in p for p in prebake.verify(cache_dir).problems)


def test_not_a_cache(tmp_path):
    report = prebake.verify(tmp_path)
    assert not report.ok and "manifest.json is missing" in report.problems[0]
