"""Staleness: a changed input means a rebuild that says what changed; an unchanged one, nothing.

Real file sources (an image folder of PNGs written by Pillow), real edits (new bytes and a
bumped mtime), and a fresh interpreter where a user module must be imported again.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import prebake
from benchmarks.trials.crash import run_forked, write_dataset
from prebake import cli
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.cache.files import read_manifest
from prebake.cache.format import FORMAT_VERSION, MANIFEST, partial_path
from prebake.errors import ForeignOutputError
from prebake.identity.plugins import load_object
from prebake.steps import Resize, compile_steps

CLI = [sys.executable, "-m", "prebake"]

TRANSFORM_V1 = '''
def tf(item):
    item["image"] = item["image"] // 2
    return item


def scale(item, k):
    item["image"] = item["image"] // k
    return item


def make_scale(k):
    def scale_by(item):
        item["image"] = item["image"] // k
        return item
    return scale_by


class Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, item):
        item["image"] = item["image"] // self.k
        return item
'''
TRANSFORM_V2 = TRANSFORM_V1.replace('item["image"] // 2\n', 'item["image"] // 4\n', 1)


# -- helpers --------------------------------------------------------------------------------------


def write_png(path: Path, seed: int, size: int = 8) -> np.ndarray:
    """An RGB PNG with pixels from ``seed``; returns them as CHW uint8."""
    hwc = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(hwc, "RGB").save(path)
    return hwc.transpose(2, 0, 1)


def make_folder(root: Path) -> dict[str, np.ndarray]:
    """root/cat/000..003.png and root/dog/000..003.png; {relative path: CHW pixels}."""
    return {f"{cls}/{k:03d}.png": write_png(root / cls / f"{k:03d}.png", seed=10 * c + k)
            for c, cls in enumerate(("cat", "dog")) for k in range(4)}


def bump_mtime(path: Path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def build(source: Path, out: Path, steps=(), **options):
    [report] = build_all(resolve_sources(source), out, BuildOptions(compile_steps(steps), workers=0, **options))
    return report


def images_by_key(source: Path, out: Path) -> dict[str, np.ndarray]:
    keys = resolve_sources(source)[""].keys()
    cache = prebake.open(out)
    assert len(cache) == len(keys)
    return {k: cache[i]["image"] for i, k in enumerate(keys)}


def tree_state(out: Path) -> dict[str, tuple[int, int, int]]:
    paths = [out, *sorted(out.rglob("*"))]
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in paths}


def edit_manifest(out: Path, **fields) -> None:
    m = json.loads((out / MANIFEST).read_text())
    m.update(fields)
    m["fingerprint"]["inputs"]["format_version"] = fields.get("format_version", m["format_version"])
    (out / MANIFEST).write_text(json.dumps(m, indent=1))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pets"
    return root, make_folder(root)


# -- unchanged inputs -----------------------------------------------------------------------------


def test_unchanged_inputs_second_build_is_a_noop(folder, tmp_path):
    root, pixels = folder
    out = tmp_path / "cache"
    assert build(root, out).action == "built"
    before, manifest = tree_state(out), (out / MANIFEST).read_bytes()
    report = build(root, out)
    assert (report.action, report.reasons, report.num_items) == ("up to date", [], len(pixels))
    assert tree_state(out) == before  # not a byte rewritten: same inodes, mtimes and sizes
    assert (out / MANIFEST).read_bytes() == manifest
    assert not partial_path(out).exists()
    cache = prebake.build(root, out, workers=0)  # the top-level API agrees
    assert tree_state(out) == before and len(cache) == len(pixels)
    got = images_by_key(root, out)
    for key, want in pixels.items():
        np.testing.assert_array_equal(got[key], want)


# -- source files ---------------------------------------------------------------------------------


def test_modified_source_file_triggers_rebuild_naming_it(folder, tmp_path):
    root, pixels = folder
    out = tmp_path / "cache"
    build(root, out)
    new = write_png(root / "cat" / "001.png", seed=999)
    bump_mtime(root / "cat" / "001.png")
    report = build(root, out)
    assert report.action == "rebuilt"
    assert any("cat/001.png" in r and "modified" in r for r in report.reasons), report.reasons
    got = images_by_key(root, out)
    np.testing.assert_array_equal(got["cat/001.png"], new)
    assert not np.array_equal(new, pixels["cat/001.png"])
    for key in pixels.keys() - {"cat/001.png"}:
        np.testing.assert_array_equal(got[key], pixels[key])
    assert build(root, out).action == "up to date"


def test_added_source_file_triggers_rebuild_saying_added(folder, tmp_path):
    root, pixels = folder
    out = tmp_path / "cache"
    build(root, out)
    new = write_png(root / "dog" / "zzz.png", seed=77)
    report = build(root, out)
    assert report.action == "rebuilt"
    assert any("added" in r and "dog/zzz.png" in r for r in report.reasons), report.reasons
    assert report.num_items == len(pixels) + 1
    np.testing.assert_array_equal(images_by_key(root, out)["dog/zzz.png"], new)


def test_removed_source_file_triggers_rebuild_saying_removed(folder, tmp_path):
    root, pixels = folder
    out = tmp_path / "cache"
    build(root, out)
    (root / "cat" / "000.png").unlink()
    report = build(root, out)
    assert report.action == "rebuilt"
    assert any("removed" in r and "cat/000.png" in r for r in report.reasons), report.reasons
    assert len(prebake.open(out)) == len(pixels) - 1


# -- parameters -----------------------------------------------------------------------------------


def test_image_size_change_triggers_rebuild_naming_resize(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "cache"
    assert build(root, out, [Resize(16)]).action == "built"
    assert prebake.open(out)[0]["image"].shape == (3, 16, 16)
    assert build(root, out, [Resize(16)]).action == "up to date"
    report = build(root, out, [Resize(24)])
    assert report.action == "rebuilt"
    assert any("Resize" in r and "size" in r and "16" in r and "24" in r for r in report.reasons), report.reasons
    assert prebake.open(out)[0]["image"].shape == (3, 24, 24)


# -- user code ------------------------------------------------------------------------------------


def test_transform_code_change_rebuilds_in_a_fresh_process(folder, tmp_path):
    root, pixels = folder
    out, tf_file = tmp_path / "cache", tmp_path / "tf.py"
    tf_file.write_text(TRANSFORM_V1)
    spec = f"{tf_file}:tf"
    assert build(root, out, [load_object(spec)]).action == "built"
    for key, img in images_by_key(root, out).items():
        np.testing.assert_array_equal(img, pixels[key] // 2)

    tf_file.write_text(TRANSFORM_V2)  # the function body changed
    bump_mtime(tf_file)
    proc = subprocess.run([*CLI, "build", str(root), str(out), "--transform", spec, "--workers", "0", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)
    assert report["action"] == "rebuilt"
    assert any("transform code changed" in r for r in report["reasons"]), report["reasons"]
    for key, img in images_by_key(root, out).items():
        np.testing.assert_array_equal(img, pixels[key] // 4)


def test_transform_edited_in_the_same_process_is_never_silently_stale(folder, tmp_path):
    root, pixels = folder
    out, tf_file = tmp_path / "cache", tmp_path / "tf.py"
    tf_file.write_text(TRANSFORM_V1)
    spec = f"{tf_file}:tf"
    build(root, out, [load_object(spec)])
    tf_file.write_text(TRANSFORM_V2)  # edited, e.g. while a notebook kernel keeps running
    bump_mtime(tf_file)
    build(root, out, [load_object(spec)])  # same process, as a notebook would
    proc = subprocess.run([*CLI, "build", str(root), str(out), "--transform", spec, "--workers", "0", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for key, img in images_by_key(root, out).items():  # whatever ran, the result is the new code's
        np.testing.assert_array_equal(img, pixels[key] // 4)


@pytest.mark.parametrize("kind", ["partial", "closure", "instance"])
def test_transform_parameter_change_triggers_rebuild(folder, tmp_path, kind):
    root, pixels = folder
    out, tf_file = tmp_path / "cache", tmp_path / "tf.py"
    tf_file.write_text(TRANSFORM_V1)

    def transform(k):
        if kind == "partial":
            return functools.partial(load_object(f"{tf_file}:scale"), k=k)
        if kind == "closure":
            return load_object(f"{tf_file}:make_scale")(k)
        return load_object(f"{tf_file}:Scale")(k)

    assert build(root, out, [transform(2)]).action == "built"
    report = build(root, out, [transform(3)])
    assert report.action == "rebuilt"
    for key, img in images_by_key(root, out).items():
        np.testing.assert_array_equal(img, pixels[key] // 3)


# -- force and format version ---------------------------------------------------------------------


def test_force_always_rebuilds(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "cache"
    build(root, out)
    data = (out / "image.npy").read_bytes()
    for _ in range(2):
        ino = out.stat().st_ino, (out / "image.npy").stat().st_ino
        report = build(root, out, force=True)
        # Python names the parameter; the CLI says --force
        assert (report.action, report.reasons) == ("rebuilt", ["`force=True`"])
        assert (out.stat().st_ino, (out / "image.npy").stat().st_ino) != ino  # a new cache was published
        assert (out / "image.npy").read_bytes() == data
        assert prebake.verify(out).ok
    assert build(root, out).action == "up to date"


def test_older_format_version_in_manifest_is_refused_then_built_once_removed(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "cache"
    build(root, out)
    edit_manifest(out, format_version=0)  # a format without a self-checksum: prebake cannot prove it wrote it
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ForeignOutputError, match="format version 0") as e:
        build(root, out)
    assert f"rm -r {out}" in str(e.value)  # deliberately changed: it was rebuilt (deleted) before
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    shutil.rmtree(out)  # what the message asks the user to do
    assert build(root, out).action == "built"
    assert read_manifest(out)["format_version"] == FORMAT_VERSION
    assert read_manifest(out)["fingerprint"]["inputs"]["format_version"] == FORMAT_VERSION
    assert prebake.verify(out).ok
    assert build(root, out).action == "up to date"


def test_new_format_version_of_prebake_means_rebuild(folder, tmp_path, monkeypatch):
    root, _ = folder
    out = tmp_path / "cache"
    build(root, out)
    import prebake.bake.commit
    import prebake.cache.format
    import prebake.cache.inventory
    import prebake.identity.fingerprint

    for module in (prebake.cache.format, prebake.identity.fingerprint, prebake.bake.commit, prebake.cache.inventory):
        monkeypatch.setattr(module, "FORMAT_VERSION", FORMAT_VERSION + 1)
    report = build(root, out)
    assert report.action == "rebuilt"
    assert any("format version" in r for r in report.reasons), report.reasons
    assert read_manifest(out)["format_version"] == FORMAT_VERSION + 1
    assert build(root, out).action == "up to date"


# -- prebake ls -----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the killed build is a forked child")
def test_ls_reports_committed_stale_and_partial(tmp_path, capsys):
    caches, src1, src2 = tmp_path / "caches", tmp_path / "src1", tmp_path / "src2"
    make_folder(src1)
    make_folder(src2)
    build(src1, caches / "a")  # unchanged
    build(src2, caches / "b")
    write_png(src2 / "dog" / "002.png", seed=1234)  # b's source changed since it was built
    bump_mtime(src2 / "dog" / "002.png")
    shutil.copytree(caches / "a", caches / "d")
    edit_manifest(caches / "d", format_version=0)  # made by an older prebake
    spec = write_dataset(tmp_path)
    assert run_forked({"spec": spec, "out": str(caches / "c"), "kill": "progress:0.5"}) == -9

    proc = subprocess.run([*CLI, "ls", str(caches), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    entries = {Path(e["path"]).name: e for e in json.loads(proc.stdout)}
    assert {name: e["state"] for name, e in entries.items()} == {
        "a": "committed", "b": "stale", "c.partial": "partial", "d": "damaged"}
    assert any("dog/002.png" in r and "modified" in r for r in entries["b"]["reasons"]), entries["b"]
    assert entries["a"]["reasons"] == [] and entries["a"]["items"] == 8
    assert any("format version 0" in r for r in entries["d"]["reasons"]), entries["d"]  # no checksum: not provable

    assert build(src2, caches / "b").action == "rebuilt"
    assert cli.main(["ls", str(caches), "--json"]) == 0
    states = {Path(e["path"]).name: e["state"] for e in json.loads(capsys.readouterr().out)}
    assert states["b"] == "committed"
