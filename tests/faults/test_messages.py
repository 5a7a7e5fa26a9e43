"""Error messages a new user met that named nothing they could act on: a CSV's relative path shown as written,
a view printed as ``<... object at 0x...>``, and a choice of ragged columns shown as ``pick one of []``.

Each is an attack with tiny real files; every message must name the file or parameter, the bad value, what is
allowed, and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import prebake
from benchmarks.trials.messages import messages
from prebake.cli import main
from prebake.errors import IndicesError, SourceError, ViewError
from prebake.integrations.torchdata import BatchSampler
from prebake.load.views import Items


def _csv_elsewhere(tmp_path: Path) -> tuple[Path, Path]:
    """A CSV whose paths are relative to ``data/``, kept in ``tables/``: every row resolves to a missing file."""
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "data" / "imgs" / f"{name}.png")
    (tmp_path / "tables").mkdir()
    csv = tmp_path / "tables" / "labels.csv"
    csv.write_text("path,label\nimgs/a.png,0\nimgs/b.png,1\n")
    return csv, tmp_path / "data"


def test_a_csv_path_that_is_missing_is_shown_resolved_with_the_base_dir_hint(tmp_path):
    csv, data = _csv_elsewhere(tmp_path)
    with pytest.raises(SourceError) as e:
        prebake.build(csv, tmp_path / "c")
    msg = str(e.value)
    assert str(csv.parent / "imgs" / "a.png") in msg  # where prebake looked, not only what the row says
    assert "base_dir" in msg and str(csv.parent) in msg
    prebake.build(csv, tmp_path / "c", source_options=prebake.SourceOptions(base_dir=str(data)))
    assert len(prebake.open(tmp_path / "c")) == 2  # the hint's fix works


def test_the_cli_names_the_base_dir_flag_for_a_skipped_csv_row(tmp_path, capsys):
    csv, data = _csv_elsewhere(tmp_path)
    (data / "imgs" / "a.png").rename(tmp_path / "tables" / "a.png")  # one row resolves, one does not
    csv.write_text("path,label\na.png,0\nimgs/b.png,1\n")
    assert main(["build", str(csv), str(tmp_path / "c")]) == 0
    err = capsys.readouterr()
    text = err.out + err.err
    assert str(tmp_path / "tables" / "imgs" / "b.png") in text and "--base-dir" in text
    assert "1 x file not found" in text  # the reason's kind still groups the skipped rows


def test_an_absolute_csv_path_that_is_missing_gets_no_base_dir_hint(tmp_path):
    csv, _ = _csv_elsewhere(tmp_path)
    gone = tmp_path / "gone.png"
    csv.write_text(f"path,label\n{gone},0\n{tmp_path / 'data' / 'imgs' / 'a.png'},1\n")
    prebake.build(csv, tmp_path / "c")
    skipped = prebake.open(tmp_path / "c").manifest["skipped"]
    assert [s["reason"] for s in skipped] == [f"file not found: {gone}"]


def _arrays(tmp_path: Path, ragged: bool = False) -> prebake.Cache:
    cols: dict = {"image": np.zeros((4, 2), np.uint8), "label": np.arange(4)}
    if ragged:
        cols["frames"] = [np.zeros((n, 3), np.float32) for n in (2, 3, 4, 5)]
    return prebake.write_arrays(tmp_path / ("r" if ragged else "f"), cols)


def test_a_view_in_a_message_is_named_by_its_parameters(tmp_path):
    cache = _arrays(tmp_path)
    with pytest.raises(IndicesError) as e:
        BatchSampler(cache, 2, indices=[7])
    msg = str(e.value)
    assert not re.search(r"object at 0x", msg), msg
    assert "Items('f', items=4, columns=['image', 'label'], pad=False)" in msg


def test_every_view_repr_names_its_parameters(tmp_path):
    cache = _arrays(tmp_path, ragged=True)
    assert repr(Items(cache, ["frames"], pad=True)) == "Items('r', items=4, columns=['frames'], pad=True)"
    for view in (prebake.Windows(cache, "frames", 2), prebake.Elements(cache, "frames")):
        assert "object at" not in repr(view) and "'frames'" in repr(view)


def test_a_cache_without_ragged_columns_says_it_has_none_not_pick_one_of_nothing(tmp_path):
    cache = _arrays(tmp_path)
    for make in (lambda: prebake.Elements(cache, "image"), lambda: prebake.Windows(cache, "image", 2),
                 lambda: prebake.Elements(cache, 3)):
        with pytest.raises(ViewError) as e:
            make()
        msg = str(e.value)
        assert "[]" not in msg, msg
        assert "no ragged column" in msg and "image, label" in msg and "prebake.Loader(cache)" in msg


def test_a_cache_with_ragged_columns_still_lists_them(tmp_path):
    with pytest.raises(ViewError, match=r"pick one of \['frames'\]"):
        prebake.Elements(_arrays(tmp_path, ragged=True), "image")


@pytest.mark.parametrize("flags", [["--elements", "image"], ["--windows", "image", "2"]])
def test_prebake_bench_names_the_flag_and_says_the_cache_has_no_ragged_column(tmp_path, capsys, flags):
    cache = _arrays(tmp_path)
    assert main(["bench", str(cache.path), *flags, "--seconds", "0.01", "--rounds", "1"]) != 0
    err = capsys.readouterr().err
    assert "[]" not in err, err
    assert f"{flags[0]} image" in err and "no ragged column" in err and "without --windows or --elements" in err


def test_the_messages_trial_finds_no_failure(tmp_path):
    row = messages(tmp_path, trials=6, seed=2)
    assert row.trials > 30 and row.failures == 0, row.examples
