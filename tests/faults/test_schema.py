"""Real data as it comes: a column's schema comes from every item, never the first, and "skipped"
means unreadable or invalid, never "unlike item 0" (bake/schema.py, bake/spill.py, bake/rewrite.py).

Photos of twenty sizes, the NIfTI and DICOM files nibabel and pydicom ship, strings longer than
the first, mixed integer dtypes: every valid item is kept, at its own shape, with the values the
reference reader gives, whatever the row order. Mixes no dtype holds exactly are refused with the
fix; ``dtypes=`` casts every item (out of range: that item is bad); ``max_skipped`` fails a build
with too many bad items; every build says ``kept K of N, skipped S``. Random mixes: trials/schema.py.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import prebake
from benchmarks.trials.schema import Items, schema
from prebake.cache.format import ITEM_KEYS, partial_path, sign_manifest
from prebake.cli import main
from prebake.errors import CacheCorruptError, OptionError, SchemaError, TooManySkippedError, ViewError

SIZES = [(17, 9), (32, 24), (9, 31), (64, 48), (48, 64), (5, 5), (100, 3), (3, 100), (40, 40), (41, 39),
         (23, 57), (57, 23), (16, 16), (31, 29), (12, 80), (80, 12), (33, 33), (7, 70), (70, 7), (25, 26)]


def keys_of(cache: Any) -> list[str]:
    return json.loads((Path(cache.path) / ITEM_KEYS).read_text())


def write_photos(root: Path) -> dict[str, np.ndarray]:
    """Twenty photos of twenty sizes (RGB PNG, JPEG, greyscale PNG) in two class folders; the pixels Pillow
    decodes for each, as (3, H, W) uint8, by file name."""
    rng = np.random.default_rng(3)
    want = {}
    for k, (w, h) in enumerate(SIZES):
        folder = root / ("a" if k % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        kind = ("png", "jpg", "grey.png")[k % 3]
        path = folder / f"p{k:02d}.{kind}"
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels[..., 0] if kind == "grey.png" else pixels).save(path)
        with Image.open(path) as im:
            want[f"{folder.name}/{path.name}"] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    return want


def test_photos_of_twenty_sizes_are_each_kept_at_their_own_size(tmp_path):
    want = write_photos(tmp_path / "photos")
    cache = prebake.build(tmp_path / "photos", tmp_path / "c", workers=2)
    assert len(cache) == 20 and cache.manifest["skipped"] == []  # before: 1 kept, 19 "unlike item 0"
    assert cache.manifest["columns"]["image"]["shape"] == [3, None, None]
    for i, key in enumerate(keys_of(cache)):
        got = cache[i]["image"]
        assert got.dtype == np.uint8 and np.array_equal(got, want[key]), key
    assert prebake.verify(cache.path).ok


def test_the_row_order_never_changes_what_is_kept(tmp_path):
    want = write_photos(tmp_path / "photos")
    names = sorted(want)
    rng = np.random.default_rng(0)
    kept = []
    for k, order in enumerate([names, names[::-1], list(rng.permutation(names))]):
        table = tmp_path / f"order{k}.csv"
        table.write_text("image_path,grade\n" + "".join(f"photos/{n},{j % 3}\n" for j, n in enumerate(order)))
        cache = prebake.build(table, tmp_path / f"c{k}", workers=k % 2 * 2)
        got = {key.split(": ", 1)[1].removeprefix("photos/"): cache[i]["image"] for i, key in enumerate(keys_of(cache))}
        assert all(np.array_equal(v, want[n]) for n, v in got.items())
        kept.append(sorted(got))
    assert kept[0] == kept[1] == kept[2] == names


def _medical_files() -> list[str]:
    pytest.importorskip("nibabel")
    pydicom_data = pytest.importorskip("pydicom.data")
    from nibabel.testing import data_path

    nifti = sorted(str(p) for p in Path(data_path).iterdir() if p.name.endswith((".nii", ".nii.gz")))
    dicom = sorted(str(p) for p in (Path(pydicom_data.__file__).parent / "test_files").glob("*.dcm"))  # in the wheel
    return nifti + dicom


def _reference(path: str) -> np.ndarray | None:
    """The file's voxels as the reference reader gives them: nibabel's dataobj for NIfTI (channels first),
    prebake's one-file reader (checked against pydicom by tests/bake/test_volumes.py) for DICOM; None when
    the file cannot be read alone."""
    from prebake.sources.volume_readers import read_volume

    try:
        item = read_volume(path)
    except prebake.PrebakeError:
        return None
    if path.endswith((".nii", ".nii.gz")):
        import nibabel

        data = np.asanyarray(nibabel.load(path).dataobj)
        ref = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
        assert np.array_equal(ref, item["image"], equal_nan=True), path
    return item["image"]


def test_real_medical_files_keep_every_readable_one_in_any_row_order(tmp_path):
    files = _medical_files()
    refs = {p: _reference(p) for p in files}
    readable = sorted(p for p, r in refs.items() if r is not None and np.isfinite(r).all())
    assert len(readable) > 30 and len({refs[p].dtype for p in readable}) >= 4  # int16, uint16, float32...
    rng = np.random.default_rng(1)
    kept = []
    for k, order in enumerate([files, list(rng.permutation(files))]):
        table = tmp_path / f"scans{k}.csv"
        table.write_text("path,label\n" + "".join(f"{p},{j % 2}\n" for j, p in enumerate(order)))
        cache = prebake.build(table, tmp_path / f"c{k}", workers=2, progress=False)
        got = {key.split(": ", 1)[1]: i for i, key in enumerate(keys_of(cache))}
        for p, i in got.items():
            value = cache[i]["image"]
            assert value.shape == refs[p].shape and np.array_equal(value, refs[p]), p  # promoted exactly
        kept.append(sorted(got))
    assert kept[0] == kept[1] == readable  # before: 4 kept, and another 4 in another order


def test_skimage_sample_images_beside_the_photos_are_kept_at_their_own_size(tmp_path):
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed: its sample rows are skipped")
    want = write_photos(tmp_path / "photos")
    for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "moon", "coins", "page", "logo",
                 "hubble_deep_field", "immunohistochemistry", "horse", "checkerboard", "text", "clock"):
        try:
            pixels = getattr(data, name)()
        except (OSError, ValueError, ImportError):  # a sample the wheel does not ship (downloaded on demand)
            continue
        path = tmp_path / "photos" / "a" / f"sk_{name}.png"
        Image.fromarray(pixels).save(path)  # grey, RGB, RGBA and bool samples, of many sizes
        with Image.open(path) as im:
            want[f"a/{path.name}"] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    assert len(want) >= 30
    cache = prebake.build(tmp_path / "photos", tmp_path / "c", workers=2)
    assert len(cache) == len(want) and cache.manifest["skipped"] == []
    for i, key in enumerate(keys_of(cache)):
        assert np.array_equal(cache[i]["image"], want[key]), key


def test_strings_longer_than_the_first_are_kept(tmp_path):
    items = [{"path": "/data/" + "x" * k + ".png", "label": k} for k in range(12)]
    cache = prebake.build(Items(items, np.arange(12), "paths"), tmp_path / "c", workers=0)
    assert len(cache) == 12 and [str(cache[i]["path"]) for i in range(12)] == [it["path"] for it in items]
    assert cache.manifest["columns"]["path"]["dtype"] == "<U21"  # the longest, not item 0's


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0]])
def test_int16_beside_uint16_promotes_to_int32_exactly(tmp_path, order):
    values = [np.array([-32768, 5], np.int16), np.array([65535, 0], np.uint16),
              np.array([7, -1], np.int16), np.array([40000, 1], np.uint16)]
    items = [{"v": v, "label": k} for k, v in enumerate(values)]
    cache = prebake.build(Items(items, np.array(order), "ints"), tmp_path / "c", workers=0)
    col = cache.manifest["columns"]["v"]
    assert col["dtype"] == "<i4" and col["schema"]["rule"] == "promoted"
    assert col["schema"]["dtypes"] == {"<i2": 2, "<u2": 2}
    assert {int(cache[i]["label"]): cache[i]["v"].tolist() for i in range(4)} == \
        {k: v.astype(np.int64).tolist() for k, v in enumerate(values)}


@pytest.mark.parametrize("a, b, lost, v", [("i8", "u8", "float64", 3), ("i8", "f4", "float64", 2**53 + 1),
                                           ("u8", "i2", "float64", 3)])
def test_a_promotion_that_loses_precision_is_refused_with_the_fix(tmp_path, a, b, lost, v):
    """int64 beside float32 is refused when a value is beyond float64's exact integers (3 and 5 are held)."""
    items = [{"v": np.array(v, a), "label": 0}, {"v": np.array(4, b), "label": 1},
             {"v": np.array(v + 2, a), "label": 2}]
    out = tmp_path / "c"
    with pytest.raises(SchemaError) as e:
        prebake.build(Items(items, np.arange(3), f"{a}{b}"), out, workers=0)
    msg = str(e.value)
    assert "column 'v'" in msg and str(np.dtype(a)) in msg and str(np.dtype(b)) in msg and lost in msg
    assert "e.g. 0" in msg and "e.g. 1" in msg  # an item that brought each dtype
    assert "dtypes={'v': " in msg and "nothing was committed" in msg
    assert not out.exists() and partial_path(out).exists()  # kept for a re-run
    fixed = prebake.build(Items(items, np.arange(3), f"{a}{b}"), out, workers=0, dtypes={"v": "int64"})
    assert [int(fixed[i]["v"]) for i in range(3)] == [v, 4, v + 2] and fixed[0]["v"].dtype == np.int64


def test_a_refused_mix_stops_the_build_at_the_first_chunk_that_shows_it(tmp_path):
    items = [{"v": np.array(k, np.uint64 if k == 5 else np.int64), "label": k} for k in range(400)]
    log = tmp_path / "reads"
    with pytest.raises(SchemaError, match="e.g. 5"):
        prebake.build(Counted(items, np.arange(400), "early", log), tmp_path / "c", workers=0, chunk_rows=10)
    assert len(log.read_text()) <= 20  # the probe and the first chunk, not the 400 items


def test_text_beside_numbers_and_different_axis_counts_are_refused(tmp_path):
    mixed = [{"v": np.array(3), "label": 0}, {"v": np.array("three"), "label": 1}]
    with pytest.raises(SchemaError, match="mix number and text"):
        prebake.build(Items(mixed, np.arange(2), "text"), tmp_path / "t", workers=0)
    axes = [{"image": np.zeros((3, 4, 4), np.uint8)}, {"image": np.zeros((4, 4), np.uint8)}]
    with pytest.raises(SchemaError, match=r"different numbers of axes: 2 axes \(1 item, e.g. 1\); 3 axes"):
        prebake.build(Items(axes, np.arange(2), "axes"), tmp_path / "a", workers=0)


def test_dtypes_casts_every_item_and_an_out_of_range_value_is_that_items_fault(tmp_path):
    values = [np.array([1.0, 2.0], np.float32), np.array([40000.0, 0], np.float32), np.array([2.5, 1], np.float64),
              np.array([-7, 3], np.int64), np.array([32767, -32768], np.uint16 if False else np.int32)]
    items = [{"v": v, "label": k} for k, v in enumerate(values)]
    cache = prebake.build(Items(items, np.arange(5), "cast"), tmp_path / "c", workers=0, dtypes={"v": "int16"})
    reasons = {s["key"]: s["reason"] for s in cache.manifest["skipped"]}
    assert sorted(reasons) == ["1", "2"]
    assert "out of int16's range -32768..32767: it holds 40000.0" in reasons["1"] and "never wrapped" in reasons["1"]
    assert "holds fractions, which int16 cannot hold exactly: 2.5" in reasons["2"]
    assert cache.manifest["columns"]["v"]["dtype"] == "<i2"
    assert cache.manifest["columns"]["v"]["schema"]["rule"] == "given"
    assert [cache[i]["v"].tolist() for i in range(3)] == [[1, 2], [-7, 3], [32767, -32768]]
    with pytest.raises(OptionError, match="'v=notadtype'"):
        prebake.build(Items(items, np.arange(5), "cast"), tmp_path / "d", workers=0, dtypes={"v": "notadtype"})
    with pytest.raises(OptionError, match=r"names \['w'\]"):
        prebake.build(Items(items, np.arange(5), "cast"), tmp_path / "e", workers=0, dtypes={"w": "int16"})


class Counted(Items):
    """Items that note each read in a file (state outside the dataset: its identity stays the same)."""

    def __init__(self, items: list[Any], order: np.ndarray, tag: str, log: Path):
        super().__init__(items, order, tag)
        self.log = log

    def __getitem__(self, i: int) -> dict[str, Any]:
        with open(self.log, "a") as f:
            f.write(".")
        return super().__getitem__(i)


def test_max_skipped_fails_the_build_and_a_higher_limit_commits_without_baking_again(tmp_path):
    items: list[Any] = [{"v": np.array(k), "label": k} for k in range(10)]
    items[3] = items[7] = None  # two bad items
    out, log = tmp_path / "c", tmp_path / "reads"
    for limit in (0, 1, 0.1):
        with pytest.raises(TooManySkippedError, match=r"2 of 10 items were skipped as bad, more than `max_skipped="):
            prebake.build(Counted(items, np.arange(10), "skips", log), out, workers=0, max_skipped=limit)
        assert not out.exists() and partial_path(out).exists()
    log.write_text("")
    cache = prebake.build(Counted(items, np.arange(10), "skips", log), out, workers=0, max_skipped=2)
    assert len(cache) == 8 and cache.build_report.action == "resumed" and log.read_text() == ""
    with pytest.raises(TooManySkippedError, match="up to date"):  # an existing cache is held to the limit too
        prebake.build(Counted(items, np.arange(10), "skips", log), out, workers=0, max_skipped=0.15)
    assert len(prebake.build(Counted(items, np.arange(10), "skips", log), out, workers=0, max_skipped=0.2)) == 8
    with pytest.raises(OptionError, match="`max_skipped` is 1.5, out of range"):
        prebake.build(Counted(items, np.arange(10), "skips", log), out, workers=0, max_skipped=1.5)


def test_every_build_ends_with_kept_k_of_n(tmp_path, capsys, caplog):
    photos = tmp_path / "photos"
    write_photos(photos)
    (photos / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    assert main(["build", str(photos), str(tmp_path / "c"), "--workers", "0", "--max-skipped", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "kept 20 of 21, skipped 1"
    assert main(["build", str(photos), str(tmp_path / "c"), "--workers", "0"]) == 0  # up to date: said again
    assert capsys.readouterr().out.strip().splitlines()[-1] == "kept 20 of 21, skipped 1"
    assert main(["build", str(photos), str(tmp_path / "d"), "--workers", "0", "--max-skipped", "0"]) == 2
    assert "1 of 21 items were skipped as bad, more than --max-skipped 0 allows" in capsys.readouterr().err
    with caplog.at_level(logging.INFO, logger="prebake"):
        cache = prebake.build(photos, tmp_path / "c", workers=0)
    assert "kept 20 of 21, skipped 1" in caplog.text and len(cache.build_report.skipped) == 1


def test_the_cli_takes_dtype_and_info_says_why(tmp_path, capsys):
    spec = tmp_path / "ds.py"
    spec.write_text("import numpy as np\n"
                    "def make():\n"
                    "    return [{'v': np.array([k], np.int16 if k % 2 else np.uint16), 'label': k}\n"
                    "            for k in range(6)]\n")
    assert main(["build", "--dataset", f"{spec}:make", str(tmp_path / "c"), "--workers", "0"]) == 0
    assert main(["build", "--dataset", f"{spec}:make", str(tmp_path / "d"), "--workers", "0",
                 "--dtype", "v=float32"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "c")]) == 0
    assert "v            fixed [1]; int32 (promoted from int16 x 3, uint16 x 3)" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "d")]) == 0
    assert "float32 (given by --dtype, items were int16 x 3, uint16 x 3)" in capsys.readouterr().out
    assert prebake.open(tmp_path / "d")[1]["v"].dtype == np.float32


def test_a_column_declared_ragged_stays_ragged_when_every_item_agrees(tmp_path):
    one = prebake.write_arrays(tmp_path / "w", {"seq": [np.zeros((3, 2), np.float32)], "label": np.zeros(1, np.int64)})
    assert one.specs["seq"].ragged and one[0]["seq"].shape == (3, 2)
    items = [{"seq": np.ones((4, 2), np.int16), "label": k} for k in range(3)]
    built = prebake.build(Items(items, np.arange(3), "same"), tmp_path / "b", workers=0, ragged=["seq"])
    assert built.manifest["columns"]["seq"]["shape"] == [None, 2] and len(prebake.Elements(built, "seq")) == 12
    undeclared = prebake.build(Items(items, np.arange(3), "same"), tmp_path / "u", workers=0)
    assert undeclared.manifest["columns"]["seq"]["shape"] == [4, 2]


@pytest.fixture
def shaped(tmp_path):
    items = [{"image": (np.arange(3 * h * w) % 251 + k).astype(np.uint8).reshape(3, h, w), "label": k}
             for k, (h, w) in enumerate([(4, 5), (6, 3), (4, 5), (2, 7), (5, 5), (3, 3)])]
    return items, prebake.build(Items(items, np.arange(6), "shaped"), tmp_path / "c", workers=0, chunk_rows=2)


def test_the_loader_hands_ragged_nd_items_at_their_own_shapes_or_padded(shaped):
    items, cache = shaped
    assert [cache[i]["image"].shape for i in range(6)] == [it["image"].shape for it in items]
    batch = cache[[4, 1]]
    assert [x.shape for x in batch["image"]] == [(3, 5, 5), (3, 6, 3)]
    for preload in (None, "ram"):
        seen = []
        for b in prebake.Loader(cache, 4, shuffle=True, seed=2, preload=preload):
            for x, k in zip(b["image"], b["label"].tolist()):
                assert torch.equal(x, torch.from_numpy(items[k]["image"]))
                seen.append(k)
        assert sorted(seen) == list(range(6))
        for b in prebake.Loader(cache, 3, shuffle=True, seed=2, preload=preload, pad=True):
            h, w = (max(items[k]["image"].shape[a] for k in b["label"].tolist()) for a in (1, 2))
            assert tuple(b["image"].shape) == (3, 3, h, w)
            for x, s, k in zip(b["image"], b["image_shape"], b["label"].tolist()):
                ref = torch.from_numpy(items[k]["image"])
                assert tuple(s.tolist()) == tuple(ref.shape)
                assert torch.equal(x[:, : ref.shape[1], : ref.shape[2]], ref) and x.sum() == ref.sum()


def test_views_and_convert_refuse_a_ragged_nd_column(shaped):
    _, cache = shaped
    with pytest.raises(ViewError, match="differ beyond their first axis"):
        prebake.Windows(cache, "image", 2)
    with pytest.raises(ViewError, match="differ beyond their first axis"):
        prebake.Elements(cache, "image")
    with pytest.raises(ViewError, match="convert them in transform"):
        prebake.Loader(cache, 2, convert={"image": torch.float32})


def test_verify_and_the_reader_catch_shapes_that_disagree_with_the_offsets(shaped):
    from prebake.cache.files import file_checksum

    _, cache = shaped
    path = Path(cache.path)
    shapes = np.load(path / "image.shapes.npy")
    shapes[1] = (3, 3, 6)  # the same element count: only the shapes file can tell
    shapes[2] = (3, 5, 5)  # 75 elements where the offsets hold 60
    np.save(path / "image.shapes.npy", shapes)
    m = json.loads((path / "manifest.json").read_text())
    m["columns"]["image"]["files"]["image.shapes.npy"]["xxh3_64"] = file_checksum(path / "image.shapes.npy")
    (path / "manifest.json").write_text(json.dumps(sign_manifest(m)))
    report = prebake.verify(path)
    assert not report.ok and any("image.shapes.npy: shapes do not match" in p and "item 2 has shape (3, 5, 5)" in p
                                 for p in report.problems)
    with pytest.raises(CacheCorruptError, match="item 2 has shape"):
        prebake.open(path)[2]


def test_hdf5_export_round_trips_a_ragged_nd_column_byte_for_byte(shaped, tmp_path):
    pytest.importorskip("h5py")
    from prebake.cache.export import export_hdf5

    _, cache = shaped
    export_hdf5(cache.path, tmp_path / "c.h5")
    back = prebake.build(tmp_path / "c.h5", tmp_path / "back", workers=0)
    for name in ("image.values.npy", "image.offsets.npy", "image.shapes.npy", "label.npy"):
        assert (Path(back.path) / name).read_bytes() == (Path(cache.path) / name).read_bytes(), name


def test_a_uniform_source_spills_nothing_and_rewrites_nothing(tmp_path, monkeypatch):
    import prebake.bake.rewrite as R

    calls = []
    monkeypatch.setattr(R, "write_column", lambda *a: calls.append(a))
    items = [{"image": np.full((3, 4, 4), k, np.uint8), "s": "ab", "label": k} for k in range(9)]
    cache = prebake.build(Items(items, np.arange(9), "uniform"), tmp_path / "c", workers=0, chunk_rows=4)
    assert calls == [] and len(cache) == 9
    assert all(c["schema"]["rule"] == "uniform" for c in cache.manifest["columns"].values())


def test_random_mixes_of_shapes_dtypes_strings_and_orders(tmp_path):
    row = schema(tmp_path, trials=12, seed=os.getpid() % 1000)
    assert row.failures == 0, row.examples


def test_to_hf_refuses_a_ragged_nd_column_and_exports_the_rest(shaped, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from prebake.integrations.hf import to_hf

    _, cache = shaped
    with pytest.raises(OptionError, match=r"column 'image' holds items of shape \[3, None, None\]"):
        to_hf(cache)
    assert to_hf(cache, columns=["label"])["label"] == list(range(6))
