"""The prebake command line, run in-process through its main() on real files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import prebake
from prebake.cli import main
from prebake.synthetic import cifar_arrays, write_cifar10_python


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_cifar10_python(tmp_path_factory.mktemp("data"), n_train=100, n_test=20, seed=1)


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_build_verify_info_ls_clear(cifar_dir, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["build", str(cifar_dir), str(out), "--workers", "2", "--json"]) == 0
    reports = _json(capsys)
    got = [(r["split"], r["action"], r["num_items"]) for r in reports]
    assert got == [("train", "built", 100), ("test", "built", 20)]
    images, labels = cifar_arrays(100, 10, 1, "train")
    assert np.array_equal(np.load(out / "train" / "image.npy", allow_pickle=False), images)
    assert np.array_equal(np.load(out / "train" / "label.npy", allow_pickle=False), labels)

    assert main(["build", str(cifar_dir), str(out), "--json"]) == 0
    assert {r["action"] for r in _json(capsys)} == {"up to date"}

    assert main(["verify", str(out), "--json"]) == 0  # a root: verifies every cache under it
    assert [r["ok"] for r in _json(capsys)] == [True, True]

    assert main(["info", str(out / "train"), "--json"]) == 0
    info = _json(capsys)
    assert info["num_items"] == 100 and info["columns"]["image"]["shape"] == [3, 32, 32]
    assert info["source"]["kind"] == "cifar" and info["state"] == "committed"
    assert main(["info", str(out / "train")]) == 0
    assert "items      100" in capsys.readouterr().out

    assert main(["ls", str(tmp_path), "--json"]) == 0
    assert [(e["state"], e["items"]) for e in _json(capsys)] == [("committed", 20), ("committed", 100)]

    assert main(["clear", str(out)]) == 2  # not a terminal and no --yes: refuses, deletes nothing
    assert "--yes" in capsys.readouterr().err and (out / "train" / "manifest.json").exists()
    assert main(["clear", str(out), "--yes"]) == 0
    assert not (out / "train").exists() and not (out / "test").exists()


def test_build_text_report_names_skipped_items(tmp_path, capsys):
    from prebake.synthetic import write_image_folder

    root = write_image_folder(tmp_path / "imgs", classes=("a",), per_class=2)
    (root / "a" / "broken.png").write_bytes(b"not a png")
    assert main(["build", str(root), str(tmp_path / "c"), "--image-size", "8", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "built: 2 items" in out and "skipped 1 bad item" in out and "a/broken.png: not a readable image" in out


def test_dataset_and_transform_from_files(tmp_path, capsys):
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "class DS:\n"
        "    def __len__(self): return 5\n"
        "    def __getitem__(self, i): return np.full((2, 2), i, np.uint8), i\n"
        "def make(): return DS()\n"
        "def double(item):\n"
        "    item['image'] = item['image'] * 2\n"
        "    return item\n"
    )
    mod = tmp_path / "mydata.py"
    assert main(["build", "--dataset", f"{mod}:make", str(tmp_path / "c"), "--transform", f"{mod}:double",
                 "--workers", "0", "-q"]) == 0
    cache = prebake.open(tmp_path / "c")
    assert cache[3]["image"].tolist() == [[6, 6], [6, 6]] and cache.targets.tolist() == [0, 1, 2, 3, 4]


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["build", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err
    assert main(["build", "--dataset", "no_such_module_xyz:make", str(tmp_path / "o")]) == 2
    assert "cannot import 'no_such_module_xyz'" in capsys.readouterr().err
    assert main(["info", str(tmp_path)]) == 2
    assert "no prebake cache" in capsys.readouterr().err


def test_demo_builds_verifies_and_reports(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path / "demo"), "--json", "--bench-seconds", "0.2"]) == 0
    result = _json(capsys)
    assert result["ok"] and result["source"].endswith("cifar-10-batches-py")
    timed = {r["key"] for r in result["bench"]["rows"] if r["samples_per_s"]}
    assert {"prebake", "seed-offline", "seed-online"} <= timed  # it ends with the loader comparison
    shapes = {(b["size"], b["split"]): b["image_shape"] for b in result["builds"]}
    assert shapes[(32, "train")][1:] == [3, 32, 32] and shapes[(224, "test")][1:] == [3, 224, 224]
    assert all(b["verified"] for b in result["builds"])
    readme = (tmp_path / "demo" / "data" / "cifar-10-batches-py" / "readme.html").read_text()
    assert "SYNTHETIC" in readme.upper()
    assert main(["demo", "--workdir", str(tmp_path / "demo"), "--json", "--bench-seconds", "0"]) == 0  # again
    again = _json(capsys)
    assert again["bench"] is None and {b["action"] for b in again["builds"]} == {"up to date"}


@pytest.mark.parametrize("argv, hint", [
    (["build", "--imge-size", "3", "src", "out"], "--imge-size: did you mean --image-size?"),
    (["ls", "--jsn"], "--jsn: did you mean --json?"),
    (["verify", "x", "--quiett"], "--quiett: did you mean --quiet?"),
])
def test_a_mistyped_flag_gets_a_suggestion(argv, hint, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and hint in capsys.readouterr().err
