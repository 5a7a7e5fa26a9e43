"""Sources on tiny real files: detection, exact pixels, bad items, and the restricted unpickler."""

from __future__ import annotations

import io
import os
import pickle
import struct
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from prebake import synthetic
from prebake.errors import BadItemError, SourceError, UnsafePickleError
from prebake.sources import DatasetSource, SourceOptions, detect
from prebake.sources.images import decode_image


def test_cifar10_python_pixels_labels_order(tmp_path):
    batches = synthetic.write_cifar10_python(tmp_path, n_train=50, n_test=20, seed=3)
    splits = detect(tmp_path)  # the parent folder holding cifar-10-batches-py
    assert list(splits) == ["train", "test"]
    train, test = splits["train"], splits["test"]
    assert train.kind == "cifar" and train.classes == list(synthetic.CIFAR10_CLASSES)
    for source, split in ((train, "train"), (test, "test")):
        images, labels = synthetic.cifar_arrays(len(source), 10, seed=3, split=split)
        for i in range(len(source)):
            item = source.read(i)
            assert item["image"].dtype == np.uint8 and item["image"].shape == (3, 32, 32)
            assert item["image"].flags["C_CONTIGUOUS"]
            np.testing.assert_array_equal(item["image"], images[i])
            assert item["label"] == labels[i] and isinstance(item["label"], int)
    assert train.keys()[:2] == ["data_batch_1/00000", "data_batch_1/00001"]
    assert train.keys()[10] == "data_batch_2/00000" and test.keys()[-1] == "test_batch/00019"
    desc = train.describe()
    assert desc["root"] == str(batches.resolve()) and desc["params"]["split"] == "train"
    assert set(desc["files"]) == {f"data_batch_{k}" for k in range(1, 6)} | {"batches.meta"}
    assert set(detect(batches, kind="cifar")) == {"train", "test"}


def test_cifar100_python_fine_and_coarse(tmp_path):
    folder = synthetic.write_cifar100_python(tmp_path, n_train=30, n_test=10)
    train = detect(folder)["train"]
    images, fine = synthetic.cifar_arrays(30, 100, seed=0, split="train")
    assert train.classes == list(synthetic.CIFAR100_FINE) and train.classes[0] == "apple"
    for i in range(30):
        item = train.read(i)
        np.testing.assert_array_equal(item["image"], images[i])
        assert item["label"] == fine[i]
        assert item["coarse_label"] == synthetic.CIFAR100_FINE_TO_COARSE[fine[i]]
    assert train.keys()[0] == "train/00000"
    apple = synthetic.CIFAR100_FINE.index("apple")
    assert synthetic.CIFAR100_COARSE[synthetic.CIFAR100_FINE_TO_COARSE[apple]] == "fruit_and_vegetables"


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_binary_matches_python(tmp_path, variant):
    write_bin = getattr(synthetic, f"write_{variant}_binary")
    write_py = getattr(synthetic, f"write_{variant}_python")
    bin_dir = write_bin(tmp_path / "b", n_train=25, n_test=5, seed=1)
    py_dir = write_py(tmp_path / "p", n_train=25, n_test=5, seed=1)
    binary, python = detect(tmp_path / "b"), detect(py_dir)
    assert binary["train"].kind == "cifar-bin" and set(binary) == {"train", "test"}
    for split in ("train", "test"):
        assert binary[split].keys() == python[split].keys()
        assert binary[split].classes == python[split].classes
        for i in range(len(binary[split])):
            a, b = binary[split].read(i), python[split].read(i)
            np.testing.assert_array_equal(a["image"], b["image"])
            assert a == {**b, "image": a["image"]}
    assert set(detect(bin_dir, kind="cifar-bin")) == {"train", "test"}


def test_cifar_bad_files(tmp_path):
    folder = synthetic.write_cifar10_binary(tmp_path, n_train=10, n_test=5)
    with open(folder / "data_batch_3.bin", "ab") as f:
        f.write(b"\0" * 100)
    with pytest.raises(SourceError, match=r"data_batch_3\.bin is 6,246 bytes, not a multiple of the 3073"):
        detect(folder)
    folder = synthetic.write_cifar10_python(tmp_path, n_train=10, n_test=5)
    (folder / "data_batch_4").unlink()
    with pytest.raises(SourceError, match=r"data_batch_4 is missing"):
        detect(folder)
    data = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_4").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"data_batch_4 is not a readable CIFAR batch"):
        detect(folder)
    with open(folder / "data_batch_4", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(SourceError, match=r"data_batch_4: 'data' is uint8 \(2, 100\), expected uint8 \(N, 3072\)"):
        detect(folder)


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python-2 ``str`` (BINSTRING), like the real CIFAR download."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n))
        self.write(obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = lambda self, obj: self.save_bytes(obj.encode("latin1"))


def test_cifar_reads_python2_pickles(tmp_path):
    folder = synthetic.write_cifar10_python(tmp_path, n_train=10, n_test=5)
    data = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump({"batch_label": "test", "labels": [7, 9], "data": data})
    # numpy 1.x (what the real files were written with) named the module numpy.core.multiarray
    (folder / "test_batch").write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    test = detect(folder)["test"]
    assert [test.read(i)["label"] for i in range(2)] == [7, 9]
    np.testing.assert_array_equal(test.read(1)["image"], data[1].reshape(3, 32, 32))


@pytest.mark.parametrize("how", ["system", "eval"])
def test_restricted_unpickler_refuses_code(tmp_path, how):
    folder = synthetic.write_cifar10_python(tmp_path, n_train=10, n_test=5)
    marker = tmp_path / "pwned"
    call = (os.system, (f"touch {marker}",)) if how == "system" else (eval, (f"open({str(marker)!r}, 'w')",))
    payload = type("Exploit", (), {"__reduce__": lambda self: call})()  # a plain unpickler runs call
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": payload, b"labels": [0]}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match=rf"data_batch_2 references \w+\.{how}; CIFAR batches only"):
        detect(folder)
    assert not marker.exists()
    with open(folder / "data_batch_2", "wb") as f:  # allowed globals, but an object array
        pickle.dump({b"data": np.array([1, "x"], dtype=object), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(SourceError, match="object array"):
        detect(folder)


def test_exif_orientation_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)  # H=20, W=40: left half red, right half blue
    pixels[:, :20, 0] = 255
    pixels[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", "JPEG", exif=exif, quality=95)
    image = decode_image(tmp_path / "rot.jpg")
    assert image.mode == "RGB" and image.size == (20, 40)  # now W=20, H=40
    a = np.asarray(image).astype(int)
    assert a[5, 10, 0] > 200 and a[5, 10, 2] < 60  # top: the old left (red)
    assert a[35, 10, 2] > 200 and a[35, 10, 0] < 60  # bottom: the old right (blue)


def test_modes_to_rgb(tmp_path):
    gray = np.array([[0, 100, 255]], np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(np.asarray(decode_image(tmp_path / "l.png")), np.repeat(gray[..., None], 3, -1))
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(decode_image(tmp_path / "a.png")), rgba[..., :3])
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(np.asarray(decode_image(tmp_path / "p.png")), [[[255, 0, 0], [0, 255, 0]]])
    deep = np.array([[0, 256, 1000, 65535]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "g16.png")
    out = decode_image(tmp_path / "g16.png")  # 16-bit grey stays 16-bit, one channel
    assert isinstance(out, np.ndarray) and out.dtype == np.uint16 and out.shape == (1, 1, 4)
    np.testing.assert_array_equal(out[0], deep)


def test_bad_image_files(tmp_path):
    expected = synthetic.write_bad_images(tmp_path)
    assert len(expected) >= 6
    for name, reason in expected.items():
        with pytest.raises(BadItemError) as info:
            decode_image(tmp_path / name)
        assert reason in info.value.reason, (name, info.value.reason)
    with pytest.raises(BadItemError, match="file not found"):
        decode_image(tmp_path / "nope.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(BadItemError, match="is a directory"):
        decode_image(tmp_path / "folder.png")


def test_image_folder(tmp_path):
    root = synthetic.write_image_folder(tmp_path / "pets", classes=("dog", "cat"), per_class=3, size=(32, 24))
    nested = root / "cat" / "more"
    nested.mkdir()
    Image.new("RGB", (5, 7), (1, 2, 3)).save(nested / "extra.PNG", "PNG")
    (root / "cat" / "notes.txt").write_text("ignored")
    (root / "dog" / ".hidden.png").write_bytes(b"ignored")
    bad = synthetic.write_bad_images(root / "dog")
    source = detect(root)[""]
    assert source.kind == "imagefolder" and source.classes == ["cat", "dog"]
    cats = ["cat/cat_000.png", "cat/cat_001.png", "cat/cat_002.png", "cat/more/extra.PNG"]
    assert source.keys()[:4] == cats
    assert len(source) == 4 + 3 + len(bad)
    item = source.read(0)
    assert item["label"] == 0 and item["image"].size == (32, 24) and item["image"].mode == "RGB"
    np.testing.assert_array_equal(np.asarray(item["image"]), np.asarray(Image.open(root / cats[0])))
    assert np.asarray(source.read(3)["image"])[0, 0].tolist() == [1, 2, 3]
    reasons = {}
    for i, key in enumerate(source.keys()):
        try:
            assert source.read(i)["label"] == int(key.startswith("dog/"))
        except BadItemError as e:
            reasons[key] = e.reason
    assert {k.split("/")[1] for k in reasons} == set(bad)
    assert "dog/truncated.png" in source.describe()["files"]


def test_image_folder_splits_share_classes(tmp_path):
    root = synthetic.write_image_folder(tmp_path, classes=("a", "b"), per_class=2, splits=("train", "val"))
    synthetic.write_image_folder(tmp_path / "train", classes=("c",), per_class=1)
    splits = detect(root)
    assert list(splits) == ["train", "val"]
    assert splits["train"].classes == splits["val"].classes == ["a", "b", "c"]
    assert [splits["train"].read(i)["label"] for i in range(5)] == [0, 0, 1, 1, 2]
    assert splits["val"].keys() == ["a/a_000.png", "a/a_001.png", "b/b_000.png", "b/b_001.png"]


def test_csv_string_labels(tmp_path):
    csv_path = synthetic.write_csv_table(tmp_path, n=9, labels="single", bad_rows=True)
    source = detect(csv_path)[""]
    assert source.kind == "csv" and source.path_column == "image_path"
    assert source.classes == ["benign", "malignant", "normal"] and source.label_names == ["diagnosis"]
    rows = csv_path.read_text().splitlines()
    assert source.keys()[0] == "row 2: scans/0000.png"
    for i in range(9):
        item = source.read(i)
        assert source.classes[item["label"]] == rows[i + 1].split(",")[1]
        assert item["image"].size == (32, 32)
    reasons = []
    for i in range(9, 12):
        with pytest.raises(BadItemError) as info:
            source.read(i)
        reasons.append(f"{source.keys()[i]}: {info.value.reason}")  # as the manifest pairs them
    assert reasons == [
        f"row 11: scans/missing.png: file not found: {csv_path.parent.resolve() / 'scans' / 'missing.png'} (read "
        f"under {csv_path.parent.resolve()}, the CSV's folder; if the CSV's paths are relative to another directory, "
        "pass `base_dir='DIR'`)",
        "row 12: empty path in column 'image_path'",
        "row 13: has 1 fields, the header has 2",
    ]
    files = source.describe()["files"]
    assert "labels.csv" in files and "scans/0008.png" in files


def test_csv_int_and_multi_labels(tmp_path):
    source = detect(synthetic.write_csv_table(tmp_path / "i", n=6, labels="int"))[""]
    assert source.classes is None and [source.read(i)["label"] for i in range(6)] == [
        int(line.split(",")[1]) for line in (tmp_path / "i" / "labels.csv").read_text().splitlines()[1:]
    ]
    multi = detect(synthetic.write_csv_table(tmp_path / "m", n=6, labels="multi"))[""]
    assert multi.label_names == ["effusion", "nodule", "pneumonia"] and multi.classes is None
    label = multi.read(0)["label"]
    assert label.dtype == np.int64 and label.shape == (3,)
    expected = (tmp_path / "m" / "labels.csv").read_text().splitlines()[1].split(",")[1:]
    assert label.tolist() == [int(v) for v in expected]


def test_csv_options_base_dir_floats_and_bad_values(tmp_path):
    synthetic.write_image_folder(tmp_path / "data", classes=("x",), per_class=2)
    table = tmp_path / "tables" / "scores.csv"
    table.parent.mkdir()
    absolute = (tmp_path / "data" / "x" / "x_001.png").resolve()
    table.write_text(f"Scan,score_a,score_b\nx/x_000.png,0.5,1\n{absolute},2,3\nx/x_000.png,1,oops\n")
    with pytest.raises(SourceError, match=r"no image path column.*\['Scan', 'score_a', 'score_b'\].*path_column"):
        detect(table)
    options = SourceOptions(path_column="Scan", base_dir=str(tmp_path / "data"))
    source = detect(table, kind="csv", options=options)[""]
    first = source.read(0)["label"]
    assert first.dtype == np.float32 and first.tolist() == [0.5, 1.0]
    assert source.read(1)["label"].tolist() == [2.0, 3.0]
    with pytest.raises(BadItemError, match=r"^label 'oops' in column 'score_b' is not a number"):
        source.read(2)
    only_b = detect(table, options=SourceOptions("scan", ("score_b",), str(tmp_path / "data")))[""]
    assert only_b.classes == ["1", "3", "oops"] and only_b.read(2)["label"] == 2
    table.write_text("path,sex,age\nx/x_000.png,F,40\n")
    with pytest.raises(SourceError, match=r"column 'sex' holds no numbers.*label_columns"):
        detect(table)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NHW"])
def test_npz_layouts(tmp_path, layout):
    path = synthetic.write_npz(tmp_path, n=5, layout=layout, size=(8, 6))
    stored = np.load(path)
    source = detect(path)[""]
    assert source.kind == "arrays" and source.layout == layout
    for i in range(5):
        item = source.read(i)
        expected = {"NHWC": lambda x: x.transpose(2, 0, 1), "NCHW": lambda x: x, "NHW": lambda x: x[None]}
        expected = expected[layout](stored["images"][i])
        assert item["image"].shape == ((1, 6, 8) if layout == "NHW" else (3, 6, 8))
        assert item["image"].flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(item["image"], expected)
        assert item["label"] == stored["labels"][i]


def test_npy_and_split_dir(tmp_path):
    path = synthetic.write_npz(tmp_path / "one", n=4, fmt="npy", dtype="float32")
    item = detect(path)[""].read(3)
    assert set(item) == {"image"} and item["image"].dtype == np.float32
    np.testing.assert_array_equal(item["image"], np.load(path)[3].transpose(2, 0, 1))
    folder = synthetic.write_npz(tmp_path / "split", n=8, fmt="split")
    splits = detect(folder)
    assert set(splits) == {"train", "test"} and len(splits["train"]) == 8 and len(splits["test"]) == 2
    assert splits["test"].read(1)["label"] == np.load(folder / "test_labels.npy")[1]
    np.save(folder / "test_labels.npy", np.zeros(3, np.int64))
    with pytest.raises(SourceError, match=r"arrays of different lengths: image \(2\), label \(3\)"):
        detect(folder)


def test_arrays_refuse_raw_memmap_and_objects(tmp_path):
    raw = np.memmap(tmp_path / "train_images.npy", dtype=np.float32, mode="w+", shape=(2, 3, 4, 4))
    raw.flush()
    del raw
    with pytest.raises(SourceError, match="no .npy header: it is a raw np.memmap"):
        detect(tmp_path)
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(SourceError, match="cannot be loaded without pickle"):
        detect(tmp_path / "obj.npy")


class _Tensors:
    classes = ["neg", "pos"]

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise ValueError("scan 2 is corrupt")
        return torch.full((3, 2, 2), i, dtype=torch.uint8), torch.tensor(i % 2)


def test_dataset_source_items(tmp_path):
    source = DatasetSource(_Tensors())
    assert source.classes == ["neg", "pos"] and source.keys() == ["0", "1", "2", "3"]
    item = source.read(3)
    assert isinstance(item["image"], np.ndarray) and item["image"].shape == (3, 2, 2)
    assert item["image"][0, 0, 0] == 3 and item["label"] == 1
    with pytest.raises(BadItemError, match="^ValueError: scan 2 is corrupt$"):
        source.read(2)
    rgba = Image.new("RGBA", (2, 2), (9, 8, 7, 0))
    shapes = DatasetSource([{"a": 1}, (1, 2, 3), 5.0, [rgba, 1]])
    assert shapes.read(0) == {"a": 1}
    assert shapes.read(1) == {"x0": 1, "x1": 2, "x2": 3}
    assert shapes.read(2) == {"data": 5.0}
    image = shapes.read(3)["image"]
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (9, 8, 7)
    desc = source.describe()
    assert desc["kind"] == "dataset" and desc["params"]["len"] == 4 and desc["params"]["type"] == "_Tensors"
    assert "user" not in desc and len(desc["params"]["code"]) == 64
    with pytest.raises(SourceError, match="map-style"):
        DatasetSource(iter([1, 2]))


def test_dataset_from_spec_and_fingerprint(tmp_path):
    module = tmp_path / "my_data.py"
    module.write_text(textwrap.dedent("""
        import numpy as np

        class Scans:
            def __len__(self):
                return 3
            def __getitem__(self, i):
                return {"image": np.full((1, 2, 2), i, np.uint8), "label": i}
            def fingerprint(self):
                return "files-v1"

        def make():
            return Scans()
    """))
    source = DatasetSource.from_spec(f"{module}:make")
    assert len(source) == 3 and source.read(2)["label"] == 2
    desc = source.describe()
    assert desc["user"] == "files-v1" and desc["params"]["name"].endswith(":make")
    assert desc["params"]["spec"] == f"{module}:make"


def test_undetectable_and_unknown_kind(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(SourceError, match=r"cannot tell what kind.*choose one with `kind` \(cifar, cifar-bin"):
        detect(tmp_path)
    with pytest.raises(SourceError, match=r"unknown source kind 'imagenet'; `kind` takes one of cifar, "):
        detect(tmp_path, kind="imagenet")
    with pytest.raises(SourceError, match="does not exist"):
        detect(tmp_path / "missing")
    with pytest.raises(SourceError, match="cannot tell"):
        detect(tmp_path / "readme.txt")
    synthetic.write_cifar10_python(tmp_path, n_train=5, n_test=5)
    synthetic.write_cifar100_python(tmp_path, n_train=5, n_test=5)
    with pytest.raises(SourceError, match="several CIFAR folders"):
        detect(tmp_path)
    assert detect(tmp_path / "cifar-100-python")["train"].params["variant"] == "cifar100"
    with pytest.raises(SourceError, match="no image files in class subfolders"):
        detect(tmp_path / "cifar-10-batches-py", kind="imagefolder")
