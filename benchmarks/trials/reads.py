"""Files that a transform or stage reads while baking (item 9): a changed one means a rebuild that names it.

Each case writes a user module whose transform (or Stage) reads a file: a torch checkpoint
loaded lazily into a module global, a JSON table read on every call, or a numpy array. It
builds, builds again (an unchanged file must be "up to date"), changes the file (other bytes
of the same size with the mtime put back, another size, a touch, or deletion), and checks:
``prebake ls`` (bake/freshness.py) says stale naming the file, the rebuild names it, the new
cache holds the value from the new file, and the next build is "up to date". With
``content_hash`` a touch that keeps the bytes is "up to date". Every build runs in a forked
child that imports the module afresh, as a new ``prebake build`` process would, so the lazily
loaded checkpoint is read again only if prebake rebuilds.

A kill case SIGKILLs the builder mid-build, resumes, and checks that the files read by the
chunks journaled before the kill are still recorded: changing one of them means a rebuild.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import shutil
import signal
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prebake
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.bake.freshness import rebuild_reasons
from prebake.cache.files import read_manifest
from prebake.cache.format import JOURNAL, partial_path
from prebake.identity.plugins import load_object
from prebake.sources import DatasetSource
from prebake.steps import compile_steps
from prebake.synthetic import write_npz

from . import Row
from .crash import install_kill, join_forked
from .staleness import in_child

KINDS = ("checkpoint", "json", "npy", "stage")
CHANGES = ("content", "size", "touch", "delete")
NUM_ITEMS, CHUNK_ROWS = 8, 2

MODULE = '''
import json
import os

import numpy as np
import torch

PATH = {path!r}
_ckpt = None


def transform(item):
    item["value"] = np.float32(read_value())
    return item


def stage_fn(batch):
    return {{"value": batch["label"].to(torch.float32) * 0 + read_value()}}


def read_value():
    global _ckpt
    if not os.path.exists(PATH):
        return 0.0
    if {kind!r} == "checkpoint":  # loaded once per process, as real code does
        if _ckpt is None:
            _ckpt = torch.load(PATH)
        return float(_ckpt["w"].sum())
    if {kind!r} == "npy":
        return float(np.load(PATH).sum())
    with open(PATH) as f:  # json and stage: read on every call
        return float(json.load(f)["scale"])
'''


def write_file(kind: str, path: Path, value: int, wide: bool = False) -> None:
    """The file ``kind`` reads, holding ``value``; ``wide`` makes it another size."""
    n = 5 if wide else 4
    if kind == "checkpoint":
        torch.save({"w": torch.full((n,), float(value))}, path)
    elif kind == "npy":
        np.save(path, np.full(n, value, dtype=np.float32))
    else:
        path.write_text(json.dumps({"scale": value, "pad": "x" * (n - 4)}))


def expected(kind: str, path: Path) -> float:
    if not path.exists():
        return 0.0
    if kind == "checkpoint":
        return float(torch.load(path)["w"].sum())
    if kind == "npy":
        return float(np.load(path).sum())
    return float(json.loads(path.read_text())["scale"])


def change(kind: str, path: Path, how: str) -> None:
    st = path.stat()
    if how == "content":  # other bytes of the same size, the mtime put back: only ctime tells
        write_file(kind, path, 4)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif how == "size":
        write_file(kind, path, 5, wide=True)
    elif how == "touch":
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    else:
        path.unlink()


def setup(d: Path, kind: str) -> tuple[Path, Path, str]:
    """``(source, file read, module spec)`` in ``d``."""
    src = write_npz(d / "src", n=NUM_ITEMS, size=(4, 4))
    read = d / {"checkpoint": "encoder.pt", "npy": "table.npy"}.get(kind, "lut.json")
    write_file(kind, read, 3)
    (d / "usermod.py").write_text(MODULE.format(path=str(read), kind=kind))
    return src, read, f"{d / 'usermod.py'}:" + ("stage_fn" if kind == "stage" else "transform")


def build(src: str, out: str, spec: str, workers: int, content_hash: bool) -> dict[str, Any]:
    """One build with the user module imported afresh (call it through :func:`in_child`)."""
    fn = load_object(spec)
    stage = spec.endswith(":stage_fn")
    stages = (prebake.Stage(fn, inputs=("label",), outputs=("value",), batch_size=2, device="cpu"),) if stage else ()
    opts = BuildOptions(compile_steps(list(stages) if stage else [fn]), workers=workers, chunk_rows=CHUNK_ROWS,
                        content_hash=content_hash)
    [report] = build_all(resolve_sources(src), out, opts)
    values = np.load(Path(out) / "value.npy").tolist()
    return {"action": report.action, "reasons": report.reasons, "values": values}


def one_case(d: Path, kind: str, how: str, workers: int, content_hash: bool) -> tuple[bool, str]:
    src, read, spec = setup(d, kind)
    out = d / "cache"
    args = (str(src), str(out), spec, workers, content_hash)
    before = expected(kind, read)
    first, again = in_child(build, *args), in_child(build, *args)
    if again.get("action") != "up to date":
        return False, f"an unchanged {read.name} did not give 'up to date': {again}"
    change(kind, read, how)
    same = how == "touch" and content_hash  # the bytes did not change
    listed = rebuild_reasons(read_manifest(out))
    if same != (not any(read.name in r for r in listed)):
        return False, f"after a {how} of {read.name}, prebake ls says {listed or 'up to date'}"
    after, last = in_child(build, *args), in_child(build, *args)
    named = any(read.name in r and "read while baking" in r for r in after.get("reasons", []))
    if not (after.get("action") == "up to date" if same else after.get("action") == "rebuilt" and named):
        return False, f"after a {how} of {read.name}: {after}"
    want = expected(kind, read)
    if first.get("values") != [before] * NUM_ITEMS or after.get("values") != [want] * NUM_ITEMS:
        return False, f"values {first.get('values')} then {after.get('values')}, expected {before} then {want}"
    if last.get("action") != "up to date":
        return False, f"the build after the rebuild was not 'up to date': {last}"
    return True, ""


# -- a killed build resumes with what its journaled chunks read ----------------------------------------

DATASET = '''
import os

import numpy as np

SIDE = {side!r}


class Items:
    def __len__(self):
        return {n}

    def fingerprint(self):
        return "index-derived items"

    def __getitem__(self, i):
        return {{"x": np.int64(i)}}


def make():
    return Items()


def transform(item):  # reads the item's own side file: only the chunk that bakes it reads it
    with open(os.path.join(SIDE, f"{{int(item['x'])}}.txt")) as f:
        item["value"] = np.float32(len(f.read()))
    return item
'''
RESUME_ITEMS = 16


def build_dataset(ds: str, tf: str, out: str) -> dict[str, Any]:
    """A workers=2 build of the side-file dataset, journaling every finished chunk."""
    import prebake.bake.build as B

    B._CHECKPOINT_S = 0.0
    opts = BuildOptions(compile_steps([load_object(tf)]), workers=2, chunk_rows=CHUNK_ROWS)
    [report] = build_all({"": DatasetSource.from_spec(ds)}, out, opts, _PROGRESS)
    return {"action": report.action, "reasons": report.reasons,
            "values": np.load(Path(out) / "value.npy").tolist()}


_PROGRESS: Any = None  # set in the child to be killed


def _killed(ds: str, tf: str, out: str, kill: str) -> None:
    global _PROGRESS
    os.setsid()  # its own process group: join_forked reaps its workers
    _PROGRESS = install_kill(kill)
    build_dataset(ds, tf, out)
    os._exit(0)


def _side_dataset(d: Path) -> tuple[Path, str, str, Path]:
    side = d / "side"
    side.mkdir(parents=True)
    for i in range(RESUME_ITEMS):
        (side / f"{i}.txt").write_text("a" * (i + 1))
    (d / "ds.py").write_text(DATASET.format(side=str(side), n=RESUME_ITEMS))
    return side, f"{d / 'ds.py'}:make", f"{d / 'ds.py'}:transform", d / "cache"


def _kill(ds: str, tf: str, out: Path, kill: str) -> list[int]:
    """Kill a build at ``kill``; the chunks (but the first, whose item 0 the probe reads again) it journaled."""
    p = mp.get_context("fork").Process(target=_killed, args=(ds, tf, str(out), kill))
    p.start()
    if join_forked(p) != -signal.SIGKILL:
        raise AssertionError(f"the build to kill at {kill} ended with status {p.exitcode}")
    journal = partial_path(out) / JOURNAL
    lines = journal.read_text().splitlines() if journal.exists() else []
    return sorted(c for c in (json.loads(line)["chunk"] for line in lines) if c > 0)


def resume_case(d: Path) -> tuple[bool, str]:
    """Killed mid-build, resumed: a file that only a chunk journaled before the kill read is recorded."""
    side, ds, tf, out = _side_dataset(d)
    done = _kill(ds, tf, out, f"progress:{0.5}")
    if not done:
        return False, "no chunk but the first was journaled before the kill"
    resumed = in_child(build_dataset, ds, tf, str(out))
    if resumed.get("action") != "resumed":
        return False, f"the build after the kill did not resume: {resumed}"
    item = done[0] * CHUNK_ROWS
    (side / f"{item}.txt").write_text("changed")
    after = in_child(build_dataset, ds, tf, str(out))
    if after.get("action") != "rebuilt" or not any(f"{item}.txt" in r for r in after.get("reasons", [])):
        return False, f"{item}.txt (read by chunk {done[0]}, journaled before the kill) changed: {after}"
    return True, ""


def changed_while_killed_case(d: Path, kill: str) -> tuple[bool, str]:
    """Killed (mid-build, or sealed but not published), then a file the finished chunks read changed:
    the next build starts over instead of finishing a cache made from the old file."""
    side, ds, tf, out = _side_dataset(d)
    _kill(ds, tf, out, kill)
    (side / "2.txt").write_text("changed")
    after = in_child(build_dataset, ds, tf, str(out))
    want = [float(len((side / f"{i}.txt").read_text())) for i in range(RESUME_ITEMS)]
    if after.get("action") != "built" or after.get("values") != want:
        return False, f"killed at {kill}, 2.txt changed, then: {after} (values expected {want})"
    return True, ""


def reads(work_dir: Path, trials: int, seed: int = 0) -> Row:
    """``trials`` cases: kinds of file x changes x workers 0 and 2 x content_hash, in an order drawn from
    ``seed``; every eighth a kill and resume (and a change after the kill) instead. A stale "up to date" or an
    unneeded rebuild fails."""
    row = Row("files read while baking: a changed one rebuilds naming it; unchanged ones do not")
    rng = random.Random(seed)
    cases = list(product(KINDS, CHANGES, (0, 2), (False, True)))
    rng.shuffle(cases)
    for t in range(trials):
        d = work_dir / f"reads-{t}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        kind, how, workers, content_hash = cases[t % len(cases)]
        name = "kill and resume" if t % 8 == 7 else f"{kind}, {how}, workers={workers}, content_hash={content_hash}"
        try:
            if t % 8 == 7:
                kill = ("progress:0.5", "publish:entry")[t // 8 % 2]
                ok, detail = resume_case(d / "a")
                ok, detail = (changed_while_killed_case(d / "b", kill)) if ok else (ok, detail)
            else:
                ok, detail = one_case(d, kind, how, workers, content_hash)
        except (AssertionError, prebake.PrebakeError, OSError, ValueError) as e:
            ok, detail = False, f"{type(e).__name__}: {e}"
        row.check(ok, f"{name}: {detail}")
    return row
