"""The docs' results tables under attack: results files whose schema drifted, that come from a GPU or from a
benchmark with no table yet, and READMEs around the results markers, through docs/gen_results.py.

A trial fails when the generator raises, drops a results file or its machine from the pages, reads a file
its table cannot read without naming the file, says "GPU figures: not measured" beside a GPU run (or not
without one), or rewrites the README anywhere but between its markers (or not idempotently).
"""

from __future__ import annotations

import copy
import json
import random
import sys
import traceback
from pathlib import Path
from typing import Any

from . import Row

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOT_MEASURED = "GPU figures: not measured"
MUTATIONS = ("drop", "retype", "gpu", "new", "readme")


def _gen() -> Any:
    if str(DOCS) not in sys.path:
        sys.path.insert(0, str(DOCS))
    import gen_results

    return gen_results


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a results file (dict keys and list indices)."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    return [p for k, v in items for p in [(*prefix, k), *_paths(v, (*prefix, k))]]


def _set(data: Any, path: tuple[Any, ...], value: Any = None, drop: bool = False) -> None:
    for key in path[:-1]:
        data = data[key]
    if drop and isinstance(data, dict):
        del data[path[-1]]
    else:
        data[path[-1]] = value


def _mutate(kind: str, stem: str, data: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, Any], str]:
    """A results file changed one way: ``(stem, data, what was done)``."""
    data = copy.deepcopy(data)
    paths = _paths(data)
    if kind == "drop" and paths:
        path = rng.choice(paths)
        _set(data, path, drop=True)
        return stem, data, f"dropped {path}"
    if kind == "retype" and paths:
        path, value = rng.choice(paths), rng.choice([None, "n/a", [], {}, -1, float("nan")])
        _set(data, path, value)
        return stem, data, f"{path} = {value!r}"
    if kind == "gpu":  # as benchmarks record a GPU run: the GPU's name in every machine record, the file named so
        records = [p for p in paths if p[-1] == "machine"] or [("machine",)]
        for path in records:
            _set(data, path, {"cpu_count": 2, "gpu": "NVIDIA H200"})
        return f"{_gen().benchmark_of(stem)}-nvidia-h200", data, "a GPU run"
    return f"bench{rng.randrange(1000)}-cpu-2core", data, "a benchmark with no table"


def _check_pages(kind: str, stem: str, files: dict[str, Any], what: str, row: Row) -> None:
    gen = _gen()
    problems: list[str] = []
    made = gen.pages(files, problems)
    name = gen.benchmark_of(stem)
    page = made[name]
    where = f"{stem} ({what})"
    row.check(f"benchmarks/results/{stem}.json" in page, f"{where}: missing from the {name} tables")
    row.check("*Measured on:*" in page, f"{where}: no machine line")
    row.check(all(stem in p for p in problems), f"{where}: a problem that names another file: {problems}")
    if kind == "gpu":
        row.check(NOT_MEASURED not in page and "GPU: NVIDIA H200" in page, f"{where}: GPU figures said not measured")
    else:
        row.check(kind != "new" or name == "other", f"{where}: a benchmark with no table not under 'other'")
        row.check(NOT_MEASURED in page, f"{where}: GPU figures not said to be not measured")


def _check_readme(files: dict[str, Any], rng: random.Random, row: Row) -> None:
    gen = _gen()
    head = "".join(rng.choice("ab |-\n#") for _ in range(rng.randrange(200)))
    tail = "".join(rng.choice("ab |-\n#`") for _ in range(rng.randrange(200)))
    text = f"{head}{gen.BEGIN}\nold table\n{gen.END}{tail}"
    once = gen.rewrite_readme(text, files)
    row.check(once.startswith(head + gen.BEGIN) and once.endswith(gen.END + tail), "the README changed outside")
    row.check(gen.rewrite_readme(once, files) == once, "rewriting the README twice changed it")
    try:
        gen.rewrite_readme(head + tail, files)
        row.fail("a README without the markers was rewritten")
    except SystemExit as e:
        row.check(gen.BEGIN in str(e), f"the missing-markers message does not say what to add: {e}")


def docs(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    """``trials`` random results files (or READMEs) through the generator of the docs' results tables."""
    row = Row("results tables (docs): drifted schemas, GPU runs, new benchmarks, README markers; every file shown "
              "with its machine, GPU figures 'not measured' only without a GPU run, the README changed only "
              "between its markers")
    rng = random.Random(seed)
    real = _gen().load(_gen().RESULTS)
    counts: dict[str, int] = {}
    for _ in range(trials):
        kind = rng.choice(MUTATIONS)
        counts[kind] = counts.get(kind, 0) + 1
        stem = rng.choice(sorted(real))
        files = {s: d for s, d in real.items() if kind != "gpu" or _gen().benchmark_of(s) != _gen().benchmark_of(stem)}
        try:
            if kind == "readme":
                _check_readme(files, rng, row)
                continue
            new_stem, data, what = _mutate(kind, stem, real[stem], rng)
            json.dumps(data, default=str)  # what a benchmark could have written
            _check_pages(kind, new_stem, {**files, new_stem: data}, what, row)
        except Exception:  # noqa: BLE001  (any exception is the failure being counted)
            row.fail(f"{kind} on {stem}: {traceback.format_exc(limit=3)}")
    row.notes["mutations"] = counts
    return row
