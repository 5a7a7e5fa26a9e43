"""HDF5 files of the layouts real tools write, and the ones h5py ships (variable-length strings, big-endian
numbers, complex numbers under names that are no column names): every row equals h5py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prebake.errors import SourceError
from prebake.sources import SourceOptions, detect
from prebake.sources.hdf5_columns import column_name

h5py = pytest.importorskip("h5py", reason="HDF5 is read through h5py: pip install h5py")
SHIPPED = sorted((Path(h5py.__file__).parent / "tests" / "data_files").glob("*.h5"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_h5pys_shipped_files_every_row_equals_h5py(path):
    source = detect(path)[""]
    renamed = source.describe()["params"].get("renamed", {})
    with h5py.File(path) as f:
        for name in source.order:
            ds = f[renamed.get(name, name)]
            for i in range(min(len(source), 50)):
                want = ds.asstr()[i] if h5py.check_string_dtype(ds.dtype) else ds[i]
                assert source.read(i)[name] == want


def test_keras_style_groups_train_and_test(tmp_path):
    path = tmp_path / "data.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for split, n in (("train", 6), ("test", 3)):
            g = f.create_group(split)
            g["x"], g["y"] = rng.integers(0, 255, (n, 4, 4), dtype=np.uint8), np.arange(n)
    for split, n in (("train", 6), ("test", 3)):
        source = detect(path, options=SourceOptions(hdf5_group=split))[""]
        with h5py.File(path) as f:
            assert len(source) == n
            np.testing.assert_array_equal(source.read(n - 1)["x"], f[split]["x"][n - 1])
    with pytest.raises(SourceError, match="no group 'val'.*train"):
        detect(path, options=SourceOptions(hdf5_group="val"))


def test_vlen_rows_and_compound_fields_equal_h5py(tmp_path):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("cycles", (4,), dtype=h5py.vlen_dtype(np.int16))
        for i in range(4):
            d[i] = np.arange(3 * i, dtype=np.int16)
        t = np.zeros(4, dtype=[("id", "S4"), ("xyz", "<f4", (3,))])
        t["id"], t["xyz"] = [b"a", b"bb", b"ccc", b"d"], np.arange(12).reshape(4, 3)
        f["points"] = t
    source = detect(path)[""]
    assert source.ragged_columns == ("cycles",) and source.order == ["cycles", "points_id", "points_xyz"]
    with h5py.File(path) as f:
        for i in range(4):
            item = source.read(i)
            np.testing.assert_array_equal(item["cycles"], f["cycles"][i])
            assert item["points_id"] == f["points"]["id"][i]
            np.testing.assert_array_equal(item["points_xyz"], f["points"]["xyz"][i])


@pytest.mark.parametrize("original, taken, new", [("heart rate (bpm)", set(), "heart_rate_bpm"),
                                                  ("<c16", {"c16"}, "c16_2"), ("_private", set(), "private"),
                                                  ("..", set(), "column"), ("x.y", {"x_y", "x_y_2"}, "x_y_3")])
def test_the_renaming_rule(original, taken, new):
    assert column_name(original, taken) == new
