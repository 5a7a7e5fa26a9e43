"""What an outside tester typed at ``prebake`` that broke it, each on tiny real files.

An option between SOURCE and OUT was refused under the top level's usage; ``--dtype image=U5`` was named back
as ``image=str160``; a ``--dataset`` file could not import the module beside it and was told to pip install it;
a failed build did not end with its ``kept K of N, skipped S`` line; ``--hdf5-group`` on an image folder was
dropped without a word.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import prebake
from prebake.cli import main, parser
from prebake.synthetic import write_image_folder


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=2)


def _usage_and_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


# -- 1. options anywhere among the arguments -------------------------------------------------------------------


def test_an_option_between_source_and_out_builds(images, tmp_path):
    out = tmp_path / "cache"
    assert main(["build", str(images), "--workers", "1", str(out), "-q"]) == 0
    assert prebake.open(out).targets.tolist() == [0, 0, 1, 1]


def test_hdf5_group_between_source_and_out_builds_that_group(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "main.h5", "w") as f:
        f["train/x"] = np.arange(12, dtype=np.int16).reshape(6, 2)
        f["other/x"] = np.arange(3, dtype=np.int16)
    out = tmp_path / "cache"
    assert main(["build", str(tmp_path / "main.h5"), "--hdf5-group", "train", str(out), "--workers", "0", "-q"]) == 0
    assert prebake.open(out)[5]["x"].tolist() == [10, 11]


def test_export_takes_an_option_between_cache_and_out(images, tmp_path):
    pytest.importorskip("h5py")
    assert main(["build", str(images), str(tmp_path / "cache"), "--workers", "0", "-q"]) == 0
    out = tmp_path / "exported.h5"
    assert main(["export", str(tmp_path / "cache"), "--compression", "gzip", str(out), "-q"]) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize("argv, expected", [
    (["build", "--workers", "1", "src", "out"], {"source": "src", "out": "out", "workers": 1}),
    (["build", "src", "--dtype", "a=U5", "out", "--dtype", "b=i2"], {"source": "src", "out": "out",
                                                                     "dtypes": ["a=U5", "b=i2"]}),
    (["build", "vols", "--window", "-1000", "1000", "out"], {"source": "vols", "out": "out", "window": [-1000, 1000]}),
    (["export", "--format", "hf", "c", "o"], {"path": "c", "out": "o", "format": "hf"}),
    (["verify", "--json", "c"], {"path": "c", "json": True}),
    (["info", "c", "-q"], {"path": "c", "quiet": True}),
    (["clear", "-y", "c"], {"path": "c", "yes": True}),
    (["bench", "--limit", "5", "c", "--windows", "frames", "16"], {"path": "c", "limit": 5,
                                                                   "windows": ["frames", "16"]}),
    (["split", "--by", "pid", "c", "--seed", "3"], {"path": "c", "by": "pid", "seed": 3}),
    (["ls", "--json"], {"path": ".", "json": True}),
])
def test_every_command_reads_its_arguments_around_its_options(argv, expected):
    args = vars(parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected


def test_an_argument_a_command_does_not_take_shows_that_commands_usage(images, tmp_path, capsys):
    err = _usage_and_error(["build", str(images), str(tmp_path / "out"), "surplus"], capsys)
    assert "usage: prebake build" in err and "prebake build: error: unrecognized arguments: surplus" in err
    assert "COMMAND ..." not in err
    err = _usage_and_error(["verify", "c", "--forse"], capsys)
    assert "usage: prebake verify" in err and "unrecognized arguments: --forse" in err


# -- 2. --dtype repeated as typed ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["U5", "S7"])
def test_a_text_dtype_is_named_as_the_user_typed_it(images, tmp_path, capsys, dtype):
    assert main(["build", str(images), str(tmp_path / "c"), "--dtype", f"image={dtype}", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert f"--dtype image={dtype} cannot hold" in err and "str" + "160" not in err and "bytes" not in err


# -- 3. a --dataset file imports the modules beside it ---------------------------------------------------------


def _dataset_beside_a_helper(folder: Path, helper: str) -> Path:
    folder.mkdir()
    (folder / f"{helper}.py").write_text("import numpy as np\n"
                                         "def item(i):\n"
                                         "    return {'x': np.full(3, i, np.int16), 'label': i % 2}\n")
    (folder / "ds.py").write_text(f"import {helper}\n"
                                  "class DS:\n"
                                  "    def __len__(self): return 6\n"
                                  f"    def __getitem__(self, i): return {helper}.item(i)\n"
                                  "def make(): return DS()\n")
    return folder / "ds.py"


@pytest.fixture
def clean_imports(monkeypatch):
    """sys.path is put back afterwards, and the helper modules the test imported (cli_attack_*) forgotten."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [n for n in sys.modules if n.startswith("cli_attack_")]:
        del sys.modules[name]


def test_a_dataset_file_imports_the_module_beside_it(tmp_path, monkeypatch, clean_imports, capsys):
    ds = _dataset_beside_a_helper(tmp_path / "proj", "cli_attack_beside")
    monkeypatch.chdir(tmp_path)  # the spec is relative, as typed: python proj/ds.py would find the helper too
    assert main(["build", "--dataset", "proj/ds.py:make", "out", "--workers", "2", "-q"]) == 0, capsys.readouterr()
    assert prebake.open(tmp_path / "out")[4]["x"].tolist() == [4, 4, 4]
    assert str(ds.parent) == sys.path[0]


def test_a_transform_file_imports_the_module_beside_it(images, tmp_path, clean_imports, capsys):
    folder = tmp_path / "steps"
    folder.mkdir()
    (folder / "cli_attack_scale.py").write_text("def twice(a):\n    return a * 2\n")
    (folder / "t.py").write_text("import cli_attack_scale\n"
                                 "def step(item):\n"
                                 "    return {**item, 'image': cli_attack_scale.twice(item['image'] // 2)}\n")
    code = main(["build", str(images), str(tmp_path / "c"), "--transform", f"{folder / 't.py'}:step",
                 "--workers", "0", "-q"])
    assert code == 0 and "pip install" not in capsys.readouterr().err


# -- 4. a failed build still ends with its counts -----------------------------------------------------------------


def _two_bad_of_six(images: Path) -> Path:
    for name in ("cut1.png", "cut2.png"):
        (images / "a" / name).write_bytes(b"not a png")
    return images


def test_a_build_over_max_skipped_ends_with_the_kept_line(images, tmp_path, capsys):
    source = _two_bad_of_six(images)
    assert main(["build", str(source), str(tmp_path / "c"), "--max-skipped", "1", "--workers", "0", "-q"]) == 2
    err = capsys.readouterr().err
    assert "kept 4 of 6, skipped 2" in err and err.index("kept 4 of 6") < err.index("error:")


def test_a_build_of_only_bad_items_ends_with_the_kept_line(tmp_path, capsys):
    (tmp_path / "bad" / "a").mkdir(parents=True)
    for name in ("x.png", "y.png"):
        (tmp_path / "bad" / "a" / name).write_bytes(b"not a png")
    assert main(["build", str(tmp_path / "bad"), str(tmp_path / "c"), "--workers", "0", "-q"]) == 2
    assert "kept 0 of 2, skipped 2" in capsys.readouterr().err


# -- 5. a source option for another kind of source ---------------------------------------------------------------


@pytest.mark.parametrize("flags, named, where", [
    (["--hdf5-group", "train"], "--hdf5-group train", "a source of kind hdf5"),
    (["--frame-size", "16"], "--frame-size 16", "a source of kind video"),
    (["--channel", "0"], "--channel 0", "a source of kind audio, a source of kind video or a table of recordings"),
    (["--path-column", "file"], "--path-column file", "a CSV table"),
])
def test_a_source_option_of_another_kind_is_refused(images, tmp_path, capsys, flags, named, where):
    out = tmp_path / "c"
    assert main(["build", str(images), str(out), *flags, "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert f"error: {named} applies only to {where}, and {images} is of kind imagefolder" in err
    assert not out.exists()


def _recordings(root: Path) -> Path:
    sf = pytest.importorskip("soundfile")
    (root / "a").mkdir(parents=True)
    for k in range(2):
        sf.write(root / "a" / f"r{k}.wav", np.linspace(-0.5, 0.5, 100 + k), 8000, subtype="PCM_16")
    (root / "t.csv").write_text("file,label\na/r0.wav,0\na/r1.wav,1\n")
    return root


@pytest.mark.parametrize("source, flags, refused", [
    ("wavs.csv", ["--channels", "1"], "a table of audio rows"),  # an image option on a table of recordings
    ("wavs", ["--path-column", "file"], "of kind audio"),  # a table's option on a folder of recordings
    ("pngs.csv", ["--nan-fill", "0"], "a table of image rows"),
    ("pngs.csv", ["--audio-dtype", "float32"], "a table of image rows"),
    ("wavs.csv", ["--channel", "all", "--path-column", "file"], None),
    ("pngs.csv", ["--channels", "1"], None),
])
def test_a_table_takes_the_options_of_what_its_rows_hold(images, tmp_path, capsys, source, flags, refused):
    """A table was the kind csv (or audio) whatever its rows held: --channels on a table of recordings, or a CSV
    option on a folder of recordings, was dropped without a word."""
    rec = _recordings(tmp_path / "rec")
    (images / "t.csv").write_text("file,label\n" + "".join(f"{p.relative_to(images)},0\n"
                                                          for p in sorted(images.rglob("*.png"))))
    path = {"wavs.csv": rec / "t.csv", "wavs": rec, "pngs.csv": images / "t.csv"}[source]
    code = main(["build", str(path), str(tmp_path / "c"), *flags, "--workers", "0", "-q"])
    err = capsys.readouterr().err
    if refused is None:
        assert code == 0, err
    else:
        assert code == 2 and f"{path} is {refused}" in err, err


def test_a_source_option_of_the_kind_it_reads_still_builds(images, tmp_path):
    assert main(["build", str(images), str(tmp_path / "c"), "--channels", "1", "--workers", "0", "-q"]) == 0
    assert prebake.open(tmp_path / "c")[0]["image"].shape[0] == 1


def test_hdf5_group_with_a_dataset_is_refused(tmp_path, monkeypatch, clean_imports, capsys):
    _dataset_beside_a_helper(tmp_path / "proj", "cli_attack_group")
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--dataset", "proj/ds.py:make", "out", "--hdf5-group", "train"]) == 2
    assert "proj/ds.py:make is of kind dataset" in capsys.readouterr().err


# -- a second outside run ----------------------------------------------------------------------------------------


def test_print_config_keeps_settings_whose_value_is_zero(images, tmp_path, capsys):
    """0 == False: every 0 was left out, so a saved config rebuilt with one worker per core and no skip limit."""
    assert main(["build", "--print-config", str(images), str(tmp_path / "c"), "--workers", "0", "--max-skipped", "0",
                 "--lock-timeout", "0"]) == 0
    printed = capsys.readouterr().out
    for line in ("workers: 0", "max_skipped: 0.0", "lock_timeout: 0.0"):
        assert line in printed
    (tmp_path / "saved.yaml").write_text(printed)
    (images / "a" / "zz_cut.png").write_bytes(b"not a png")
    assert main(["build", "--config", str(tmp_path / "saved.yaml"), "-q"]) == 2  # the limit of 0 holds


@pytest.mark.parametrize("flags, want", [(["--nan-fill", "-1e3"], "nan_fill: -1000.0"),
                                         (["--window", "-1e3", "1.5E3"], "high: 1500.0"),
                                         (["--window", "-1000", "-5.5e2"], "high: -550.0")])
def test_negative_numbers_in_any_notation_are_values(tmp_path, capsys, flags, want):
    (tmp_path / "v").mkdir()
    assert main(["build", "--print-config", str(tmp_path / "v"), str(tmp_path / "c"), "--kind", "volumes",
                 *flags]) == 0
    assert want in capsys.readouterr().out


def test_an_option_after_double_dash_is_explained(images, tmp_path, capsys):
    err = _usage_and_error(["build", str(images), str(tmp_path / "c"), "--", "--workers", "1"], capsys)
    assert "--workers comes after '--'" in err and "did you mean --workers" not in err
