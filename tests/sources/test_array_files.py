"""``.npz`` files as numpy and scipy write them: 0-d entries are attributes of the cache (in the manifest), a
``scipy.sparse.save_npz`` file is refused naming what to do, and arrays found by content under any name."""

from __future__ import annotations

import numpy as np
import pytest

from prebake.errors import SourceError
from prebake.sources import detect


def test_zero_d_entries_are_attributes_every_json_kind(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.arange(6.0).reshape(3, 2), rate=np.int32(16000), gain=np.float64(0.5),
             name=np.str_("left ventricle"), ok=np.bool_(True), nan=np.float32("nan"))
    source = detect(tmp_path / "a.npz")[""]
    assert source.describe()["params"]["attributes"] == {"rate": 16000, "gain": 0.5, "name": "left ventricle",
                                                        "ok": True, "nan": "nan"}
    np.testing.assert_array_equal(source.read(2)["x"], [4.0, 5.0])


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_a_sparse_matrix_is_refused_naming_save_npz(tmp_path, fmt):
    sparse = pytest.importorskip("scipy.sparse")
    sparse.save_npz(tmp_path / "s.npz", getattr(sparse, f"{fmt}_matrix")(np.eye(4)))
    with pytest.raises(SourceError, match=f"scipy.sparse matrix \\({fmt}, shape \\[4, 4\\]\\).*save_npz"):
        detect(tmp_path / "s.npz")


def test_npy_and_npz_named_otherwise_are_found_by_content(tmp_path):
    np.save(tmp_path / "features.npy", np.ones((5, 3), np.float32))
    (tmp_path / "features.npy").rename(tmp_path / "features.bin")
    np.savez(tmp_path / "pack.npz", x=np.ones((2, 2)))
    (tmp_path / "pack.npz").rename(tmp_path / "pack.dat")
    assert len(detect(tmp_path / "features.bin")[""]) == 5 and len(detect(tmp_path / "pack.dat")[""]) == 2
