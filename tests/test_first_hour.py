"""What a new user runs into first: each test is one friction found trying prebake from a fresh clone.

Real files in tmp_path; the CLI runs in-process through main() or as a real process
where the behaviour is about the process (a closed pipe, a live build).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import prebake
from benchmarks.trials.crash import join_forked, run_forked, start_forked, write_dataset
from prebake.cli import main
from prebake.config import KEYS, check_settings, read_config
from prebake.settings import SOURCE_KEYS, STEP_KEYS, build_kwargs
from prebake.steps import BandPass, CenterCrop, Resample, Resize, ShorterSide
from prebake.synthetic import write_audio_folder, write_csv_table, write_image_folder

CLI = [sys.executable, "-m", "prebake"]


def _json(capsys):
    return json.loads(capsys.readouterr().out)


# -- 2. a device that does not exist is an error at construction -------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA: nothing to refuse")
def test_loader_on_a_missing_cuda_device_fails_at_construction(tmp_path):
    cache = prebake.write_arrays(tmp_path / "c", {"x": np.arange(8)})
    with pytest.raises(prebake.OptionError, match=r"no CUDA device.*device='cpu'"):
        prebake.Loader(cache, 4, device="cuda")
    assert len(list(prebake.Loader(cache, 4, device="cpu"))) == 2


# -- 4. re-running the demo says what it did -----------------------------------------------------


def test_demo_rerun_says_nothing_was_baked_again(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path), "--bench-seconds", "0"]) == 0
    first = capsys.readouterr().out
    assert "run it again and nothing is baked again" in first and "already up to date" not in first
    assert main(["demo", "--workdir", str(tmp_path), "--bench-seconds", "0"]) == 0
    assert "every cache was already up to date" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "data").iterdir()} >= {"photos", "hearts", "labels.csv", "arrays.npz"}


# -- 6. ls says stale whenever build would rebuild --------------------------------------------------


def test_ls_says_stale_when_a_source_file_was_added(tmp_path, capsys):
    photos = write_image_folder(tmp_path / "photos", per_class=3)
    out = tmp_path / "caches" / "photos"
    prebake.build(photos, out, workers=0)
    write_image_folder(tmp_path / "more", per_class=1, seed=9)
    (tmp_path / "more" / "cat" / "cat_000.png").rename(photos / "cat" / "extra.png")
    assert main(["ls", str(tmp_path / "caches"), "--json"]) == 0
    [entry] = _json(capsys)
    assert entry["state"] == "stale" and any("1 source file added (cat/extra.png)" in r for r in entry["reasons"])
    assert main(["info", str(out), "--json"]) == 0
    assert _json(capsys)["state"] == "stale"
    report = prebake.bake.build.build_all(prebake.bake.build.resolve_sources(photos), out,
                                          prebake.bake.build.BuildOptions(workers=0))[0]
    assert report.action == "rebuilt" and any("added" in r for r in report.reasons)
    assert main(["ls", str(tmp_path / "caches"), "--json"]) == 0
    assert _json(capsys)[0]["state"] == "committed"


# -- 7. a cache inside its own source folder is not a class ------------------------------------------


def test_output_inside_the_source_folder_is_not_a_class(tmp_path):
    photos = write_image_folder(tmp_path / "photos", classes=("cat", "dog"), per_class=2)
    first = prebake.build(photos, photos / "cache", workers=0)
    again = prebake.build(photos, photos / "cache", workers=0)
    assert first.classes == again.classes == ["cat", "dog"] and len(again) == 4
    split = write_image_folder(tmp_path / "split", per_class=2, splits=("train", "val"))
    prebake.build(split, split / "cache", workers=0)
    caches = prebake.build(split, split / "cache", workers=0)
    assert set(caches) == {"train", "val"} and caches["train"].classes == ["cat", "dog"]


# -- 8. every item bad: no empty cache -------------------------------------------------------------


def _vanishing_transform(tmp_path: Path) -> str:
    """A dataset of 4 good items and a transform whose input vanishes after the probe read it."""
    (tmp_path / "vanish.py").write_text(
        "import numpy as np\n"
        "CALLS = []\n"
        "class DS:\n"
        "    def __len__(self): return 4\n"
        "    def __getitem__(self, i): return {'x': np.full(3, i)}\n"
        "def make(): return DS()\n"
        "def gone_after_the_probe(item):\n"
        "    CALLS.append(1)\n"
        "    if len(CALLS) > 1: raise FileNotFoundError('the input went away')\n"
        "    return item\n")
    return str(tmp_path / "vanish.py")


def test_a_build_where_every_item_is_bad_fails_unless_allowed(tmp_path, capsys):
    folder = tmp_path / "junk" / "a"
    folder.mkdir(parents=True)
    for name in ("1.png", "2.jpg"):
        (folder / name).write_bytes(b"not an image")
    assert main(["build", str(tmp_path / "junk"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "a/1.png: not a readable image" in err and not (tmp_path / "out").exists()
    # the probe bakes item 0, then every item fails in the bake itself: refused, with the reasons
    spec = _vanishing_transform(tmp_path)
    with pytest.raises(prebake.SourceError, match=r"all 4 items of the source are bad.*the input went away.*"
                                                  r"allow_empty=True"):
        prebake.build(dataset=f"{spec}:make", out=tmp_path / "o2", workers=0,
                      **build_kwargs({"transform": f"{spec}:gone_after_the_probe"}))
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o2.partial").exists()


def test_allow_empty_commits_the_empty_cache(tmp_path, capsys):
    spec = _vanishing_transform(tmp_path)
    assert main(["build", "--dataset", f"{spec}:make", str(tmp_path / "o"), "--transform",
                 f"{spec}:gone_after_the_probe", "--workers", "0", "--allow-empty", "--json"]) == 0
    [report] = _json(capsys)
    assert report["num_items"] == 0 and len(report["skipped"]) == 4
    assert len(prebake.open(tmp_path / "o")) == 0


# -- 9. a closed stdout is not an error --------------------------------------------------------------


def test_a_closed_pipe_ends_quietly(tmp_path):
    for i in range(40):
        prebake.write_arrays(tmp_path / f"c{i:02d}", {"x": np.arange(3)})
    proc = subprocess.run(" ".join([*CLI, "ls", "--json", str(tmp_path)]) + " | head -c 20", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "" and len(proc.stdout) == 20


# -- 10 and 12. prebake.open says what the path holds instead ---------------------------------------


def test_opening_the_parent_of_splits_names_them(tmp_path):
    from prebake.synthetic import write_cifar10_python

    prebake.build(write_cifar10_python(tmp_path / "data", n_train=10, n_test=10), tmp_path / "cifar", workers=0)
    with pytest.raises(prebake.CacheNotFoundError,
                       match=r"holds the splits test, train, one cache each: open one, for example "
                             r"prebake.open\('.*cifar/test'\)"):
        prebake.open(tmp_path / "cifar")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the build is a forked child")
def test_opening_a_cache_during_its_build_names_the_builder(tmp_path):
    spec, flag = write_dataset(tmp_path), tmp_path / "go"
    out = tmp_path / "cache"
    child = start_forked({"spec": spec, "out": str(out), "workers": 0, "env": {"PREBAKE_TEST_BLOCK": f"500:{flag}"}})
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "go.pid").exists():  # the build is inside item 500, holding the lock
            assert time.monotonic() < deadline and child.exitcode is None, "the build never reached item 500"
            time.sleep(0.02)
        with pytest.raises(prebake.CacheNotFoundError, match=rf"being built right now by process {child.pid}"):
            prebake.open(out)
    finally:
        flag.touch()
        code = join_forked(child)
    assert code == 0 and len(prebake.open(out)) > 0


# -- 11. arrays of any shape are columns ---------------------------------------------------------------


def test_npz_of_feature_arrays_bakes_each_array_as_a_column(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((500, 16)).astype(np.float32), rng.integers(0, 5, 500)
    np.savez(tmp_path / "arrays.npz", x=x, y=y, names=np.array(["a"] * 500))
    assert main(["build", str(tmp_path / "arrays.npz"), str(tmp_path / "c"), "--workers", "0", "-q"]) == 0
    cache = prebake.open(tmp_path / "c")
    assert sorted(cache.columns) == ["label", "names", "x"]
    assert np.array_equal(cache.column("x"), x) and np.array_equal(cache.targets, y)
    np.save(tmp_path / "feats.npy", x)
    assert prebake.open(prebake.build(tmp_path / "feats.npy", tmp_path / "f", workers=0).path).columns == ["feats"]
    np.savez(tmp_path / "uneven.npz", x=x, meta=np.arange(3))
    with pytest.raises(prebake.SourceError, match=r"different lengths: x \(500\), meta \(3\)"):
        prebake.build(tmp_path / "uneven.npz", tmp_path / "u")


# -- 13. resuming says so ----------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the killed build is a forked child")
def test_a_resumed_build_says_it_resumed(tmp_path):
    spec = write_dataset(tmp_path)
    out = tmp_path / "cache"
    assert run_forked({"spec": spec, "out": str(out), "kill": "progress:0.5"}) == -9
    from benchmarks.trials.crash import build_dataset

    report = build_dataset(spec, out)
    assert report.action == "resumed" and report.reasons == ["resuming a build that was interrupted"]


# -- 14 and 17. every option has help, and every flag named in a message exists -----------------------


def _flags() -> set[str]:
    from prebake.cli import parser

    found = set()
    for action in parser()._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        for a in action._actions:
            found.update(s for s in a.option_strings if s.startswith("--"))
    return found


def test_every_option_and_argument_has_help():
    from prebake.cli import parser

    sub = parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    missing = [f"{name} {a.dest}" for name, p in sub.choices.items() for a in p._actions
               if a.dest != "help" and not a.help]
    assert not missing
    build_usage = sub.choices["build"].format_usage()
    assert "SOURCE OUT [SOURCE OUT ...]" not in build_usage and "SOURCE OUT" in build_usage


def test_every_flag_named_in_a_message_exists():
    """Scan every string in src/prebake for --flags, and every opt('name') call, against the parser."""
    import ast
    import re

    from prebake.cli import parser
    from prebake.cli.spelling import flag_table

    flags, named = _flags() | {"--help", "--version"}, []
    src = Path(prebake.__file__).parent
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named += [(path.name, f) for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value)]
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "opt" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
                named.append((path.name, flag_table(parser()).get(name, f"no flag for {name!r}")))
    unknown = sorted({f"{f} (in {where})" for where, f in named if f not in flags})
    assert named and not unknown, unknown


def test_errors_name_flags_on_the_cli_and_parameters_in_python(tmp_path, capsys):
    photos = write_image_folder(tmp_path / "p", per_class=1)
    with pytest.raises(prebake.OptionError, match=r"^Resize\(size=0\): size takes a whole number >= 1"):
        prebake.build(photos, tmp_path / "c", [Resize(0)])
    with pytest.raises(prebake.OptionError, match=r"^prebake.build: `chunk_rows` is 0, out of range: it takes an int"):
        prebake.build(photos, tmp_path / "c", chunk_rows=0)
    assert main(["build", str(photos), str(tmp_path / "c"), "--image-size", "0"]) == 2
    assert "error: prebake build: --image-size is 0, out of range: it takes an integer >= 1" in capsys.readouterr().err
    with pytest.raises(prebake.OptionError, match="unknown setting 'imagesize'; did you mean 'image_size'"):
        build_kwargs(check_settings({"imagesize": 32}))
    with pytest.raises(TypeError, match="imagesize"):  # Python's own refusal of an unknown keyword
        prebake.build(photos, tmp_path / "c", imagesize=32)
    assert not (tmp_path / "c").exists()


# -- 15. raw tracebacks become one line ---------------------------------------------------------------


def test_out_that_is_a_file_and_a_missing_transform_module_are_one_line(tmp_path, capsys):
    photos = write_image_folder(tmp_path / "p", per_class=1)
    (tmp_path / "taken").write_text("a file")
    assert main(["build", str(photos), str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "taken is a file, and OUT must be a directory" in err
    (tmp_path / "tf.py").write_text("import not_installed_pkg_xyz\ndef f(item):\n    return item\n")
    assert main(["build", str(photos), str(tmp_path / "c"), "--transform", f"{tmp_path / 'tf.py'}:f"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "imports 'not_installed_pkg_xyz', which is not installed" in err
    (tmp_path / "tf2.py").write_text("X = 1 / 0\n")
    assert main(["build", str(photos), str(tmp_path / "c"), "--transform", f"{tmp_path / 'tf2.py'}:f"]) == 2
    assert "tf2.py line 1 (from" in capsys.readouterr().err


def test_federated_example_with_a_bad_data_path_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "examples.federated", "--data", str(tmp_path / "nowhere"),
                           "--cache", str(tmp_path / "cache")], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nowhere does not exist" in proc.stderr.strip().splitlines()[-1]


# -- 16. option combinations are checked before the build starts --------------------------------------


def test_option_combinations_fail_before_any_work(tmp_path, capsys):
    hearts = write_audio_folder(tmp_path / "hearts", per_class=1, rate=2000)
    assert main(["build", str(hearts), str(tmp_path / "c"), "--bandpass", "400", "25"]) == 2
    err = capsys.readouterr().err
    assert "--bandpass is [400.0, 25.0], out of range: it takes LOW HIGH in Hz with 0 < LOW < HIGH" in err
    assert main(["build", str(hearts), str(tmp_path / "c"), "--image-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "--image-size needs a 'image' column" in err and "['label', 'sample_rate', 'signal']" in err
    assert main(["build", str(hearts), str(tmp_path / "c"), "--bandpass", "25", "1500"]) == 2
    assert "signals are at 2000 Hz (Nyquist 1000 Hz)" in capsys.readouterr().err
    assert main(["build", str(hearts), str(tmp_path / "c"), "--sample-rate", "1000", "--bandpass", "25", "600"]) == 2
    assert "HIGH 600 Hz must be below half of --sample-rate (Nyquist 500 Hz)" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.partial").exists()


# -- 19. info shows the label counts and every transform's parameters ----------------------------------


def test_info_shows_label_counts_and_transform_parameters(tmp_path, capsys):
    hearts = write_audio_folder(tmp_path / "hearts", per_class=2, rate=4000)
    prebake.build(hearts, tmp_path / "c", [Resample(2000), BandPass(25, 400)], workers=0)
    assert main(["info", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "labels     abnormal 2, normal 2" in out
    assert "Resample(rate=2000)" in out and "BandPass(low=25.0, high=400.0, order=4)" in out


# -- 20. CSV separators ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sep, suffix, flag", [(";", ".csv", None), ("\t", ".tsv", None), ("|", ".csv", "|"),
                                               ("\t", ".txt", "\\t")])
def test_csv_separators_are_detected_or_given(tmp_path, sep, suffix, flag):
    table = write_csv_table(tmp_path, n=6)
    text = table.read_text().replace(",", sep)
    path = tmp_path / f"t{suffix}"
    path.write_text(text)
    options = prebake.SourceOptions(delimiter=flag) if flag else None
    cache = prebake.build(path, tmp_path / "c", kind="csv", workers=0, source_options=options)
    assert len(cache) == 6 and cache.classes == prebake.build(table, tmp_path / "ref", workers=0).classes


# -- 21. the Python build reports progress and skipped items -------------------------------------------


def test_python_build_calls_progress_and_logs_skipped_items(tmp_path, caplog):
    photos = write_image_folder(tmp_path / "p", per_class=3)
    (photos / "cat" / "broken.png").write_bytes(b"garbage")
    calls = []
    with caplog.at_level(logging.WARNING, logger="prebake"):
        cache = prebake.build(photos, tmp_path / "c", workers=0, progress=lambda s, d, t: calls.append((d, t)))
    assert len(cache) == 6 and calls[-1] == (7, 7)
    assert "skipped 1 bad item" in caplog.text and "cat/broken.png: not a readable image" in caplog.text


# -- 24. config files ------------------------------------------------------------------------------------


def test_config_file_flags_override_and_print_config_round_trips(tmp_path, capsys):
    photos = write_image_folder(tmp_path / "photos", per_class=2, size=(40, 30))
    cfg = tmp_path / "bake.yaml"
    cfg.write_text(f"source: {photos}\nout: {tmp_path / 'c'}\nimage-size: 16\nworkers: 0\n")
    assert read_config(cfg) == {"source": str(photos), "out": str(tmp_path / "c"), "image_size": 16, "workers": 0}
    assert prebake.load_config(cfg) == {"source": str(photos), "out": str(tmp_path / "c"), "workers": 0,
                                        "steps": [Resize(16)]}
    assert main(["build", "--config", str(cfg), "--image-size", "12", "--print-config"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    assert prebake.load_config(tmp_path / "printed.yaml")["steps"] == [Resize(12)]
    assert main(["build", "--config", str(cfg), "--image-size", "12", "-q"]) == 0
    assert prebake.open(tmp_path / "c")[0]["image"].shape == (3, 12, 12)
    same = prebake.build(**prebake.load_config(tmp_path / "printed.yaml"))
    assert same.path == tmp_path / "c"
    (tmp_path / "b.json").write_text(json.dumps({"source": str(photos), "out": str(tmp_path / "j"), "crop": 8}))
    (tmp_path / "b.toml").write_text(f'source = "{photos}"\nout = "{tmp_path / "t"}"\nshorter-side = 20\n')
    assert prebake.load_config(tmp_path / "b.json")["steps"] == [CenterCrop(8)]
    assert prebake.load_config(tmp_path / "b.toml")["steps"] == [ShorterSide(20)]


def test_config_errors_name_the_file_the_key_and_the_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: x\nimage_sise: 32\n")
    with pytest.raises(prebake.OptionError, match=r"bad.yaml: unknown key 'image_sise'; did you mean 'image_size'"):
        prebake.load_config(bad)
    bad.write_text("workers: two\n")
    with pytest.raises(prebake.OptionError, match=r"bad.yaml: workers is 'two', expected an integer"):
        prebake.load_config(bad)
    bad.write_text("[1, 2]\n")
    with pytest.raises(prebake.OptionError, match="a mapping"):
        prebake.load_config(bad)
    (tmp_path / "x.ini").write_text("")
    with pytest.raises(prebake.OptionError, match=r"\.yaml, \.yml, \.json or \.toml"):
        prebake.load_config(tmp_path / "x.ini")


def test_every_build_option_is_a_setting():
    """build()'s keywords, BuildOptions, SourceOptions and the config keys stay in step; every other key is a step's."""
    import dataclasses
    import inspect

    from prebake.bake.build import BuildOptions

    fields = {f.name for f in dataclasses.fields(BuildOptions)} - {"pipeline"}
    assert fields <= set(KEYS), fields - set(KEYS)
    keywords = set(inspect.signature(prebake.build).parameters) - {"steps", "source_options", "progress"}
    assert keywords <= set(KEYS), keywords - set(KEYS)
    assert {f.name for f in dataclasses.fields(prebake.SourceOptions)} == set(SOURCE_KEYS)
    assert set(KEYS) == keywords | set(SOURCE_KEYS) | set(STEP_KEYS) | {"steps"}, set(KEYS) ^ (
        keywords | set(SOURCE_KEYS) | set(STEP_KEYS) | {"steps"})


# -- 3 and 5. what the demo and the test suite print explains itself ---------------------------------


def test_bench_rows_say_what_each_pipeline_does(tmp_path, capsys):
    from prebake.synthetic import write_cifar10_python

    prebake.build(write_cifar10_python(tmp_path / "d", n_train=64, n_test=10), tmp_path / "c", split="train")
    assert main(["bench", str(tmp_path / "c" / "train"), "--seconds", "0.05", "--batch-size", "16",
                 "--workers", "0", "--no-peers", "--only", "seed-online", "--only", "seed-offline"]) == 0
    out = capsys.readouterr().out
    assert "seed online: per-sample PIL resize + ToTensor + Normalize, DataLoader x0" in out
    assert "seed offline: float32 memmap, per-sample .copy() + Normalize, DataLoader x0" in out
    assert "the federated ViT workload's two original pipelines" in out


def test_the_suite_summary_says_the_skips_are_the_cuda_variants(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "from tests.helpers.devices import NEEDS_CUDA\n"
        "import pytest, torch\n"
        "@NEEDS_CUDA\n"
        "def test_gpu(): pass\n"
        "def test_cpu(): pass\n")
    shutil_root = Path(__file__).resolve().parents[1]
    (tmp_path / "conftest.py").write_text((shutil_root / "tests" / "conftest.py").read_text())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path / "test_x.py")],
                          capture_output=True, text=True, timeout=120, cwd=shutil_root)
    if torch.cuda.is_available():
        pytest.skip("nothing is skipped on a machine with CUDA")
    assert "1 of the 1 skipped tests are the CUDA variants" in proc.stdout, proc.stdout


def test_max_pixels_is_a_setting_of_the_cli_and_python(tmp_path, capsys):
    photos = write_image_folder(tmp_path / "p", per_class=2, size=(40, 30))
    write_image_folder(tmp_path / "big", classes=("cat",), per_class=1, size=(100, 100))
    (tmp_path / "big" / "cat" / "cat_000.png").rename(photos / "cat" / "big.png")
    assert main(["build", str(photos), str(tmp_path / "c"), "--max-pixels", "2000", "--json"]) == 0
    [report] = _json(capsys)
    assert report["num_items"] == 4 and [s["key"] for s in report["skipped"]] == ["cat/big.png"]
    assert "10,000 pixels, over the limit of 2,000" in report["skipped"][0]["reason"]
    assert "raise --max-pixels to bake it" in report["skipped"][0]["reason"]
    options = prebake.SourceOptions(max_pixels=10_000)
    assert len(prebake.build(photos, tmp_path / "d", [Resize(16)], source_options=options, workers=0)) == 5


def test_the_cli_kinds_are_the_source_kinds():
    """--kind's choices are listed in the CLI (no source import at start-up); they stay the detection's."""
    from prebake.cli import KINDS as CLI_KINDS
    from prebake.sources import KINDS

    assert CLI_KINDS == KINDS
