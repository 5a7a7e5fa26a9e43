"""The on-disk format, pinned: manifest fields, file names, .npy headers, safety rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xxhash

import prebake
from prebake.cache.files import file_checksum
from prebake.cache.format import FORMAT_VERSION, MANIFEST_KEYS, validate_column_name
from prebake.errors import FormatError
from prebake.synthetic import write_cifar10_python


def _cifar_cache(tmp_path):
    src = write_cifar10_python(tmp_path / "data", n_train=50, n_test=10)
    return prebake.build(src, tmp_path / "cache", workers=0)


def test_golden_manifest_fields_and_file_names(tmp_path):
    caches = _cifar_cache(tmp_path)
    assert sorted(caches) == ["test", "train"]
    train = tmp_path / "cache" / "train"
    assert sorted(p.name for p in train.iterdir()) == ["_item_keys.json", "build.log", "image.npy", "label.npy",
                                                       "manifest.json"]
    m = json.loads((train / "manifest.json").read_text())
    assert tuple(m) == MANIFEST_KEYS == (
        "format", "format_version", "prebake_version", "created", "num_items", "columns",
        "classes", "fingerprint", "skipped", "stats", "item_ids", "item_keys", "manifest_xxh3_64",
    )
    assert m["format"] == "prebake-cache" and m["format_version"] == FORMAT_VERSION == 2
    assert m["num_items"] == 50
    assert m["columns"]["image"] == {
        "dtype": "|u1", "shape": [3, 32, 32], "ragged": False,
        "files": {"image.npy": {"bytes": 128 + 50 * 3072, "xxh3_64": file_checksum(train / "image.npy")}},
        "schema": {"dtypes": {"|u1": 50}, "rule": "uniform", "shape_min": [3, 32, 32], "shape_max": [3, 32, 32]},
    }
    assert m["columns"]["label"]["dtype"] == "<i8" and m["columns"]["label"]["shape"] == []
    assert m["classes"][:3] == ["airplane", "automobile", "bird"] and len(m["classes"]) == 10
    assert set(m["fingerprint"]) == {"digest", "inputs", "origin"}  # origin: how ls opens the source again
    assert set(m["fingerprint"]["origin"]) == {"path", "kind", "options", "split"}
    assert m["fingerprint"]["origin"]["kind"] == "cifar" and m["fingerprint"]["origin"]["split"] == "train"
    assert set(m["fingerprint"]["inputs"]) == {"format_version", "prebake_version", "source", "transforms", "options"}
    assert m["fingerprint"]["inputs"]["prebake_version"] == prebake.__version__
    assert all(v[1].startswith("xxh3_64:") for v in m["fingerprint"]["inputs"]["source"]["files"].values())
    assert m["skipped"] == []
    assert m["item_ids"] is None  # CIFAR items have no per-item file identity
    keys = json.loads((train / "_item_keys.json").read_text())  # the source key of each row: splits follow it
    assert len(keys) == 50 and len(set(keys)) == 50 and all(isinstance(k, str) for k in keys)
    assert m["item_keys"] == {"bytes": (train / "_item_keys.json").stat().st_size,
                              "xxh3_64": file_checksum(train / "_item_keys.json")}
    assert set(m["stats"]) == {"columns", "label_histogram"}
    assert set(m["stats"]["columns"]["image"]) == {"min", "max", "mean"}
    assert sum(m["stats"]["label_histogram"].values()) == 50
    # the checksum covers every other key: sorted, compact, ASCII JSON, hashed with xxh3-64
    body = {k: v for k, v in m.items() if k != "manifest_xxh3_64"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert m["manifest_xxh3_64"] == xxhash.xxh3_64_hexdigest(canonical)


def test_npy_header_is_numpy_standard_v1(tmp_path):
    _cifar_cache(tmp_path)
    raw = (tmp_path / "cache" / "train" / "image.npy").read_bytes()
    assert raw[:8] == b"\x93NUMPY\x01\x00"
    header_len = int.from_bytes(raw[8:10], "little")
    assert (10 + header_len) % 64 == 0  # aligned data, as numpy writes it
    header = raw[10 : 10 + header_len].decode("latin1")
    assert header.startswith("{'descr': '|u1', 'fortran_order': False, 'shape': (50, 3, 32, 32), }")


def test_every_column_loads_without_pickle(tmp_path):
    cache = prebake.write_arrays(tmp_path / "c", {
        "image": np.zeros((4, 3, 2, 2), np.uint8), "label": np.arange(4),
        "signal": [np.arange(i, dtype=np.int16) for i in range(4)],
    })
    files = [f for col in cache.manifest["columns"].values() for f in col["files"]]
    assert sorted(files) == ["image.npy", "label.npy", "signal.offsets.npy", "signal.values.npy"]
    for f in files:
        arr = np.load(tmp_path / "c" / f, mmap_mode="r", allow_pickle=False)
        assert arr.dtype != object
    offsets = np.load(tmp_path / "c" / "signal.offsets.npy", allow_pickle=False)
    assert offsets.tolist() == [0, 0, 1, 3, 6]


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "", ".hidden", "_journal", "x y"])
def test_bad_column_names_are_refused(name):
    with pytest.raises(FormatError, match="not allowed"):
        validate_column_name(name)


def test_object_and_structured_dtypes_are_refused(tmp_path):
    with pytest.raises(FormatError, match="never pickles"):
        prebake.write_arrays(tmp_path / "o", {"x": np.array([{"a": 1}, None], dtype=object)})
    with pytest.raises(FormatError, match="structured"):
        prebake.write_arrays(tmp_path / "s", {"x": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f4")])})
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()


def test_manifest_of_newer_format_is_refused_with_a_fix(tmp_path):
    _cifar_cache(tmp_path)
    path = tmp_path / "cache" / "test"
    m = json.loads((path / "manifest.json").read_text())
    m["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match="rebuild"):
        prebake.open(path)


def _shaped_cache(tmp_path):
    """Photos of three sizes and mixed dtypes: a ragged N-D column (image), a promoted one (v), a widened one (s)."""
    sizes = [(4, 5), (6, 3), (4, 5)]
    items = [{"image": np.arange(3 * h * w, dtype=np.uint8).reshape(3, h, w), "label": k,
              "v": np.array(k, np.int16 if k % 2 else np.uint16), "s": "x" * (k + 1)} for k, (h, w) in enumerate(sizes)]
    return prebake.build(items, tmp_path / "nd", workers=0)


def test_golden_ragged_nd_column(tmp_path):
    cache = _shaped_cache(tmp_path)
    path = tmp_path / "nd"
    m = json.loads((path / "manifest.json").read_text())
    files = ["image.offsets.npy", "image.shapes.npy", "image.values.npy"]
    assert sorted(p.name for p in path.iterdir()) == sorted(["_item_keys.json", "build.log", *files, "label.npy",
                                                             "manifest.json", "s.npy", "v.npy"])
    image = m["columns"]["image"]
    assert (image["dtype"], image["shape"], image["ragged"]) == ("|u1", [3, None, None], True)
    assert sorted(image["files"]) == files
    assert image["schema"] == {"dtypes": {"|u1": 3}, "rule": "uniform", "shape_min": [3, 4, 3], "shape_max": [3, 6, 5]}
    assert m["columns"]["v"]["dtype"] == "<i4" and m["columns"]["v"]["schema"]["rule"] == "promoted"
    assert m["columns"]["s"]["dtype"] == "<U3"
    values = np.load(path / "image.values.npy", allow_pickle=False)
    offsets = np.load(path / "image.offsets.npy", allow_pickle=False)
    shapes = np.load(path / "image.shapes.npy", allow_pickle=False)
    assert values.dtype == np.uint8 and values.shape == (60 + 54 + 60,)  # every item's elements, 1-D, C order
    assert offsets.tolist() == [0, 60, 114, 174] and shapes.tolist() == [[3, 4, 5], [3, 6, 3], [3, 4, 5]]
    assert np.array_equal(values[60:114].reshape(3, 6, 3), cache[1]["image"])
    assert cache[1]["image"].shape == (3, 6, 3)


def test_a_prebake_before_ragged_nd_columns_refuses_them_and_reads_the_rest(tmp_path):
    """The format version stays 2: a prebake 0.1.0 checks every manifest's shapes and files tables, so it
    refuses a cache with a ragged N-D column (FormatError naming it) instead of misreading it, and it reads a
    uniform cache written now (the new ``schema`` entries are extra keys it ignores)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "prebake.cache.format_0_1_0"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("format_0_1_0.py"))
    old = importlib.util.module_from_spec(spec)
    sys.modules[name] = old  # its dataclass looks itself up there
    try:
        spec.loader.exec_module(old)
    finally:
        del sys.modules[name]
    _shaped_cache(tmp_path)
    m = json.loads((tmp_path / "nd" / "manifest.json").read_text())
    with pytest.raises(FormatError, match=r"columns.image.shape is \[3, None, None\]"):
        old.check_manifest(m, tmp_path / "nd" / "manifest.json")
    m["columns"]["image"]["shape"] = [None, 3, 4, 5]  # even a shape it takes: its files table is another
    with pytest.raises(FormatError, match=r"columns.image.files .*exactly the files"):
        old.check_manifest(old.sign_manifest(m), tmp_path / "nd" / "manifest.json")
    _cifar_cache(tmp_path)
    uniform = json.loads((tmp_path / "cache" / "train" / "manifest.json").read_text())
    assert "schema" in uniform["columns"]["image"]
    assert old.check_manifest(uniform, tmp_path / "cache" / "train" / "manifest.json") == uniform
