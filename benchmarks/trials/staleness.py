"""Every way a cache went silently stale (item 3), and the touch that forced a full rebuild (item 15).

Each case builds, changes one input the way a user would (and, where it matters, puts
the file's size and mtime back), builds again, and checks: the rebuild happened, its
reason names the change, the new cache holds the new data, and a third build is up to
date. Edits to your own modules are built in forked children, each importing the
modules afresh, as a new ``prebake build`` process would.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import prebake
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.steps import compile_steps
from prebake.synthetic import write_cifar10_python, write_csv_table, write_image_folder, write_npz

from . import Row


def build(source: Any, out: Path, steps: Sequence[Any] = (), **options: Any) -> Any:
    sources = resolve_sources(source) if not isinstance(source, dict) else source
    [report] = build_all(sources, out, BuildOptions(compile_steps(steps), workers=0, **options))
    return report


def keep_stat(path: Path, edit: Callable[[], None]) -> None:
    """Edit ``path`` and put its size-preserving edit's mtime back (``os.utime``), as a careful tool would."""
    st = path.stat()
    edit()
    assert path.stat().st_size == st.st_size, "the edit must keep the size"
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def flip_one(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a forked child (fresh imports of your modules); its JSON-able result."""
    report = Path(tempfile.gettempdir()) / f"prebake-child-{uuid.uuid4().hex}.json"
    p = mp.get_context("fork").Process(target=_child, args=(fn, args, report))
    p.start()
    p.join(120)
    try:
        return json.loads(report.read_text())
    finally:
        report.unlink(missing_ok=True)


def _child(fn: Callable[..., Any], args: tuple[Any, ...], report: Path) -> None:
    try:
        out: Any = fn(*args)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the case
        out = {"crash": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
    report.write_text(json.dumps(out, default=str))
    os._exit(0)


def _result(report: Any) -> dict[str, Any]:
    return {"action": report.action, "reasons": report.reasons, "reused": report.reused,
            "warnings": getattr(report, "warnings", [])}


def _rebuilt_for(r: dict[str, Any], *words: str) -> bool:
    return r.get("action") == "rebuilt" and any(all(w in reason for w in words) for reason in r.get("reasons", []))


# -- source files whose size and mtime were put back -----------------------------------------------


def cifar_batch_edited(d: Path) -> tuple[bool, str]:
    root = write_cifar10_python(d / "src", n_train=50, n_test=10)
    out = d / "cache"
    build_all(resolve_sources(root), out, BuildOptions(workers=0))  # train and test
    raw = (root / "data_batch_1").read_bytes()
    pixels = prebake.open(out / "train").column("image")[0].tobytes()
    at = raw.index(pixels[:64]) + 5  # a pixel of the first image, inside the pickle
    keep_stat(root / "data_batch_1", lambda: flip_one(root / "data_batch_1", at))
    r = _result([x for x in build_all(resolve_sources(root), out, BuildOptions(workers=0))
                 if x.split == "train"][0])
    changed = prebake.open(out / "train").column("image")[0].tobytes() != pixels
    again = [x.action for x in build_all(resolve_sources(root), out, BuildOptions(workers=0))]
    ok = _rebuilt_for(r, "data_batch_1", "modified") and changed and again == ["up to date"] * 2
    return ok, f"{r}, new pixels: {changed}, then {again}"


def folder_image_edited(d: Path) -> tuple[bool, str]:
    root = write_image_folder(d / "src", classes=("a", "b"), per_class=3, size=(8, 8), fmt="bmp")
    out, name = d / "cache", "a/a_001.bmp"
    build(root, out)
    before = _row(root, out, name)
    keep_stat(root / name, lambda: flip_one(root / name, (root / name).stat().st_size - 5))
    r = _result(build(root, out))
    after = _row(root, out, name)
    want = np.asarray(Image.open(root / name).convert("RGB")).transpose(2, 0, 1)
    ok = _rebuilt_for(r, name, "modified") and np.array_equal(after, want) and not np.array_equal(after, before)
    ok = ok and r["reused"] == 5 and build(root, out).action == "up to date"  # the other rows were copied
    return ok, f"{r}, the row holds the new pixels: {np.array_equal(after, want)}"


def _row(root: Path, out: Path, key: str) -> np.ndarray:
    keys = resolve_sources(root)[""].keys()
    return prebake.open(out)[keys.index(key)]["image"]


def csv_table_edited(d: Path) -> tuple[bool, str]:
    table = write_csv_table(d / "src", n=6)
    out = d / "cache"
    build(table, out)
    lines = table.read_text().splitlines()
    a, b = lines[1].split(",")[1], lines[2].split(",")[1]
    if a == b:
        b = lines[3].split(",")[1]
        lines[3] = lines[3].replace(b, a)
    else:
        lines[2] = lines[2].replace(b, a)
    lines[1] = lines[1].replace(a, b)  # two labels swapped: the same bytes, in another order
    keep_stat(table, lambda: table.write_text("\n".join(lines) + "\n"))
    r = _result(build(table, out))
    ok = _rebuilt_for(r, "labels.csv", "modified") and build(table, out).action == "up to date"
    return ok, str(r)


def npz_edited(d: Path) -> tuple[bool, str]:
    path = write_npz(d / "src", n=8)
    out = d / "cache"
    build(path, out)
    arrays = dict(np.load(path))

    def edit() -> None:
        arrays["images"][3, 0, 0, 0] ^= 0xFF
        np.savez(path, **arrays)

    keep_stat(path, edit)
    r = _result(build(path, out))
    ok = _rebuilt_for(r, "data.npz", "modified") and build(path, out).action == "up to date"
    ok = ok and int(prebake.open(out)[3]["image"][0, 0, 0]) == int(arrays["images"][3, 0, 0, 0])
    return ok, str(r)


# -- your own code ---------------------------------------------------------------------------------

HELPER = "SCALE = {k}\n\ndef shift(x):\n    return x // SCALE\n"
TF_HELPER = ("import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\nimport {mod}\n\n"
             "def tf(item):\n    item['image'] = {mod}.shift(item['image'])\n    return item\n")
TF_ATTR = ("import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\nimport {mod} as cfg\n\n"
           "def tf(item):\n    item['image'] = item['image'] // cfg.SCALE\n    return item\n")
TF_WEIGHTS = '''import torch

ENCODER = torch.nn.Linear(3, 2)
ENCODER.load_state_dict(torch.load({weights!r}))
ENCODER.eval()


def encode(item):
    with torch.no_grad():
        x = torch.from_numpy(item["image"].reshape(3, -1).mean(axis=1).astype("float32"))
        item["code"] = ENCODER(x).numpy()
    return item
'''


def _build_with(source: Path, out: Path, spec: str) -> dict[str, Any]:
    from prebake.identity.plugins import load_object

    report = build(source, out, [load_object(spec)])
    return {**_result(report), "first": prebake.open(out)[0]["image" if "code" not in prebake.open(out).columns
                                                           else "code"].tolist()}


def _edit_module(path: Path, text: str) -> None:
    """``path`` rewritten with ``text``, as a person's edit a while after the last run. CPython checks a module's
    cached bytecode against its source's mtime in whole seconds and its size: an edit of the same size within the
    second of the last import would run the old bytecode (Python's import, not prebake's: prebake identifies the code
    that runs), so the cached bytecode goes with the edit. Seen when the trial ran with bytecode written: 8 of 33."""
    path.write_text(text)
    Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)


def _code_case(d: Path, template: str, reason: str) -> tuple[bool, str]:
    root = write_image_folder(d / "src", classes=("a",), per_class=2, size=(6, 6))
    mod = f"helper_{uuid.uuid4().hex[:8]}"
    (d / f"{mod}.py").write_text(HELPER.format(k=2))
    (d / "tf.py").write_text(template.format(mod=mod))
    spec, out = f"{d / 'tf.py'}:tf", d / "cache"
    first = in_child(_build_with, root, out, spec)
    _edit_module(d / f"{mod}.py", HELPER.format(k=4))  # only the other module changed
    second = in_child(_build_with, root, out, spec)
    third = in_child(_build_with, root, out, spec)
    ok = first.get("action") == "built" and _rebuilt_for(second, reason) and third.get("action") == "up to date"
    ok = ok and second.get("first") != first.get("first")
    return ok, f"{first} / {second} / {third}"


def helper_module_edited(d: Path) -> tuple[bool, str]:
    return _code_case(d, TF_HELPER, "transform code changed")


def module_attribute_edited(d: Path) -> tuple[bool, str]:
    return _code_case(d, TF_ATTR, "transform code changed")


def module_weights_changed(d: Path) -> tuple[bool, str]:
    import torch

    root = write_image_folder(d / "src", classes=("a",), per_class=2, size=(6, 6))
    weights = d / "encoder.pt"
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(3, 2).state_dict(), weights)
    (d / "enc.py").write_text(TF_WEIGHTS.format(weights=str(weights)))
    spec, out = f"{d / 'enc.py'}:encode", d / "cache"
    first = in_child(_build_with, root, out, spec)
    torch.manual_seed(1)
    torch.save(torch.nn.Linear(3, 2).state_dict(), weights)  # a new checkpoint; not a line of code changed
    second = in_child(_build_with, root, out, spec)
    third = in_child(_build_with, root, out, spec)
    reasons = second.get("reasons", [])
    ok = reasons == ["transform 'encode': weights of ENCODER changed"] and second.get("action") == "rebuilt"
    ok = ok and third.get("action") == "up to date" and second.get("first") != first.get("first")
    return ok, f"{first} / {second} / {third}"


def prebake_version_changed(d: Path) -> tuple[bool, str]:
    import prebake.identity.fingerprint as fpr

    root = write_image_folder(d / "src", classes=("a",), per_class=2, size=(6, 6))
    out = d / "cache"
    build(root, out)
    real = prebake.__version__
    try:
        fpr.__version__ = real + ".post1"  # a new release whose bake code changed
        r = _result(build(root, out))
        again = build(root, out).action
    finally:
        fpr.__version__ = real
    ok = _rebuilt_for(r, "prebake version", real, real + ".post1") and again == "up to date"
    return ok, f"{r}, then {again}"


DATASET = '''import os, sys
sys.path.insert(0, os.path.dirname(__file__))
import numpy as np
import {mod}


class Rows:
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {{"x": np.full(3, {mod}.shift(40 + i), np.int64), "label": i % 2}}


def make():
    return Rows()
'''


def _build_dataset(out: Path, spec: str) -> dict[str, Any]:
    from prebake.sources import DatasetSource

    report = build({"": DatasetSource.from_spec(spec)}, out)
    return {**_result(report), "first": prebake.open(out)[0]["x"].tolist()}


def dataset_code_edited(d: Path) -> tuple[bool, str]:
    mod = f"helper_{uuid.uuid4().hex[:8]}"
    (d / f"{mod}.py").write_text(HELPER.format(k=2))
    (d / "ds.py").write_text(DATASET.format(mod=mod))
    spec, out = f"{d / 'ds.py'}:make", d / "cache"
    first = in_child(_build_dataset, out, spec)
    _edit_module(d / f"{mod}.py", HELPER.format(k=4))
    second = in_child(_build_dataset, out, spec)
    third = in_child(_build_dataset, out, spec)
    ok = _rebuilt_for(second, "dataset code changed") and third.get("action") == "up to date"
    ok = ok and second.get("first") != first.get("first")
    unknown = all("fingerprint()" in w for r in (first, second, third) for w in r.get("warnings", ["none"]))
    return ok and unknown, f"{first} / {second} / {third}"


def dataset_data_unknown(d: Path) -> tuple[bool, str]:
    """Without fingerprint(), the build output and ``prebake ls`` say the data is not checked."""
    import contextlib
    import io

    from prebake.cli import main

    mod = f"helper_{uuid.uuid4().hex[:8]}"
    (d / f"{mod}.py").write_text(HELPER.format(k=2))
    (d / "ds.py").write_text(DATASET.format(mod=mod))
    r = in_child(_build_dataset, d / "caches" / "mine", f"{d / 'ds.py'}:make")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["ls", str(d / "caches"), "--json"])
    [entry] = json.loads(out.getvalue())
    ok = any("no fingerprint() method" in w for w in r.get("warnings", []))
    ok = ok and any("define fingerprint()" in n for n in entry["notes"]) and entry["state"] == "committed"
    return ok, f"{r}, ls: {entry}"


# -- item 15: content hashing ------------------------------------------------------------------------


def touched_folder_with_content_hash(d: Path) -> tuple[bool, str]:
    root = write_image_folder(d / "src", classes=("a", "b"), per_class=3, size=(8, 8), fmt="bmp")
    out = d / "cache"
    build(root, out, content_hash=True)
    files = sorted(root.rglob("*.bmp"))
    for f in files:
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**10))  # touch every file
    touched = _result(build(root, out, content_hash=True))
    flip_one(files[0], files[0].stat().st_size - 5)
    for f in files:
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**10))
    edited = _result(build(root, out, content_hash=True))
    ok = touched["action"] == "up to date" and _rebuilt_for(edited, "1 source file modified")
    ok = ok and edited["reused"] == len(files) - 1 and build(root, out, content_hash=True).action == "up to date"
    return ok, f"touched: {touched}; one edited: {edited}"


CASES: dict[str, Callable[[Path], tuple[bool, str]]] = {
    "CIFAR batch edited, size and mtime kept": cifar_batch_edited,
    "image folder file edited, size and mtime kept (and not copied stale)": folder_image_edited,
    "CSV table edited, size and mtime kept": csv_table_edited,
    ".npz edited, size and mtime kept": npz_edited,
    "helper in another of your modules edited": helper_module_edited,
    "module attribute (cfg.SCALE) edited": module_attribute_edited,
    "module-level nn.Module given new weights": module_weights_changed,
    "prebake version changed": prebake_version_changed,
    "dataset factory's helper module edited": dataset_code_edited,
    "dataset without fingerprint(): said in build output and ls": dataset_data_unknown,
    "every file touched, one edited, with --content-hash": touched_folder_with_content_hash,
}


def staleness(workdir: Path, repeats: int = 1) -> Row:
    row = Row("staleness cases: a miss with the reason; unchanged inputs: a hit")
    for k in range(repeats):
        for name, case in CASES.items():
            d = workdir / f"stale-{k}-{case.__name__}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            try:
                ok, detail = case(d)
            except (AssertionError, prebake.PrebakeError, OSError, ValueError) as e:
                ok, detail = False, f"{type(e).__name__}: {e}"
            row.check(ok, f"{name}: {detail}")
    return row
