"""Attacks on the schema and the skip policy from an outside run (issue 26), each failing on the code before:
HDF5 tables whose field names collide with datasets, bytes that are not text, datasets no column holds, small
metadata arrays beside the items; a build over ``max_skipped`` with worker processes; ``dtypes=`` to a float
that rounds integers; an incremental build after the item that widened a column is gone, or after the items that
decided a column of empty ones are; every item bad with
``allow_empty``; a strict build whose first item is bad; items with different keys, in either order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import prebake
from benchmarks.trials.schema import Items
from prebake.cli import main
from prebake.errors import SchemaError, SourceError, StrictModeError, TooManySkippedError

h5py = pytest.importorskip("h5py")


def _build(source: Any, out: Path, **kw: Any) -> Any:
    return prebake.build(source, out, workers=kw.pop("workers", 0), progress=False, **kw)


def _skipped(cache: Any) -> dict[str, str]:
    return {str(s["key"]): s["reason"] for s in cache.manifest["skipped"]}


# -- HDF5 ------------------------------------------------------------------------------------------------------

def test_a_compound_field_never_takes_a_datasets_name(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["tab_a"] = np.array([400, 401, 402, 403])
        table = np.zeros(4, dtype=[("a", "<i4"), ("b", "<f8")])
        table["a"], table["b"] = [1, 2, 3, 4], 0.5
        f["tab"] = table
    cache = _build(tmp_path / "t.h5", tmp_path / "c")
    assert [int(cache[i]["tab_a"]) for i in range(4)] == [400, 401, 402, 403]  # the file's own dataset
    assert [int(cache[i]["tab_a_2"]) for i in range(4)] == [1, 2, 3, 4]  # the field, renamed by the rule
    params = cache.manifest["fingerprint"]["inputs"]["source"]["params"]
    assert params["renamed"] == {"tab_a_2": "tab.a"}


def test_bytes_that_are_not_text_are_kept_as_bytes(tmp_path):
    digests = [b"\xff\xfe", b"ok", b"\x80\x01", b"z"]
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["x"] = np.arange(4.0)
        f["digest"] = np.array(digests, dtype="S2")
        f["name"] = np.array([b"ab", b"c", b"", b"d"], dtype="S2")  # all text: still a str column
        raw = f.create_dataset("raw", (4,), dtype=h5py.string_dtype("ascii"))
        raw[:] = [b"\xff" * 3, b"a", b"\x01\x81", b"bc"]
        table = f.create_dataset("t", (4,), dtype=np.dtype([("label", h5py.string_dtype()), ("v", "<i4")]))
        for i in range(4):
            table[i] = ("é" * i, i)
    cache = _build(tmp_path / "b.h5", tmp_path / "c")
    assert len(cache) == 4
    assert [cache[i]["digest"].item() for i in range(4)] == digests
    assert cache.manifest["columns"]["name"]["dtype"].startswith("<U")
    assert [str(cache[i]["name"]) for i in range(4)] == ["ab", "c", "", "d"]
    assert cache[0]["raw"].item() == b"\xff" * 3 and cache[2]["raw"].item() == b"\x01\x81"
    assert [str(cache[i]["t_label"]) for i in range(4)] == ["", "é", "éé", "ééé"]


@pytest.mark.parametrize("kind", ["nested", "vlen_field", "vlen_2d", "references"])
def test_a_dataset_no_column_holds_is_left_out_by_name_and_the_rest_bakes(tmp_path, kind, caplog):
    n = 4
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["label"] = np.arange(n * 3.0).reshape(n, 3), np.arange(n) % 2
        if kind == "nested":
            f["odd"] = np.zeros(n, dtype=[("p", [("q", "<i2"), ("r", "<f4")]), ("s", "<i8")])
        elif kind == "vlen_field":
            d = f.create_dataset("odd", (n,), dtype=np.dtype([("p", h5py.vlen_dtype(np.int32)), ("s", "<i4")]))
            for i in range(n):
                d[i] = (np.arange(i, dtype=np.int32), i)
        elif kind == "vlen_2d":
            d = f.create_dataset("odd", (n, 2), dtype=h5py.vlen_dtype(np.float32))
            for i in range(n):
                d[i, 0], d[i, 1] = np.arange(i, dtype=np.float32), np.arange(i + 1, dtype=np.float32)
        else:
            f.create_dataset("odd", (n,), dtype=h5py.ref_dtype)
    with caplog.at_level(logging.WARNING):
        cache = _build(tmp_path / "d.h5", tmp_path / "c")
    assert len(cache) == n and {"x", "label"} <= set(cache.columns)
    assert not any(c == "odd" or c == "odd_p" for c in cache.columns)
    assert "left out odd" in caplog.text
    if kind in ("nested", "vlen_field"):
        assert [int(cache[i]["odd_s"]) for i in range(n)] == ([0] * n if kind == "nested" else list(range(n)))


def test_small_metadata_arrays_never_outvote_the_items(tmp_path):
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["image"] = np.arange(100 * 64, dtype=np.uint8).reshape(100, 1, 8, 8)
        f["label"] = np.arange(100) % 3
        f["mean"], f["std"], f["class_names"] = np.zeros(3), np.ones(3), np.array([b"a", b"b", b"c"])
    with h5py.File(tmp_path / "n.h5", "w") as f:  # no conventional names: the length with the most bytes
        f["signals"] = np.ones((50, 40), np.float32)
        f["fs"], f["gain"], f["unit"] = np.full(3, 500.0), np.ones(3), np.array([b"mV", b"mV", b"uV"])
    assert len(_build(tmp_path / "m.h5", tmp_path / "c1")) == 100
    assert len(_build(tmp_path / "n.h5", tmp_path / "c2")) == 50


# -- the build --------------------------------------------------------------------------------------------------

def _photos(root: Path, n: int = 3, size: tuple[int, int] = (8, 8)) -> Path:
    rng = np.random.default_rng(0)
    (root / "a").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "a" / f"s{i}.png")
    return root


def test_too_many_skipped_with_worker_processes_says_so(tmp_path):
    """The stream's files were synced twice on the way out (the second time closed): a ValueError about a file
    descriptor hid the TooManySkippedError."""
    root = _photos(tmp_path / "p")
    (root / "a" / "zero.png").write_bytes(b"")
    with pytest.raises(TooManySkippedError, match="1 of 4 items were skipped"):
        _build(root, tmp_path / "c", workers=2, max_skipped=0)
    assert main(["build", str(root), str(tmp_path / "d"), "--workers", "2", "--max-skipped", "0", "-q"]) == 2


def test_dtype_to_a_float_refuses_integers_it_would_round(tmp_path):
    items = [{"x": np.array([16777217, 1], np.int64)}, {"x": np.array([3, 4], np.int64)},
             {"x": np.array([2049], np.int64)}]
    cache = _build(Items(items, np.arange(3), "ints"), tmp_path / "c", dtypes={"x": "float32"}, ragged=["x"])
    assert len(cache) == 2 and cache[1]["x"].tolist() == [2049.0]
    assert "16777217" in next(iter(_skipped(cache).values()))
    half = _build(Items(items, np.arange(3), "ints"), tmp_path / "h", dtypes={"x": "float16"}, ragged=["x"])
    assert len(half) == 1 and half[0]["x"].tolist() == [3.0, 4.0]  # 2049 is not a float16
    floats = [{"x": np.array([0.1, 2.5])}, {"x": np.array([1e-3])}]  # a float to a narrower float: rounded
    narrow = _build(Items(floats, np.arange(2), "floats"), tmp_path / "f", dtypes={"x": "float32"}, ragged=["x"])
    assert len(narrow) == 2 and narrow[0]["x"].dtype == np.float32
    np.testing.assert_array_equal(narrow[0]["x"], np.array([0.1, 2.5], np.float32))


def test_an_incremental_build_decides_a_promoted_dtype_again(tmp_path):
    root = _photos(tmp_path / "p", 4, (16, 16))
    grey = tmp_path / "p" / "a" / "g16.png"
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(grey)
    first = _build(root, tmp_path / "c")
    assert first.manifest["columns"]["image"]["dtype"] == "<u2" and len(first) == 5
    grey.unlink()
    again = _build(root, tmp_path / "c")
    fresh = _build(root, tmp_path / "f")
    assert again.manifest["columns"]["image"]["dtype"] == fresh.manifest["columns"]["image"]["dtype"] == "|u1"
    for i in range(4):
        np.testing.assert_array_equal(again[i]["image"], fresh[i]["image"])


class _NpyFiles(prebake.Source):
    """Items ``{"x": np.load(file)}`` of every ``.npy`` under a folder, with file identities (so a rebuild copies the
    rows of unchanged files)."""

    kind = "npy-files"

    def __init__(self, root: Path):
        self.root = root
        self.files = sorted(p.name for p in root.glob("*.npy"))

    def keys(self) -> list[str]:
        return self.files

    def read(self, index: int) -> dict[str, Any]:
        return {"x": np.load(self.root / self.files[index])}

    def describe(self) -> dict[str, Any]:
        return self.describe_files(self.root, {}, [self.root / f for f in self.files])

    def item_identities(self) -> list[str]:
        files = self.describe()["files"]
        return [f"{f}|{files[f]}" for f in self.files]


@pytest.mark.parametrize("workers", [0, 2])
def test_an_incremental_build_after_the_items_that_decided_a_column_of_empty_ones_are_gone(tmp_path, workers, caplog):
    """Items with no elements never vote while one item has elements: once those are gone, a rebuild that copied
    the empty rows would keep the old column's dtype, where a fresh build of the items left gives theirs."""
    root = tmp_path / "npy"
    root.mkdir()
    np.save(root / "a.npy", np.arange(5, dtype=np.int64))
    for k in range(3):
        np.save(root / f"e{k}.npy", np.zeros(0, np.float32))
    first = _build(_NpyFiles(root), tmp_path / "c", workers=workers)
    col = first.manifest["columns"]["x"]
    assert col["dtype"] == "<i8" and col["schema"]["empty"] == {"<f4": 3} and len(first) == 4
    (root / "a.npy").unlink()
    with caplog.at_level(logging.INFO, logger="prebake"):
        again = _build(_NpyFiles(root), tmp_path / "c", workers=workers)
    assert "baking every item again: column x holds items with no elements of another dtype" in caplog.text
    caplog.clear()
    fresh = _build(_NpyFiles(root), tmp_path / "f", workers=workers)
    assert again.manifest["columns"]["x"]["dtype"] == fresh.manifest["columns"]["x"]["dtype"] == "<f4"
    assert len(again) == len(fresh) == 3 and all(again[i]["x"].size == 0 for i in range(3))
    np.save(root / "b.npy", np.zeros(0, np.float32))  # only empty items of the column's dtype: rows are copied
    with caplog.at_level(logging.INFO, logger="prebake"):
        third = _build(_NpyFiles(root), tmp_path / "c", workers=workers)
    assert third.manifest["columns"]["x"]["dtype"] == "<f4" and len(third) == 4
    assert "copying 3 unchanged items" in caplog.text


def test_allow_empty_commits_a_cache_of_no_items_when_every_item_is_bad(tmp_path):
    root = tmp_path / "p"
    (root / "a").mkdir(parents=True)
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("not an image")
    with pytest.raises(SourceError, match="allow_empty"):
        _build(root, tmp_path / "n", workers=2)
    for workers in (0, 2):
        cache = _build(root, tmp_path / f"c{workers}", workers=workers, allow_empty=True)
        assert len(cache) == 0 and len(_skipped(cache)) == 2
        assert main(["verify", str(tmp_path / f"c{workers}")]) == 0
        assert list(prebake.Loader(prebake.open(tmp_path / f"c{workers}"), 4)) == []
    _photos(root, 2)  # good items arrive: the next build keeps them
    cache = _build(root, tmp_path / "c2", workers=2, allow_empty=True)
    assert len(cache) == 2 and cache[0]["image"].shape == (3, 8, 8)


def test_strict_stops_at_a_bad_first_item_with_its_exit_status(tmp_path):
    """Every item bad: the first one stops a strict build (it was 'no item could be baked', exit status 2)."""
    root = tmp_path / "p"
    (root / "a").mkdir(parents=True)
    (root / "a" / "0_broken.png").write_bytes(b"\x89PNG not really")  # sorted first
    (root / "a" / "1_empty.png").write_bytes(b"")
    with pytest.raises(StrictModeError, match="0_broken.png"):
        _build(root, tmp_path / "c", strict=True)
    assert main(["build", str(root), str(tmp_path / "d"), "--strict", "--workers", "0", "-q"]) == 1


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [1, 0, 3, 2]])
def test_items_with_other_keys_refuse_the_build_in_any_order(tmp_path, order):
    items: list[dict[str, Any]] = [{"a": np.float32(i)} for i in range(4)]
    items[1]["b"] = items[3]["b"] = np.int64(7)
    with pytest.raises(SchemaError, match=r"different keys: \['a', 'b'\] \(2 items, e\.g\. \d\); \['a'\] \(2 items, "
                       r"e\.g\. \d\)"):  # each set with an item that has it
        _build(Items(items, np.array(order), f"keys{order}"), tmp_path / "c")
    with pytest.raises(SchemaError):
        _build(Items(items, np.array(order), f"keys{order}"), tmp_path / "d", workers=2)


def test_a_group_left_out_names_the_option_that_reaches_it(tmp_path, caplog):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["x"], f["label"] = np.arange(4.0), np.arange(4)
        f.create_group("train")["x"] = np.ones(3)
    with caplog.at_level(logging.WARNING):
        assert len(_build(tmp_path / "g.h5", tmp_path / "c")) == 4
    assert "left out the group train; bake one group's datasets with `hdf5_group='train'`" in caplog.text
    assert "not one row per item" not in caplog.text


def test_the_root_group_by_option_and_items_named_so_that_disagree(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["x"], f["label"] = np.arange(4.0), np.arange(4)
    cache = _build(tmp_path / "r.h5", tmp_path / "c", source_options=prebake.SourceOptions(hdf5_group="/"))
    assert len(cache) == 4  # "/" is the top level (it was "no group ''")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["image"], f["label"] = np.zeros((10, 2, 2), np.uint8), np.arange(8)
    with pytest.raises(SourceError, match="disagree on the number of items.*image has 10.*label has 8"):
        _build(tmp_path / "d.h5", tmp_path / "d")  # 8 items were kept, the images left out


def test_an_empty_cache_says_it_holds_no_items(tmp_path):
    root = tmp_path / "p"
    (root / "a").mkdir(parents=True)
    (root / "a" / "zero.png").write_bytes(b"")
    cache = _build(root, tmp_path / "c", allow_empty=True)
    with pytest.raises(IndexError, match=r"of 0 items \(it holds none\)"):
        cache[0]


def test_a_float_that_rounds_into_a_narrower_floats_range_is_held(tmp_path):
    items = [{"x": np.array([65504.1, 65519.0])}, {"x": np.array([65520.0])}, {"x": np.array([1.5])}]
    cache = _build(Items(items, np.arange(3), "f16"), tmp_path / "c", dtypes={"x": "float16"}, ragged=["x"])
    assert len(cache) == 2 and cache[0]["x"].tolist() == [65504.0, 65504.0]  # as np.float16 rounds them
    assert "65520.0" in next(iter(_skipped(cache).values()))  # rounds to inf: out of range


def test_strict_names_both_key_sets(tmp_path):
    items: list[dict[str, Any]] = [{"x": np.float32(i), "y": np.int64(i)} for i in range(3)]
    items[0]["first"] = np.int64(1)
    with pytest.raises(StrictModeError, match=r"\['x', 'y'\] \(the first item that baked has \['first', 'x', 'y'\]"):
        _build(Items(items, np.arange(3), "strict-keys"), tmp_path / "c", strict=True)


def test_text_and_bytes_ending_in_nul_are_counted_in_the_notes(tmp_path):
    """numpy's fixed-width strings drop a trailing NUL: it was lost with no word."""
    items = [{"s": "ab\x00", "b": b"\x00\x01\x00"}, {"s": "cd", "b": b"x"}, {"s": "e\x00", "b": b"y"}]
    cache = _build(Items(items, np.arange(3), "nul"), tmp_path / "c")
    assert [cache[i]["s"].item() for i in range(3)] == ["ab", "cd", "e"]
    notes = {n["what"].split("'")[1]: (n["count"], n["items"]) for n in cache.manifest["notes"]}
    assert notes == {"s": (2, 2), "b": (1, 1)}
    assert "end in NUL" in cache.manifest["notes"][0]["what"]


def test_an_exported_empty_cache_builds_again_with_allow_empty(tmp_path):
    root = tmp_path / "p"
    (root / "a").mkdir(parents=True)
    (root / "a" / "zero.png").write_bytes(b"")
    prebake.export_hdf5(_build(root, tmp_path / "c", allow_empty=True).path, tmp_path / "e.h5")
    with pytest.raises(SourceError, match="has no items.*allow_empty"):
        _build(tmp_path / "e.h5", tmp_path / "n")
    again = _build(tmp_path / "e.h5", tmp_path / "x", allow_empty=True)  # was 'holds no dataset ... of 0 rows'
    assert len(again) == 0 and again.columns == []


# -- a third outside run: the value-aware promotion --------------------------------------------------------------

def test_dates_of_different_units_are_refused_never_wrapped(tmp_path):
    """numpy calls days -> ns a safe cast: 9999-12-31 was stored as 1816-03-29."""
    items = [{"t": np.datetime64("9999-12-31")}, {"t": np.datetime64("2020-01-01T00:00:00.123456789")}]
    with pytest.raises(SchemaError, match=r"datetime64\[ns\]'\}"):
        _build(Items(items, np.arange(2), "dates"), tmp_path / "c")
    given = _build(Items(items, np.arange(2), "dates"), tmp_path / "g", dtypes={"t": "M8[ns]"})
    assert len(given) == 1 and given[0]["t"] == items[1]["t"]  # the sentinel is a bad item, not 1816
    with pytest.raises(prebake.OptionError, match="has no time unit"):
        _build(Items(items, np.arange(2), "dates"), tmp_path / "m", dtypes={"t": "M8"})


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 0, 2]])
def test_big_endian_integers_beside_floats_in_any_order(tmp_path, order):
    items = [{"x": np.array([1, 2], "<i8")}, {"x": np.array([3, 4], ">i8")}, {"x": np.array([0.5, 1.5])}]
    cache = _build(Items(items, np.array(order), f"bo{order}"), tmp_path / "c", ragged=["x"])
    assert cache.manifest["columns"]["x"]["dtype"] == "<f8"
    assert sorted(cache[i]["x"].tolist() for i in range(3)) == [[0.5, 1.5], [1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [0, 2, 1]])
def test_long_doubles_bake_and_int64_beside_uint64_is_refused_in_any_order(tmp_path, order):
    if np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant:
        pytest.skip("long double is float64 here")
    alone = [{"x": np.longdouble(0.5)}, {"x": np.longdouble(1.5)}]
    assert _build(Items(alone, np.arange(2), "ld"), tmp_path / "a")[1]["x"] == np.longdouble(1.5)  # was a JSON error
    items = [{"x": np.int64(-1)}, {"x": np.uint64(2**64 - 1)}, {"x": np.longdouble(0.5)}]
    with pytest.raises(SchemaError, match="int64 and uint64 share no integer dtype"):
        _build(Items(items, np.array(order), f"ld{order}"), tmp_path / "c", chunk_rows=1)


def test_a_cast_to_an_integer_names_what_does_not_fit(tmp_path):
    items = [{"x": np.array([2.0**64])}, {"x": np.array([np.nan])}, {"x": np.array([3.0])}]
    cache = _build(Items(items, np.arange(3), "casts"), tmp_path / "c", dtypes={"x": "uint64"}, ragged=["x"])
    reasons = _skipped(cache)
    assert len(cache) == 1 and cache[0]["x"].tolist() == [3]
    assert "out of uint64's range" in reasons["0"]  # 2.0**64 compared equal to 2**64 - 1: 'a finer time unit'
    assert "holds NaN or Inf" in reasons["1"]  # was 'holds fractions ... nan'


def test_split_of_a_cache_of_no_items_says_why(tmp_path):
    root = tmp_path / "p"
    (root / "a").mkdir(parents=True)
    (root / "a" / "zero.png").write_bytes(b"")
    cache = _build(root, tmp_path / "c", allow_empty=True)
    with pytest.raises(prebake.OptionError, match="holds no items and no columns"):
        prebake.split(cache.path, by="label", fractions={"train": 0.5, "val": 0.5})


@pytest.mark.parametrize("rows, kept", [(["a.png", "v.nii.gz", "w.nii.gz"], "volume"),
                                        (["v.nii.gz", "w.nii.gz", "a.png"], "volume"),
                                        (["v.nii.gz", "a.png", "b.png"], "image"),
                                        (["b.png", "a.png", "v.nii.gz"], "image")])
def test_a_table_of_images_and_volumes_keeps_the_kind_most_rows_hold(tmp_path, rows, kept):
    """A volume's row brings geometry columns an image's has not: the first row decided which kind was kept, the
    other skipped. Now the kind most rows hold is kept in any order, each other row skipped saying why."""
    nib = pytest.importorskip("nibabel")
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    for name in ("v.nii.gz", "w.nii.gz"):
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), tmp_path / name)
    (tmp_path / "t.csv").write_text("path,label\n" + "".join(f"{r},{k}\n" for k, r in enumerate(rows)))
    cache = _build(tmp_path / "t.csv", tmp_path / "c")
    assert len(cache) == 2 and ("affine" in cache.columns) == (kept == "volume")
    [skipped] = cache.manifest["skipped"]
    assert f"in a table whose rows are mostly {kept}s" in skipped["reason"]
    assert "from a table of their own" in skipped["reason"]
