"""Options in messages under attack: values with backticks, quotes, nan, paths, numpy scalars, and the user's
own backticks around them. Python reads ``name=<repr>``, the CLI prints ``--flag VALUE``, workers the same.

Before: a value holding a backtick (a file named ``a`b.png``), or a stray backtick in the text before an
option, left the option unrendered or cut on the CLI (266 of 1,200 checks failed at seed 0).
"""

from __future__ import annotations

from benchmarks.trials.spelling import spelling
from prebake.cli.spelling import render
from prebake.errors import opt


def test_the_spelling_trial_finds_nothing(tmp_path):
    row = spelling(tmp_path, trials=150, seed=0)
    assert row.trials == 450 and row.failures == 0, row.examples


def test_a_value_with_a_backtick_is_fenced_and_still_renders():
    assert opt("base_dir", "a`b") == "``base_dir='a`b'``"
    assert render(f"pass {opt('base_dir', 'a`b')} here") == "pass --base-dir a`b here"


def test_a_stray_backtick_before_an_option_does_not_hide_it():
    assert render(f"file a`b.png: pass {opt('base_dir', 'DIR')}") == "file a`b.png: pass --base-dir DIR"
    assert render(f"col` {opt('image_size', 3)} `x`") == "col` --image-size 3 `x`"
