"""Items 4, 5 and 6: HDF5 ragged offsets, files an HDF5 file links to, and ``prebake export``.

Before: bad offsets gave items other items' rows (rc 0); a virtual dataset without its
source file baked its fill value, and a changed linked file left the cache "up to date";
export copied a corrupted cache into a fresh file, died of SIGSEGV on a full disk, turned
``S`` columns into ``<U`` and big-endian ones into little-endian, tracebacked on datetime64
and ``(N, 0)`` columns, and replaced any file at its target with ``--force``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.hdf5_exchange import (
    DTYPES,
    OFFSET_FAULTS,
    bad_offsets,
    build,
    column_bytes,
    disk_full_attack,
    hdf5_exchange,
    link_attack,
    linked_files,
    ragged_file,
    random_column,
    valid_offsets,
)
from prebake.cli import main
from prebake.errors import CacheCorruptError, PrebakeError, SourceError

h5py = pytest.importorskip("h5py")
H5PY_DATA = Path(h5py.__file__).parent / "tests" / "data_files"


# -- the offsets of a ragged group -----------------------------------------------------------------


@pytest.mark.parametrize("fault", OFFSET_FAULTS)
def test_bad_offsets_are_refused_naming_the_dataset_and_the_value(tmp_path, fault):
    rng = np.random.default_rng(OFFSET_FAULTS.index(fault))
    good = np.array([0, 2, 2, 5, 6], dtype=np.int64)
    bad = bad_offsets(fault, good, rng)
    path = ragged_file(tmp_path / "f.h5", bad, np.arange(12, dtype=np.float32).reshape(6, 2), n=4)
    with pytest.raises(SourceError, match=r"f\.h5.*'signal/offsets'") as e:
        prebake.build(path, tmp_path / "out", workers=0, progress=False)
    assert "offsets" in str(e.value) and "values" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_offsets_edited_in_an_exported_file_are_refused(tmp_path):
    lists = [np.arange(3 * i, dtype=np.int16).reshape(i, 3) for i in range(1, 6)]
    cache = prebake.write_arrays(tmp_path / "a", {"signal": lists})
    prebake.export_hdf5(cache.path, tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        f["signal/offsets"][2] = 0  # item 1 would read rows of item 0 and item 2 rows of items 0 and 1
    with pytest.raises(SourceError, match=r"a\.h5.*'signal/offsets'.*offsets\[2\] is 0, below offsets\[1\] = 1"):
        prebake.build(tmp_path / "a.h5", tmp_path / "b", workers=0, progress=False)


@pytest.mark.parametrize("width", ["<i4", ">i8", "<u2", "<i8"])
def test_valid_offsets_of_any_integer_width_bake_exactly(tmp_path, width):
    rng = np.random.default_rng(1)
    offsets = valid_offsets(rng, 7)
    values = rng.standard_normal((int(offsets[-1]), 2)).astype(np.float32)
    cache = prebake.build(ragged_file(tmp_path / "f.h5", offsets.astype(width), values, 7, exported=False),
                          tmp_path / "c", workers=0, progress=False)
    for i in range(7):
        np.testing.assert_array_equal(cache[i]["signal"], values[offsets[i] : offsets[i + 1]])


# -- files an HDF5 file links to -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vds", "link", "raw"])
def test_a_missing_linked_file_is_refused_never_baked_as_fill(tmp_path, kind):
    main_file, other = linked_files(tmp_path, kind)
    other.unlink()
    with pytest.raises(SourceError, match=rf"'x'.*{other.name}") as e:
        prebake.build(main_file, tmp_path / "out", workers=0, progress=False)
    assert "missing" in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["vds", "link", "raw"])
def test_a_changed_linked_file_is_a_rebuild_that_names_it(tmp_path, kind):
    main_file, other = linked_files(tmp_path, kind)
    assert build(main_file, tmp_path / "cache").action == "built"
    assert build(main_file, tmp_path / "cache").action == "up to date"
    st = other.stat()
    if kind == "raw":
        other.write_bytes(b"\x07" + other.read_bytes()[1:])
    else:
        with h5py.File(other, "r+") as f:
            f["x"][0, 0] = 7
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only the bytes differ
    again = build(main_file, tmp_path / "cache")
    assert again.action == "rebuilt" and any(other.name in r for r in again.reasons), (again.action, again.reasons)
    assert prebake.open(tmp_path / "cache").column("x")[0, 0] == 7


@pytest.mark.parametrize("t", range(12))
def test_linked_file_faults(tmp_path, t):
    what, problem = link_attack(tmp_path, np.random.default_rng(t), t)
    assert problem is None, f"{what}: {problem}"


def test_content_hash_identifies_linked_files_by_their_bytes(tmp_path):
    main_file, other = linked_files(tmp_path, "vds")
    assert build(main_file, tmp_path / "c", content_hash=True).action == "built"
    os.utime(other)  # touched, same bytes
    assert build(main_file, tmp_path / "c", content_hash=True).action == "up to date"
    with h5py.File(other, "r+") as f:
        f["x"][0] = [100, 101]
    again = build(main_file, tmp_path / "c", content_hash=True)
    assert again.action == "rebuilt" and any(other.name in r for r in again.reasons), again.reasons
    np.testing.assert_array_equal(prebake.open(tmp_path / "c").column("x")[0], [100, 101])


# -- export ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips_byte_identical(tmp_path, dtype):
    rng = np.random.default_rng(DTYPES.index(dtype))
    columns = {"fixed": random_column(rng, dtype, 5), "ragged": [random_column(rng, dtype, 1)[0] for _ in range(5)]}
    columns["ragged"] = [np.asarray(v).reshape(-1)[:3] for v in columns["ragged"]]
    columns["empty"] = np.zeros((5, 0), dtype=dtype)
    first = prebake.write_arrays(tmp_path / "a", columns)
    assert main(["export", str(first.path), str(tmp_path / "a.h5"), "--compression", "gzip"]) == 0
    second = prebake.build(tmp_path / "a.h5", tmp_path / "b", workers=0, progress=False)
    assert {k: second.specs[k].dtype for k in second.columns} == {k: first.specs[k].dtype for k in first.columns}
    a, b = column_bytes(first.path), column_bytes(second.path)
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []


def test_bytes_that_are_not_utf8_and_big_endian_scalars_survive(tmp_path):
    raw = np.array([b"\xff\xfe", b"a\x00b", b"", b"abcde"], dtype="S5")
    first = prebake.write_arrays(tmp_path / "a", {"raw": raw, "be": np.arange(4, dtype=">i2")})
    prebake.export_hdf5(first.path, tmp_path / "a.h5")
    second = prebake.build(tmp_path / "a.h5", tmp_path / "b", workers=0, progress=False)
    assert second.column("raw").dtype == np.dtype("S5") and list(second.column("raw")) == list(raw)
    assert second.column("be").dtype.str == ">i2"


def test_big_endian_datasets_of_a_real_file_stay_big_endian(tmp_path):
    cache = prebake.build(H5PY_DATA / "vlen_string_s390x.h5", tmp_path / "c", workers=0, progress=False)
    with h5py.File(H5PY_DATA / "vlen_string_s390x.h5", "r") as f:
        for name in ("DSBEfloat", "DSBEint", "DSLEfloat", "DSLEint"):
            assert cache.column(name).dtype == f[name].dtype, name
            np.testing.assert_array_equal(cache.column(name), f[name][:])


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_corrupt_cache_is_not_exported(tmp_path, where):
    cache = prebake.write_arrays(tmp_path / "a", {"x": np.arange(64, dtype=np.float32).reshape(16, 4)})
    target = cache.path / "x.npy"
    data = bytearray(target.read_bytes())
    data[-5 if where == "data" else 60] ^= 0x01
    target.write_bytes(bytes(data))
    (tmp_path / "out").mkdir()
    with pytest.raises(CacheCorruptError, match=r"x\.npy"):
        prebake.export_hdf5(cache.path, tmp_path / "out" / "x.h5")
    assert os.listdir(tmp_path / "out") == []
    assert main(["export", str(cache.path), str(tmp_path / "out" / "x.h5")]) != 0
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("t", range(4))
def test_export_onto_a_full_disk_is_a_disk_full_error(tmp_path, t):
    what, problem = disk_full_attack(tmp_path, np.random.default_rng(t), t)
    assert problem is None, f"{what}: {problem}"


def test_export_replaces_only_its_own_files_unless_told(tmp_path):
    cache = prebake.write_arrays(tmp_path / "a", {"x": np.arange(4)}).path
    foreign = tmp_path / "notes.h5"
    foreign.write_text("my notes")
    with pytest.raises(PrebakeError, match=r"notes\.h5.*not a file prebake exported"):
        prebake.export_hdf5(cache, foreign)
    assert foreign.read_text() == "my notes"
    assert main(["export", str(cache), str(foreign)]) == 2 and foreign.read_text() == "my notes"
    prebake.export_hdf5(cache, foreign, overwrite=True)  # told to
    prebake.export_hdf5(cache, foreign)  # now prebake's own export: replaced again
    (tmp_path / "dir.h5").mkdir()
    (tmp_path / "dir.h5" / "keep.txt").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(PrebakeError, match=r"dir\.h5 is a directory"):
            prebake.export_hdf5(cache, tmp_path / "dir.h5", overwrite=overwrite)
    assert (tmp_path / "dir.h5" / "keep.txt").read_text() == "x"


def test_hdf5_exchange_trials(tmp_path):
    row = hdf5_exchange(tmp_path, trials=15, seed=0)
    assert row.failures == 0, row.examples
