"""Messages that name what the user can act on, over random CSV layouts, caches and views.

A trial lays out a CSV table and its images at random (paths relative or absolute, the table beside the
images or elsewhere, ``base_dir`` given or not, some files missing) and builds it; every missing file
must be reported at the path prebake read, with the ``base_dir`` hint exactly when the row's path is
relative. It also writes a cache of random fixed and ragged columns and cuts views of a random column
with bad indices: no message may print ``<... object at 0x...>`` or offer ``[]``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

import prebake
from prebake.errors import PrebakeError
from prebake.integrations.torchdata import BatchSampler
from prebake.load.views import Items

from . import Row


def _csv_trial(d: Path, rng: np.random.Generator, row: Row) -> None:
    data, table = d / "data", d / ("data" if rng.random() < 0.5 else "tables")
    (data / "imgs").mkdir(parents=True)
    table.mkdir(exist_ok=True)
    n = int(rng.integers(2, 6))
    missing = set(rng.choice(n, size=int(rng.integers(1, n)), replace=False).tolist())
    absolute = rng.random() < 0.3
    given = rng.random() < 0.5
    lines = ["path,label"]
    for i in range(n):
        if i not in missing:
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(data / "imgs" / f"{i}.png")
        lines.append(f"{data / 'imgs' / f'{i}.png' if absolute else f'imgs/{i}.png'},{i % 2}")
    (table / "t.csv").write_text("\n".join(lines) + "\n")
    options = prebake.SourceOptions(base_dir=str(d / "elsewhere")) if given else None
    base = (d / "elsewhere" if given else table).resolve()
    found = absolute or base == data.resolve()  # else every relative path resolves where no image is
    expected = sorted(missing) if found else list(range(n))
    try:
        prebake.build(table / "t.csv", d / "c", source_options=options)
        text = " ".join(s["reason"] for s in prebake.open(d / "c").manifest["skipped"])
    except PrebakeError as e:  # every row missing: the error names the first three
        text, expected = str(e), expected[:3]
    for i in expected:
        where = (data if absolute else base) / "imgs" / f"{i}.png"
        row.check(f"file not found: {where}" in text, f"row {i}: {where} not named in {text[:300]}")
    row.check(("base_dir" in text) != absolute, f"absolute={absolute}: {text[:300]}")


def _cache(d: Path, rng: np.random.Generator) -> prebake.Cache:
    n = int(rng.integers(2, 6))
    cols: dict = {"label": np.arange(n)}
    for k, ragged in enumerate(rng.random(int(rng.integers(1, 3))) < 0.5):
        cols[f"c{k}"] = ([np.zeros((int(rng.integers(1, 5)), 2), np.float32) for _ in range(n)] if ragged
                         else rng.integers(0, 9, (n, 3)).astype(np.int16))
    d.mkdir(parents=True)
    return prebake.write_arrays(d / "arr", cols)


def _view_trial(d: Path, rng: np.random.Generator, row: Row) -> None:
    cache = _cache(d, rng)
    column = str(rng.choice(cache.columns))
    views = [lambda: Items(cache), lambda: prebake.Windows(cache, column, 2), lambda: prebake.Elements(cache, column)]
    for make in views:
        try:
            view = make()
        except PrebakeError as e:
            row.check("[]" not in str(e) and "object at 0x" not in str(e), f"{column}: {e}")
            continue
        row.check("object at 0x" not in repr(view), repr(view))
        bad = len(view) + int(rng.integers(0, 5))
        try:
            BatchSampler(view, 2, indices=[bad])
            row.fail(f"indices=[{bad}] of {view!r} accepted")
        except PrebakeError as e:
            row.check("object at 0x" not in str(e) and str(bad) in str(e), str(e))


def messages(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    """``trials`` random CSV layouts and as many random caches with views, each message checked."""
    row = Row("messages: missing CSV files shown resolved with the base_dir hint; views named by parameters")
    rng = np.random.default_rng(seed)
    for t in range(trials):
        d = work_dir / f"m{t}"
        d.mkdir(parents=True)
        _csv_trial(d / "csv", rng, row)
        _view_trial(d / "views", rng, row)
        shutil.rmtree(d, ignore_errors=True)
    return row
