"""Damaged caches are caught: byte flips, truncations, fuzzed manifests, a bypassing files
table, symlinked column files, a damaged .npy header, and the CLI's exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.corruption import data_flips, judge, manifest_flips, sample_caches, truncations
from benchmarks.trials.fuzz import fuzzed_manifests
from prebake.cache.format import MANIFEST, sign_manifest
from prebake.cli import main
from prebake.errors import CacheCorruptError, FormatError


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corruption")
    sample_caches(d)
    return d


def _edit(cache, edit, resign=True):
    m = json.loads((cache / MANIFEST).read_text())
    edit(m)
    (cache / MANIFEST).write_text(json.dumps(sign_manifest(m) if resign else m, indent=1))


@pytest.fixture
def cache(tmp_path):
    """A small cache of one fixed and one ragged column, and a good copy of x.npy beside it."""
    prebake.write_arrays(tmp_path / "c", {"x": np.arange(12, dtype=np.int32).reshape(6, 2),
                                          "sig": [np.arange(k, dtype=np.int16) for k in range(6)]})
    return tmp_path / "c"


# -- 1. the files table must be exactly the format's files ---------------------------------------


@pytest.mark.parametrize("target", ["../good_copy.npy", "ABSOLUTE"])
def test_a_files_table_naming_another_file_is_refused(cache, target):
    good = cache.parent / "good_copy.npy"
    shutil.copy(cache / "x.npy", good)
    name = str(good) if target == "ABSOLUTE" else target
    meta = json.loads((cache / MANIFEST).read_text())["columns"]["x"]["files"]["x.npy"]
    x = np.load(cache / "x.npy")  # the reader's file now holds other bytes of the same size
    np.save(cache / "x.npy", x[::-1].copy())
    _edit(cache, lambda m: m["columns"]["x"].update(files={name: meta}))
    report = prebake.verify(cache)
    assert not report.ok
    assert any("columns.x.files" in p and "x.npy" in p for p in report.problems), report.problems
    with pytest.raises(FormatError, match="columns.x.files"):
        prebake.open(cache)
    assert main(["verify", str(cache), "-q"]) == 1


# -- 2. the manifest has its own checksum ---------------------------------------------------------


@pytest.mark.parametrize("edit", ["classes", "skipped", "fingerprint", "stats"])
def test_an_edited_manifest_is_detected(workdir, tmp_path, edit):
    cache = shutil.copytree(workdir / "cache-folder", tmp_path / "c")
    changes = {
        "classes": lambda m: m.update(classes=["cat", "cow"]),
        "skipped": lambda m: m.update(skipped=[]),
        "fingerprint": lambda m: m["fingerprint"].update(digest="0" * 64),
        "stats": lambda m: m["stats"]["columns"]["image"].update(mean=1.0),
    }
    _edit(cache, changes[edit], resign=False)
    report = prebake.verify(cache)
    assert any("manifest checksum" in p for p in report.problems), report.problems
    with pytest.raises(FormatError, match="manifest checksum"):
        prebake.open(cache)


def test_every_manifest_byte_flip_is_detected(workdir):
    row = manifest_flips(workdir, stride=3)
    assert row.trials > 1000 and row.failures == 0, row.examples


# -- data files ------------------------------------------------------------------------------------


def test_data_byte_flips_are_detected(workdir):
    row = data_flips(workdir, trials=150, seed=1)
    assert row.failures == 0, row.examples


def test_truncations_are_detected_and_refused_at_open(workdir):
    row = truncations(workdir, trials=60, seed=2)
    assert row.failures == 0, row.examples


def test_a_damaged_npy_header_is_refused_at_open_not_at_first_read(cache):
    raw = bytearray((cache / "x.npy").read_bytes())
    at = raw.index(b"'descr'")
    raw[at + 11] ^= 0x01  # '<i4' -> '<i5'
    (cache / "x.npy").write_bytes(bytes(raw))
    with pytest.raises(CacheCorruptError, match="x.npy"):
        prebake.open(cache)
    assert not prebake.verify(cache).ok


# -- 7. fuzzed manifests raise only typed errors; the CLI's exit codes --------------------------


def test_fuzzed_manifests_raise_only_prebake_errors(workdir):
    row = fuzzed_manifests(workdir, examples=300, seed_=3)
    assert row.trials == 300 and row.failures == 0, row.examples


@pytest.mark.parametrize("damage", [
    lambda m: m.update(columns=[]),  # a list where an object belongs
    lambda m: m.update(num_items="6"),
    lambda m: m["columns"]["x"].update(dtype=5),
    lambda m: m["columns"]["x"].update(shape=[-2]),
    lambda m: m["columns"]["sig"].pop("files"),
    lambda m: m.update(stats=[1]),
    lambda m: m.update(num_items=10**30),
])
def test_a_damaged_manifest_is_a_problem_found_not_a_traceback(cache, capsys, damage):
    _edit(cache, damage)  # re-signed, so the schema check is what must catch it
    verified, opened, untyped = judge(cache)
    assert untyped is None and not verified and not opened
    assert main(["verify", str(cache)]) == 1
    assert "problem: " in capsys.readouterr().out


def test_verify_exit_code_2_when_a_file_could_not_be_checked(cache):
    shared = Path(tempfile.mkdtemp(prefix="prebake-verify-"))  # readable by others, unlike tmp_path
    try:
        shared.chmod(0o755)
        c = shutil.copytree(cache, shared / "c")
        (c / "x.npy").chmod(0)
        out = shared / "verify.json"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status and a file
            code = 99
            try:
                with open(out, "w") as f, contextlib.redirect_stdout(f):
                    if os.geteuid() == 0:
                        os.setgid(65534)
                        os.setuid(65534)  # nobody: root would read the file anyway
                    code = main(["verify", str(c), "--json"])
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        [report] = json.loads(out.read_text())
        assert os.WEXITSTATUS(status) == 2
        assert report["problems"] == [] and not report["ok"]
        assert any("x.npy" in u and "cannot be read" in u for u in report["unchecked"]), report
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# -- 12. column files that are symlinks are refused ----------------------------------------------


@pytest.mark.parametrize("name", ["x.npy", "sig.values.npy", MANIFEST])
def test_a_symlinked_file_is_refused(cache, tmp_path, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(cache / name, outside / name)  # the same bytes: only the link is wrong
    (cache / name).unlink()
    os.symlink(outside / name, cache / name)
    with pytest.raises(CacheCorruptError, match="symlink"):
        prebake.open(cache)
    report = prebake.verify(cache)
    assert any("symlink" in p for p in report.problems), report.problems
