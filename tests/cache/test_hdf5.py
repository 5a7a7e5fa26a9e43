"""HDF5 out and in: export is readable with plain h5py; build -> export -> build gives byte-identical
columns, ragged and string ones included; a corrupt or truncated file is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

import prebake
from prebake.cli import main
from prebake.errors import SourceError

h5py = pytest.importorskip("h5py")


class Mixed:
    """Fixed, ragged and string columns."""

    def __len__(self):
        return 23

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        return {"image": rng.integers(0, 2**15, (1, 4, 5, 3)).astype(np.int16),
                "signal": rng.standard_normal((5 + 3 * i, 2)).astype(np.float32),
                "patient_id": np.array(f"P{i // 3:03d}-é", dtype="<U8"),
                "age": np.float64(20 + i / 3), "label": i % 3}


def _columns(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.suffix == ".npy" and not p.name.startswith("_")}


@pytest.mark.parametrize("compression", ["none", "gzip", "lzf"])
def test_round_trip_is_byte_identical(tmp_path, compression):
    first = prebake.build(Mixed(), tmp_path / "a", ragged=("signal",), workers=0, progress=False)
    assert main(["export", str(first.path), str(tmp_path / "a.h5"), "--compression", compression]) == 0
    second = prebake.build(tmp_path / "a.h5", tmp_path / "b", workers=2, progress=False)
    assert second.columns == first.columns and len(second) == len(first)
    a, b = _columns(first.path), _columns(second.path)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    assert prebake.build(tmp_path / "a.h5", tmp_path / "b", workers=0, progress=False).path == second.path


def test_export_reads_with_plain_h5py(tmp_path):
    cache = prebake.build(Mixed(), tmp_path / "a", ragged=("signal",), workers=0, progress=False)
    prebake.export_hdf5(cache.path, tmp_path / "a.h5", compression="gzip")
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f.attrs["num_items"] == 23 and "manifest" in f.attrs
        np.testing.assert_array_equal(f["image"][:], cache.column("image"))
        assert f["image"].chunks is not None and f["image"].compression == "gzip"
        off = f["signal/offsets"][:]
        np.testing.assert_array_equal(f["signal/values"][off[4]:off[5]], cache[4]["signal"])
        assert f["patient_id"].asstr()[2] == "P000-é"


def test_a_plain_h5_file_becomes_columns_and_unrelated_datasets_are_left_out(tmp_path, caplog):
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.arange(30, dtype=np.float32).reshape(10, 3)
        f["label"] = np.arange(10) % 2
        f["notes"] = np.arange(4)  # not one row per item
        f.create_dataset("name", data=[f"item{i}" for i in range(10)], dtype=h5py.string_dtype())
    cache = prebake.build(tmp_path / "plain.h5", tmp_path / "c", workers=0, progress=False)
    assert sorted(cache.columns) == ["label", "name", "x"]
    assert cache.column("name")[9] == "item9" and cache.column("name").dtype == np.dtype("<U5")
    assert "notes" in caplog.text


def test_truncated_and_garbage_files_are_clear_errors(tmp_path):
    prebake.build(Mixed(), tmp_path / "a", ragged=("signal",), workers=0, progress=False)
    prebake.export_hdf5(tmp_path / "a", tmp_path / "a.h5")
    data = (tmp_path / "a.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all" * 100)
    for name in ("cut.h5", "junk.h5"):
        with pytest.raises(SourceError, match=rf"{name} is not a readable HDF5 file .*truncated, corrupt or not HDF5"):
            prebake.build(tmp_path / name, tmp_path / f"c-{name}", workers=0)
    assert main(["export", str(tmp_path / "a"), str(tmp_path / "a.h5")]) == 0  # prebake's own export: replaced
    assert main(["export", str(tmp_path / "a"), str(tmp_path / "junk.h5")]) == 2  # not prebake's: --force to replace
