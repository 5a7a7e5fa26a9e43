"""Options in messages: the library spells them one way (Python's, marked), the CLI renders them as flags.

``prebake.errors`` holds no state that a CLI run could leave behind, and a message made anywhere (this
process, a forked worker, a manifest) prints with flags on the CLI, from the one table of its parser.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import prebake
from prebake import errors
from prebake.bake.schema import dtype_option
from prebake.cli import main, parser
from prebake.cli.spelling import flag_table, render
from prebake.errors import opt
from prebake.steps import BandPass, Resample, Resize, Spacing
from prebake.steps.base import hint, where
from prebake.synthetic import write_image_folder


def test_errors_holds_no_mutable_module_state():
    mutable = {name for name, v in vars(errors).items()
               if isinstance(v, (dict, list, set, bytearray)) and not name.startswith("__")}
    assert not mutable, f"prebake.errors keeps {sorted(mutable)}: a CLI run could change what Python users read"
    assert not hasattr(errors, "use_cli_names") and not hasattr(errors, "CLI_FLAGS")


def test_opt_reads_the_same_before_and_after_a_cli_run(tmp_path, capsys):
    photos = write_image_folder(tmp_path / "p", per_class=1)
    before = [opt("image_size", 224), opt("image_size"), opt("force"), opt("dtypes", {"v": "int64"})]
    assert main(["build", str(photos), str(tmp_path / "c"), "--image-size", "0"]) == 2
    assert "--image-size is 0" in capsys.readouterr().err
    assert [opt("image_size", 224), opt("image_size"), opt("force"), opt("dtypes", {"v": "int64"})] == before
    with pytest.raises(prebake.OptionError, match=r"^prebake.build: `chunk_rows` is 0, out of range"):
        prebake.build(photos, tmp_path / "c", chunk_rows=0)  # after the CLI ran, Python still reads Python


def test_the_python_spelling_is_python_in_backticks():
    assert opt("image_size", 224) == "`image_size=224`"
    assert opt("image_size") == "`image_size`"
    assert opt("force") == "`force=True`"
    assert opt("base_dir", "DIR") == "`base_dir='DIR'`"
    assert dtype_option("v", "int64") == "`dtypes={'v': 'int64'}`"
    assert opt("max_skipped", np.int64(3)) == "`max_skipped=3`"  # a numpy scalar as the number it is


@pytest.mark.parametrize(("python", "cli"), [
    (opt("image_size", 224), "--image-size 224"),  # a value
    (opt("image_size"), "--image-size"),  # bare
    (opt("force"), "--force"),  # a switch
    (opt("allow_empty"), "--allow-empty"),
    (opt("kind", "video"), "--kind video"),  # a string: as typed, not its repr
    (opt("base_dir", "DIR"), "--base-dir DIR"),
    (opt("label_columns"), "--label-column"),  # a repeatable flag
    (opt("label_columns", ["a", "b"]), "--label-column a --label-column b"),
    (dtype_option("v", "int64"), "--dtype v=int64"),
    (opt("stages"), "--stage"),
    (where(Resize(8)), "--image-size"),  # a step with a flag
    (hint("ShorterSide"), "--shorter-side"),
    ("`SegmentCycles.fallback`", "--cycle-fallback"),
])
def test_the_cli_renders_each_kind_as_its_flag(python, cli):
    assert render(f"give {python} here") == f"give {cli} here"


def test_backticks_that_name_no_option_are_left_alone():
    for text in ["a path `b` c", "`Nope(x=1)`", "`no_such_option=3`", "`prebake.steps.Nope`", "`Decode.x`"]:
        assert render(text) == text


def test_the_table_comes_from_the_parser_and_names_every_step_flag():
    table = flag_table(parser())
    assert table["image_size"] == "--image-size" and table["yes"] == "--yes" and table["dtypes"] == "--dtype"
    for step in (Resize(8), Spacing(1.0), Resample(1000), BandPass(25, 400)):
        assert render(where(step)) == table[step.option]


def _csv_with_missing_rows(tmp_path) -> tuple:
    """Six rows, paths relative to the CSV's folder; the odd ones are missing (each reason hints base_dir)."""
    (tmp_path / "t" / "imgs").mkdir(parents=True)
    for i in (0, 2, 4):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "t" / "imgs" / f"{i}.png")
    csv = tmp_path / "t" / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"imgs/{i}.png,{i % 2}\n" for i in range(6)))
    return csv


def test_skip_reasons_made_in_forked_workers_print_with_flags(tmp_path, capsys):
    csv, out = _csv_with_missing_rows(tmp_path), tmp_path / "c"
    assert main(["build", str(csv), str(out), "--workers", "2", "--chunk-rows", "1"]) == 0
    printed = capsys.readouterr()
    assert "--base-dir DIR" in printed.out + printed.err and "`" not in printed.out + printed.err
    reasons = [s["reason"] for s in json.loads((out / "manifest.json").read_text())["skipped"]]
    assert len(reasons) == 3 and all("`base_dir='DIR'`" in r for r in reasons)  # the cache keeps one spelling


def test_a_warning_the_library_logs_prints_with_its_flag(tmp_path):
    photos = write_image_folder(tmp_path / "p", per_class=1)
    run = subprocess.run([sys.executable, "-m", "prebake", "build", str(photos), str(tmp_path / "c"),
                          "--workers", "1000000"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "--workers 1000000 is more than this machine can use" in run.stderr and "`" not in run.stderr


def test_json_output_renders_inside_strings(tmp_path, capsys):
    csv = _csv_with_missing_rows(tmp_path)
    assert main(["build", str(csv), str(tmp_path / "c"), "--json", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) and "`" not in printed

