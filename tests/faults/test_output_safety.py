"""Output-directory safety: prebake deletes or replaces only what it can prove it wrote.

Attacks through the CLI, ``prebake.build`` and ``write_arrays``: a folder that holds another
program's ``manifest.json``, a cache that holds the user's notes, a damaged cache, user folders
named like prebake's build directories, ``clear`` over a tree that is not all prebake's, a
commit whose journal does not cover its plan, a rebuild that would lose ``splits.json``, a
symlink loop in an image folder, a ragged build on a full disk, and odd-typed manifests.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import resource
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.crash import join_forked
from benchmarks.trials.diskfull import can_mount, mount_tmpfs
from benchmarks.trials.output_safety import output_safety, snapshot
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.bake.partial import PartialCache
from prebake.bake.plan import BuildPlan, ChunkResult
from prebake.cache.format import ColumnSpec, partial_path, sign_manifest
from prebake.cli import main
from prebake.errors import ForeignOutputError, PrebakeError, SplitsError
from prebake.steps import Resize, compile_steps
from prebake.synthetic import write_image_folder


@pytest.fixture
def src(tmp_path):
    return write_image_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=3, size=(8, 8))


def _webapp(out: Path) -> Path:
    (out / "src").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"name": "My App", "start_url": "/"}))
    (out / "src" / "app.py").write_text("print('hello')\n")
    (out / "notes.txt").write_text("my notes\n")
    return out


def _build(how: str, src: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Attack ``out``; the refusal's message (a CLI refusal must exit 2)."""
    if how.startswith("cli"):
        assert main(["build", str(src), str(out), "--workers", "0", *(["--force"] if how == "cli-force" else [])]) == 2
        return capsys.readouterr().err
    with pytest.raises(ForeignOutputError) as e:
        if how == "write_arrays":
            prebake.write_arrays(out, {"x": np.arange(3)})
        else:
            prebake.build(src, out, workers=0, force=how == "python-force")
    return str(e.value)


HOWS = ["cli", "cli-force", "python", "python-force", "write_arrays"]


def _action(source: object, out: Path, steps: tuple | list = (), **options: object) -> str:
    """What one build did: "built", "rebuilt", "resumed" or "up to date"."""
    (report,) = build_all(resolve_sources(source), out, BuildOptions(compile_steps(steps), **{"workers": 0, **options}))
    return report.action


@pytest.mark.parametrize("how", HOWS)
def test_a_folder_with_a_foreign_manifest_is_refused_and_kept(src, tmp_path, capsys, how):
    out = _webapp(tmp_path / "project")
    before = snapshot(out)
    message = _build(how, src, out, capsys)  # before: rc 0, and only the cache's files remained
    assert snapshot(out) == before
    assert "manifest.json, notes.txt, src/" in message and "not a prebake manifest" in message
    assert "choose another output directory, or move/remove those files yourself" in message


@pytest.mark.parametrize("how", HOWS)
def test_a_cache_that_holds_a_users_file_is_refused(src, tmp_path, capsys, how):
    out = tmp_path / "cache"
    prebake.build(src, out, workers=0)
    (out / "notes.txt").write_text("results of run 7\n")
    before = snapshot(out)
    message = _build(how, src, out, capsys)
    assert snapshot(out) == before and prebake.verify(out).ok
    assert "also holds files prebake did not write: notes.txt" in message


@pytest.mark.parametrize("how", HOWS)
def test_a_damaged_cache_is_refused_with_how_to_remove_it(src, tmp_path, capsys, how):
    out = tmp_path / "cache"
    prebake.build(src, out, workers=0)
    text = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(text.replace('"num_items": 6', '"num_items": 5'))
    before = snapshot(out)
    message = _build(how, src, out, capsys)  # before: "existing cache is unreadable", then deleted
    assert snapshot(out) == before
    assert "looks like a damaged prebake cache" in message and f"rm -r {out}" in message


@pytest.mark.parametrize("name", ["partial", "replaced", "lock", "lock-link", "partial-npy"])
def test_user_files_under_prebakes_build_names_are_left_alone(src, tmp_path, capsys, name):
    out, user = tmp_path / "x", tmp_path / "user.txt"
    user.write_text("hunter2\n")
    if name == "partial":
        (tmp_path / "x.partial").mkdir()
        (tmp_path / "x.partial" / "results.csv").write_text("epoch,loss\n")
    elif name == "partial-npy":  # every name looks like prebake's, but no plan, shards or manifest
        (tmp_path / "x.partial").mkdir()
        (tmp_path / "x.partial" / "weights.npy").write_bytes(b"weights")
    elif name == "replaced":
        (tmp_path / "x.replaced").mkdir()
        (tmp_path / "x.replaced" / "thesis.tex").write_text("\\chapter{1}\n")
    elif name == "lock":
        (tmp_path / "x.lock").write_text("not a pid\n")
    else:
        os.symlink(user, tmp_path / "x.lock")  # taking the lock would truncate the target
    before = snapshot(tmp_path)
    for how in ("cli", "python", "write_arrays"):
        message = _build(how, src, out, capsys)
        assert "nothing was changed" in message and f"x.{name.split('-')[0]}" in message
    assert snapshot(tmp_path) == before


def test_a_symlinked_out_is_refused(src, tmp_path, capsys):
    prebake.build(src, tmp_path / "real", workers=0)
    os.symlink(tmp_path / "real", tmp_path / "link")
    before = snapshot(tmp_path)
    assert "symbolic link" in _build("cli-force", src, tmp_path / "link", capsys)
    assert snapshot(tmp_path) == before


def test_a_leftover_replaced_cache_is_deleted_only_while_its_manifest_proves_it(src, tmp_path, capsys):
    out = tmp_path / "cache"
    prebake.build(src, out, workers=0)
    shutil.copytree(out, tmp_path / "cache.replaced")
    (tmp_path / "cache.replaced" / "image.npy").unlink()  # a delete that stopped part way: manifest still there
    assert _action(src, out) == "up to date"
    assert not (tmp_path / "cache.replaced").exists()
    shutil.copytree(out, tmp_path / "cache.replaced")
    (tmp_path / "cache.replaced" / "manifest.json").unlink()  # without its manifest nothing proves it is ours
    before = snapshot(tmp_path / "cache.replaced")
    assert "cache.replaced holds no manifest.json" in _build("python", src, out, capsys)
    assert snapshot(tmp_path / "cache.replaced") == before


# -- clear and ls -----------------------------------------------------------------------------------

def _tree(tmp_path: Path, src: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    prebake.build(src, root / "mine", workers=0)
    _webapp(root / "webapp")
    (root / "lib" / "site-packages" / "pkg").mkdir(parents=True)
    (root / "lib" / "site-packages" / "pkg" / "manifest.json").write_text('{"files": []}')
    (root / "lib" / "site-packages" / "pkg" / "__init__.py").write_text("")
    prebake.build(src, root / "noted", workers=0)
    (root / "noted" / "notes.txt").write_text("mine\n")
    prebake.build(src, outside / "theirs", workers=0)
    os.symlink(outside / "theirs", root / "link")
    os.symlink(outside, root / "outside-link")
    (root / "y.partial").mkdir()
    (root / "y.partial" / "results.csv").write_text("1,2\n")
    return root, outside


def test_clear_deletes_prebake_caches_only_and_says_what_it_left(src, tmp_path, capsys, monkeypatch):
    root, outside = _tree(tmp_path, src)
    before = {p: h for p, h in snapshot(root, outside).items() if not p.startswith(str(root / "mine"))}
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["clear", str(root)]) == 2  # the dry run: lists, refuses to ask, deletes nothing
    dry = capsys.readouterr().out
    assert f"will delete:\n  {root / 'mine'}\n  {root / 'mine.lock'}\n" in dry
    assert "webapp" not in dry.split("will delete:")[1]
    assert "not a prebake cache, left alone" in dry and "site-packages/pkg" in dry  # before: listed to delete
    assert "also holds files prebake did not write: notes.txt" in dry and "not a prebake build" in dry
    assert main(["clear", str(root), "--yes", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["deleted"] == [str(root / "mine"), str(root / "mine.lock")]
    assert {Path(s["path"]).name for s in result["skipped"]} == {"webapp", "pkg", "noted", "y.partial"}
    assert not (root / "mine").exists()
    assert snapshot(root, outside) == before  # every other byte, the symlinks and what they point at
    assert prebake.verify(outside / "theirs").ok


def test_clear_refuses_a_symlinked_root(src, tmp_path, capsys):
    prebake.build(src, tmp_path / "caches" / "c", workers=0)
    os.symlink(tmp_path / "caches", tmp_path / "link")
    assert main(["clear", str(tmp_path / "link"), "--yes"]) == 2
    assert "clear never follows symlinks, so it refuses it" in capsys.readouterr().err
    assert prebake.verify(tmp_path / "caches" / "c").ok


def test_ls_does_not_call_a_foreign_manifest_a_stale_cache(src, tmp_path, capsys):
    root, _ = _tree(tmp_path, src)
    assert main(["ls", str(root), "--json"]) == 0
    states = {Path(e["path"]).name: e["state"] for e in json.loads(capsys.readouterr().out)}
    assert states == {"mine": "committed", "noted": "committed"}  # before: webapp and pkg were "stale"


@pytest.mark.parametrize("edit", ["source-str", "source-list", "source-root-int", "origin-bad", "transforms-str",
                                  "hist-names"])
def test_info_and_ls_read_oddly_typed_manifest_values(tmp_path, capsys, edit):
    out = tmp_path / "c"
    prebake.write_arrays(out, {"x": np.arange(4), "label": np.arange(4) % 2}, classes=["a", "b"])
    m = json.loads((out / "manifest.json").read_text())
    inputs = m["fingerprint"]["inputs"]
    if edit == "source-str":
        inputs["source"] = "a string"
    elif edit == "source-list":
        inputs["source"] = [1, 2]
    elif edit == "source-root-int":
        inputs["source"] = {"files": {"a": [1, 2, 3]}, "root": 3}
    elif edit == "origin-bad":
        m["fingerprint"]["origin"] = {"path": 5, "options": [1]}
    elif edit == "transforms-str":
        inputs["transforms"] = "resize"
    else:
        m["stats"]["label_histogram"] = {"cat": 2, "-1": 2}
    (out / "manifest.json").write_text(json.dumps(sign_manifest(m)))
    for args in (["info", str(out)], ["info", str(out), "--json"],
                 ["ls", str(tmp_path)], ["ls", str(tmp_path), "--json"]):
        assert main(args) == 0, args  # before: AttributeError / TypeError tracebacks
    assert "Traceback" not in capsys.readouterr().err


# -- the commit ---------------------------------------------------------------------------------

def _partial(out: Path, rows: int, n: int = 10) -> PartialCache:
    plan = BuildPlan("d" * 32, n, rows, (ColumnSpec("x", "<i8", ()),))
    return PartialCache.start(out, plan)


@pytest.mark.parametrize("rows", [-1, 0, -7])
def test_a_plan_whose_chunks_do_not_tile_the_rows_is_never_committed(tmp_path, rows):
    out = tmp_path / "c"
    try:
        partial = _partial(out, rows)
    except PrebakeError:
        return  # refused even earlier: also nothing committed
    with pytest.raises(PrebakeError, match=f"chunk_rows={rows}"):  # before: zero-filled rows committed
        partial.seal([str(i) for i in range(10)], None, {"digest": "d" * 32, "inputs": {}})
    assert not out.exists() and not (partial_path(out) / "manifest.json").exists()


def test_a_journal_missing_a_chunk_is_never_committed(tmp_path):
    out = tmp_path / "c"
    partial = _partial(out, 4)  # chunks 0..2
    partial.record([ChunkResult(0), ChunkResult(2)])
    with pytest.raises(PrebakeError, match="the journal lacks chunk 1 of 3"):  # before: KeyError
        partial.seal([str(i) for i in range(10)], None, {"digest": "d" * 32, "inputs": {}})
    assert not out.exists() and not (partial_path(out) / "manifest.json").exists()


# -- splits.json over a rebuild ------------------------------------------------------------------

def _keys_by_split(out: Path, src: Path) -> dict[str, list[str]]:
    keys = resolve_sources(src)[""].keys()  # row i holds key i: no item of these sources is skipped
    return {name: sorted(keys[i] for i in rows) for name, rows in prebake.load_splits(out).items()}


def test_a_rebuild_carries_splits_over_by_key(src, tmp_path):
    out = tmp_path / "cache"
    prebake.build(src, out, workers=0)
    prebake.split(out, by="label", fractions={"train": 0.5, "test": 0.5}, save=True)
    held = _keys_by_split(out, src)
    shutil.copy(src / "cat" / min(os.listdir(src / "cat")), src / "cat" / "000-new.png")  # first in order
    assert _action(src, out) == "rebuilt"  # before: splits.json was gone
    assert _keys_by_split(out, src) == held  # the same items in each split, at their new rows
    assert _action(src, out, [Resize(4)]) == "rebuilt"
    assert _keys_by_split(out, src) == held


def test_a_rebuild_refuses_to_drop_a_split_whose_items_are_gone(src, tmp_path, caplog):
    out = tmp_path / "cache"
    prebake.build(src, out, workers=0)
    prebake.split(out, by="label", fractions={"train": 0.5, "test": 0.5}, save=True)
    gone = min(os.listdir(src / "dog"))
    (src / "dog" / gone).unlink()
    before = snapshot(out)
    with pytest.raises(SplitsError, match=f"names 1 item that the source no longer has \\(dog/{gone}\\)"):
        prebake.build(src, out, workers=0)
    assert snapshot(out) == before and not partial_path(out).exists()  # refused before any work
    with caplog.at_level(logging.WARNING, logger="prebake"):
        assert _action(src, out, force=True) == "rebuilt"
    assert not (out / "splits.json").exists()
    assert any("splits.json" in r.message and "dropping" in r.message for r in caplog.records)


def test_a_split_item_skipped_as_bad_by_the_rebuild_is_refused_at_commit(src, tmp_path):
    out = tmp_path / "cache"
    prebake.build(src, out, workers=0)
    prebake.split(out, by="label", fractions={"train": 0.5, "test": 0.5}, save=True)
    bad = src / "cat" / min(os.listdir(src / "cat"))
    bad.write_bytes(b"not a png any more")
    with pytest.raises(SplitsError, match="does not hold"):
        prebake.build(src, out, workers=0)
    assert prebake.load_splits(out)  # the old cache and its splits are still there


# -- sources and full disks -----------------------------------------------------------------------

def test_a_symlink_loop_in_an_image_folder_is_one_bad_item(src, tmp_path):
    os.symlink("loop.png", src / "cat" / "loop.png")
    cache = prebake.build(src, tmp_path / "cache", workers=0)  # before: SourceError, the whole build failed
    assert len(cache) == 6
    skipped = json.loads((tmp_path / "cache" / "manifest.json").read_text())["skipped"]
    assert [s["key"] for s in skipped] == ["cat/loop.png"] and "symbolic links" in skipped[0]["reason"]


class _Signals:
    """64 items of ~40 KB of ragged int16 each: more shard bytes than the small disk holds."""

    def __len__(self) -> int:
        return 64

    def fingerprint(self) -> str:
        return "ragged signals, index-derived"

    def __getitem__(self, i: int) -> dict:
        return {"sig": np.full(20000 + i, i, dtype=np.int16), "label": i % 3}


def _ragged_on_a_full_disk(cfg: dict) -> dict:
    """In a forked child: fill the disk as ``cfg`` says, build the ragged source, say what happened."""
    disk = Path(cfg["disk"])
    if cfg["how"] == "tmpfs" and not mount_tmpfs(disk, 1 << 20):
        return {"setup": "mount failed"}
    if cfg["how"] == "rlimit":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    result: dict = {}
    try:
        prebake.build(_Signals(), disk / "c", workers=cfg["workers"], ragged=("sig",), chunk_rows=cfg["rows"])
        result["error"] = None
    except Exception as e:  # noqa: BLE001 - the type is what the test checks
        result.update(error=type(e).__name__, message=str(e))
    result["left"] = sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.name != "c.lock")
    if cfg["how"] == "tmpfs" and result["left"]:
        mount_tmpfs(disk, 16 << 20, remount=True)  # room again: the same build resumes the finished chunks
        result["after"] = _action(_Signals(), disk / "c", workers=cfg["workers"], ragged=("sig",),
                                  chunk_rows=cfg["rows"])
        result["verified"] = prebake.verify(disk / "c").ok
    return result


def _child(cfg: dict) -> None:
    os.setsid()
    try:
        result = _ragged_on_a_full_disk(cfg)
    except BaseException as e:  # noqa: BLE001 - reported through the file
        result = {"crash": f"{type(e).__name__}: {e}"}
    Path(cfg["report"]).write_text(json.dumps(result))
    os._exit(0)


@pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc"), reason="needs fork and /proc (Linux)")
@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
@pytest.mark.parametrize("rows,workers", [(64, 0), (8, 0), (8, 2)])
def test_a_ragged_build_on_a_full_disk_is_a_disk_full_error(tmp_path, how, rows, workers):
    if how == "tmpfs" and not can_mount(tmp_path):
        pytest.skip("mounting a tmpfs is not allowed here; the rlimit case stands in")
    cfg = {"disk": str(tmp_path / "disk"), "report": str(tmp_path / "r.json"), "how": how, "rows": rows,
           "workers": workers}
    (tmp_path / "disk").mkdir()
    child = mp.get_context("fork").Process(target=_child, args=(cfg,))
    child.start()
    assert join_forked(child, timeout=120) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r.get("error") == "DiskFullError", r  # before: OSError "N requested and M written", no errno
    assert ("bytes free" if how == "tmpfs" else "file size limit") in r["message"] and "needs" in r["message"], r
    assert "c.partial" in r["message"]
    assert not any(p.endswith(".tmp") for p in r["left"]), r  # no half-written shard stays
    if rows == 64:  # the only chunk never finished: nothing to resume, so nothing is left
        assert r["left"] == [] and "no chunk had finished" in r["message"], r
    elif how == "tmpfs":
        assert "re-run the same command to resume" in r["message"], r
        assert r["after"] == "resumed" and r["verified"], r


def test_output_safety_trials(tmp_path):
    row = output_safety(tmp_path, trials=36, seed=0)
    assert row.failures == 0, row.examples
