"""``prebake export CACHE OUT --format hf``: a Hugging Face datasets directory whose values equal the cache's,
written whole or not at all, and never over anything that is already there."""

from __future__ import annotations

import numpy as np
import pytest

import prebake
from prebake.cli import main
from prebake.synthetic import write_image_folder

datasets = pytest.importorskip("datasets", reason="the hf extra is not installed: pip install 'prebake[hf]'")


def test_the_exported_directory_loads_with_datasets_and_equals_the_cache(tmp_path, capsys):
    cache = prebake.build(write_image_folder(tmp_path / "photos", per_class=3, size=(9, 7)), tmp_path / "c",
                          workers=0, progress=False)
    assert main(["export", str(tmp_path / "c"), str(tmp_path / "hf"), "--format", "hf"]) == 0
    assert "datasets.load_from_disk" in capsys.readouterr().out
    ds = datasets.load_from_disk(str(tmp_path / "hf")).with_format("numpy")
    assert len(ds) == len(cache) and ds.features["label"].names == cache.classes
    for i in range(len(cache)):
        assert np.array_equal(ds[i]["image"], cache[i]["image"]) and ds[i]["label"] == cache[i]["label"]
    assert not [p for p in tmp_path.iterdir() if ".export-" in p.name]  # nothing staged is left


def test_an_existing_out_is_never_replaced_even_with_force(tmp_path, capsys):
    prebake.write_arrays(tmp_path / "c", {"x": np.arange(5)})
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    for extra in ([], ["--force"]):
        assert main(["export", str(tmp_path / "c"), str(tmp_path / "hf"), "--format", "hf", *extra]) == 2
        assert "never replaces one" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "hf").iterdir()] == ["notes.txt"]


def test_compression_is_refused_and_a_column_datasets_cannot_hold_leaves_nothing(tmp_path, capsys):
    prebake.write_arrays(tmp_path / "c", {"x": np.arange(5)})
    assert main(["export", str(tmp_path / "c"), str(tmp_path / "hf"), "--format", "hf", "--compression", "gzip"]) == 2
    assert "--compression/--level compress an HDF5 export" in capsys.readouterr().err
    photos = [{"image": np.zeros((3, h, w), np.uint8)} for h, w in ((4, 5), (6, 2))]  # a ragged N-D column
    prebake.build(photos, tmp_path / "nd", workers=0, progress=False)
    assert main(["export", str(tmp_path / "nd"), str(tmp_path / "out"), "--format", "hf"]) == 2
    assert "columns=" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if ".export-" in p.name]
