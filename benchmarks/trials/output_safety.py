"""Output paths that hold what prebake did not write: never deleted, never changed.

Each trial puts one kind of foreign thing in or beside an output path (a web app's
``manifest.json``, a site-packages-like tree, a damaged cache, an old-format cache, a cache
holding the user's notes, symlinks out of the root, user folders named ``X.partial``,
``X.replaced`` or ``X.lock``), hashes every foreign byte, then attacks it through the CLI
(``build``, ``build --force``), ``prebake.build``, ``write_arrays`` or ``clear --yes``. A
failure is any foreign byte deleted or changed, a build that was not refused with a
ForeignOutputError (or exit 2 and its message), or a ``clear`` that left a real cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

import prebake
from prebake.cli import main
from prebake.errors import ForeignOutputError
from prebake.synthetic import write_image_folder

from . import Row

REFUSED = "nothing was changed"  # every build refusal says so
HAND = "remove it by hand"  # a damaged cache: the user decides


def _cache(path: Path) -> Path:
    prebake.write_arrays(path, {"x": np.arange(6, dtype=np.int16), "label": np.arange(6) % 2})
    return path


def _webapp(root: Path, outside: Path) -> Path:
    out = root / "app"
    (out / "src").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"name": "My App", "start_url": "/", "icons": []}))
    (out / "src" / "app.py").write_text("print('hello')\n")
    (out / "notes.txt").write_text("my notes\n")
    return out


def _site_packages(root: Path, outside: Path) -> Path:
    out = root / "site-packages" / "pkg"
    (out / "data").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"files": ["__init__.py"], "version": "1.0"}))
    (out / "__init__.py").write_text("VERSION = '1.0'\n")
    (out / "data" / "table.npy").write_bytes(b"\x93NUMPY user data")
    (root / "site-packages" / "pkg-1.0.dist-info").mkdir()
    (root / "site-packages" / "pkg-1.0.dist-info" / "RECORD").write_text("pkg/__init__.py,,\n")
    return out


def _damaged(root: Path, outside: Path) -> Path:
    out = _cache(root / "damaged")
    m = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(m.replace('"num_items": 6', '"num_items": 5'))  # checksum no longer holds
    return out


def _old_format(root: Path, outside: Path) -> Path:
    out = _cache(root / "old")
    m = json.loads((out / "manifest.json").read_text())
    m["format_version"] = 1
    del m["manifest_xxh3_64"]  # format 1 had no self-checksum: nothing proves it is prebake's
    (out / "manifest.json").write_text(json.dumps(m))
    return out


def _prebake_shaped(root: Path, outside: Path) -> Path:
    out = root / "shaped"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "prebake-cache", "format_version": 2}))
    (out / "weights.npy").write_bytes(b"user weights")
    return out


def _mixed(root: Path, outside: Path) -> Path:
    out = _cache(root / "mixed")
    (out / "notes.txt").write_text("results of run 7\n")
    return out


def _partial_named(root: Path, outside: Path) -> Path:
    (root / "x.partial").mkdir()
    (root / "x.partial" / "results.csv").write_text("epoch,loss\n1,0.5\n")
    (root / "x.partial" / "model.npy").write_bytes(b"model")
    return root / "x"


def _partial_npy_only(root: Path, outside: Path) -> Path:
    (root / "x.partial").mkdir()
    (root / "x.partial" / "weights.npy").write_bytes(b"weights")  # a prebake-like name, no build marker
    return root / "x"


def _partial_shards(root: Path, outside: Path) -> Path:
    (root / "x.partial" / "_shards").mkdir(parents=True)
    (root / "x.partial" / "_shards" / "notes.txt").write_text("mine\n")
    return root / "x"


def _replaced_named(root: Path, outside: Path) -> Path:
    (root / "x.replaced").mkdir()
    (root / "x.replaced" / "notes.txt").write_text("the old version of my thesis\n")
    return root / "x"


def _lock_text(root: Path, outside: Path) -> Path:
    (root / "x.lock").write_text("remember to lock the door\n")
    return root / "x"


def _lock_symlink(root: Path, outside: Path) -> Path:
    (outside / "passwords.txt").write_text("hunter2\n")
    os.symlink(outside / "passwords.txt", root / "x.lock")
    return root / "x"


def _out_symlink(root: Path, outside: Path) -> Path:
    _cache(outside / "elsewhere")  # a real cache, but outside the root: reached only through the link
    os.symlink(outside / "elsewhere", root / "link")
    return root / "link"


def _nested_symlink(root: Path, outside: Path) -> Path:
    out = _webapp(root, outside)
    (outside / "data").mkdir()
    (outside / "data" / "big.bin").write_bytes(b"\x00" * 1000)
    os.symlink(outside / "data", out / "data")
    return out


KINDS: dict[str, Callable[[Path, Path], Path]] = {f.__name__[1:]: f for f in (
    _webapp, _site_packages, _damaged, _old_format, _prebake_shaped, _mixed, _partial_named, _partial_npy_only,
    _partial_shards, _replaced_named, _lock_text, _lock_symlink, _out_symlink, _nested_symlink)}
ATTACKS = ("cli", "cli-force", "python", "python-force", "write_arrays", "clear")


def snapshot(*dirs: Path) -> dict[str, str]:
    """Every file, directory and symlink under ``dirs`` (never followed): its bytes' hash, or its target."""
    seen: dict[str, str] = {}
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p.is_symlink():
                    seen[str(p)] = "-> " + os.readlink(p)
                elif p.is_dir():
                    seen[str(p)] = "dir"
                else:
                    seen[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return seen


def attack(how: str, src: Path, out: Path, root: Path) -> tuple[bool, str]:
    """Run one attack; ``(refused, message)`` (for clear: whether it exited 0, and its output)."""
    if how.startswith("cli") or how == "clear":
        args = ["clear", str(root), "--yes"] if how == "clear" else ["build", str(src), str(out), "--workers", "0"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
            rc = main(args + (["--force"] if how.endswith("force") else []))
        text = err.getvalue()
        return (rc == 0 if how == "clear" else rc == 2 and (REFUSED in text or HAND in text)), text
    try:
        if how == "write_arrays":
            prebake.write_arrays(out, {"x": np.arange(3)})
        else:
            prebake.build(src, out, workers=0, force=how.endswith("force"))
    except ForeignOutputError as e:
        return True, str(e)
    return False, "no error"


def output_safety(workdir: Path, trials: int, seed: int = 0) -> Row:
    """``trials`` attacks, each a (foreign kind, attack) pair, every pair once before any repeats."""
    row = Row("output paths holding foreign files: refused before any work, no foreign byte deleted or changed")
    src = workdir / "src"
    if not src.exists():
        write_image_folder(src, classes=("a", "b"), per_class=2, size=(8, 8))
    pairs = [(k, a) for k in KINDS for a in ATTACKS]
    random.Random(seed).shuffle(pairs)
    for t in range(trials):
        kind, how = pairs[t % len(pairs)]
        root, outside = workdir / f"t{t}" / "root", workdir / f"t{t}" / "outside"
        root.mkdir(parents=True)
        outside.mkdir()
        out = KINDS[kind](root, outside)
        before = snapshot(root, outside)
        real = _cache(root / "real") if how == "clear" else None  # clear must still delete what is prebake's
        try:
            ok, message = attack(how, src, out, root)
        except Exception as e:  # noqa: BLE001 - an untyped error is a finding: count it, go on
            ok, message = False, f"{type(e).__name__}: {e}"
        after = snapshot(root, outside)
        lost = sorted(p for p, h in before.items() if after.get(p) != h)
        where = f"trial {t}: {kind} by {how}"
        if lost:
            row.fail(f"{where}: foreign paths deleted or changed: {lost[:5]} ({message[:300]})")
        elif not ok:
            row.fail(f"{where}: not refused as it should be: {message[:300]}")
        elif real is not None and real.exists():
            row.fail(f"{where}: clear left the prebake cache {real}: {message[:300]}")
        else:
            row.ok()
    row.notes["kinds of foreign path"] = len(KINDS)
    row.notes["ways in (CLI, --force, Python, write_arrays, clear)"] = len(ATTACKS)
    return row
