"""The docs site's code blocks run as written, its API reference lists every public name, and its results
tables are made from every results file.

Each page runs in a fresh copy of the folder ``prebake demo`` writes, beside a copy of ``examples/`` (where
the quickstart leaves a user: ``python ../examples/pcg``), its blocks in order as one session: Python blocks
share one namespace (a page reads like a notebook), bash blocks run in between. A block marked
``<!-- test: skip REASON -->`` on the line before it is not run; ``<!-- test: needs MODULE,... -->`` runs it
only when those modules import (a Python block that imports an optional package needs it without saying),
and a page stops at the first block whose needs are missing, since later blocks build on it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
# packages of the extras: a Python block importing one runs only where it is installed
OPTIONAL = ("accelerate", "av", "datasets", "h5py", "lightning", "monai", "nibabel", "peft", "pydicom", "ray",
            "scipy", "soundfile", "torchdata")
RUN = ("bash", "python")
SHOWN = ("text", "console", "yaml", "json", "toml", "csv")  # displayed, never run
MARKER = re.compile(r"<!-- test: (skip|needs) (.+?) -->")
FENCE = re.compile(r"^(`{3,})(\S*)")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    needs: tuple[str, ...] = ()


def pages() -> list[Path]:
    generated = {DOCS / "_build", DOCS / "_generated", DOCS / "api"}
    return sorted(p for p in DOCS.rglob("*.md") if not any(g in p.parents for g in generated))


def _marker(lines: list[str], i: int) -> tuple[str | None, tuple[str, ...]]:
    match = MARKER.fullmatch(lines[i - 1].strip()) if i > 0 else None
    if match is None:
        return None, ()
    if match[1] == "skip":
        return match[2].strip(), ()
    return None, tuple(m.strip() for m in match[2].split(","))


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a page that is not a MyST directive (``{include}``, ``{toctree}``)."""
    lines, found, i = page.read_text().split("\n"), [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence[1]) and not lines[j].strip("`"))
        if not fence[2].startswith("{"):
            skip, needs = _marker(lines, i)
            found.append(Block(str(page.relative_to(DOCS)), i + 1, fence[2], "\n".join(lines[i + 1:end]) + "\n",
                               skip, needs))
        i = end + 1
    return found


def needs(block: Block) -> tuple[str, ...]:
    imported = re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", block.code, re.M) if block.lang == "python" else []
    return tuple(dict.fromkeys([*block.needs, *(m for m in imported if m in OPTIONAL)]))


def runnable_pages() -> list[Path]:
    return [p for p in pages() if any(b.lang in RUN and b.skip is None for b in blocks(p))]


def test_every_block_says_what_it_is():
    """A block is run, or displayed (a named language), or skipped with a reason: never silently untested."""
    for page in pages():
        for b in blocks(page):
            where = f"docs/{b.page}:{b.line}"
            assert b.lang in RUN + SHOWN, f"{where}: a ``` block needs one of the languages {RUN + SHOWN}"
            assert b.skip is None or len(b.skip) > 10, f"{where}: say why the block is skipped"
            assert all(re.fullmatch(r"[A-Za-z_]\w*", m) for m in b.needs), f"{where}: needs names modules: {b.needs}"


RUNNER = r"""
import json, linecache, subprocess, sys
ns = {"__name__": "__main__"}
for b in json.load(open(sys.argv[1])):
    print(f"--- docs/{b['page']}:{b['line']} ({b['lang']})", flush=True)
    if b["lang"] == "bash":
        if subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b["code"]]).returncode:
            sys.exit(f"the bash block at docs/{b['page']}:{b['line']} failed")
        continue
    name = f"docs/{b['page']}:{b['line']}"
    linecache.cache[name] = (len(b["code"]), None, b["code"].splitlines(True), name)  # inspect.getsource works
    exec(compile(b["code"], name, "exec"), ns)
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """What ``make demo`` leaves a user: the demo's folder (and examples/ beside it, as in the repository)."""
    root = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([str(Path(sys.executable).parent / "prebake"), "demo", "--workdir",
                           str(root / "prebake-demo"), "--bench-seconds", "0"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return root / "prebake-demo"


def _fresh(demo: Path, tmp_path: Path) -> Path:
    """A copy of the demo folder (hard links: no 180 MB copy per page) beside a copy of examples/."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(demo, tmp_path / "prebake-demo", copy_function=os.link)
    return tmp_path / "prebake-demo"


#: Pages whose blocks train or bake a workload (9-40 s each, about 2 minutes together): ``make docs-test``, which
#: .ci/run runs after ``make test``; the others (concepts, getting started) run in ``make test`` too.
LONG_PAGES = {"tour.md", "integrations.md", "concepts/watch.md"}


def _marked(page: Path) -> Any:
    name = str(page.relative_to(DOCS))
    slow = name in LONG_PAGES or name.startswith("guides/")
    return pytest.param(page, id=name, marks=[pytest.mark.docs_pages] if slow else [])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the pages use fork DataLoader workers")
@pytest.mark.parametrize("page", [_marked(p) for p in runnable_pages()])
def test_the_page_runs_as_written(page, demo, tmp_path):
    todo, missing = [], []
    for b in blocks(page):
        if b.lang not in RUN or b.skip is not None:
            continue
        missing = [m for m in needs(b) if importlib.util.find_spec(m) is None]
        if missing:
            break  # this block and the ones after it, which build on it, need an extra that is not installed
        todo.append(b.__dict__)
    if not todo:
        pytest.skip(f"docs/{page.relative_to(DOCS)}: its first block needs {missing}, not installed")
    (tmp_path / "blocks.json").write_text(json.dumps(todo))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_DATASETS_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "blocks.json")], cwd=_fresh(demo, tmp_path),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n--- stderr:\n{proc.stderr[-5000:]}"
    if missing:
        pytest.skip(f"ran {len(todo)} blocks of docs/{page.relative_to(DOCS)}; the rest need {missing}, not installed")


def test_the_api_reference_documents_every_public_name(tmp_path):
    """Each public module's ``__all__``, every name on its page, every class and function with a docstring."""
    import gen_api

    written = {p.name: p.read_text() for p in gen_api.write(tmp_path)}
    modules = gen_api.public_modules()
    assert {"prebake", "prebake.steps", "prebake.augment", "prebake.integrations.lightning"} <= set(modules)
    for module in modules:
        text = written[f"{module}.rst"]
        for name in gen_api.public_names(module):
            assert f"{module}.{name}" in text, f"{module}.{name} is public but not in the API reference"
            obj = getattr(importlib.import_module(module), name)
            if isinstance(obj, type) or callable(obj):
                assert (obj.__doc__ or "").strip(), f"{module}.{name} has no docstring for the reference"
    assert all(f"   {m}" in written["index.rst"] for m in modules)
    assert list(gen_api.write(tmp_path)) == []  # unchanged pages are not rewritten: Sphinx rebuilds nothing


def test_every_results_file_has_its_tables(tmp_path):
    """Each benchmarks/results/*.json is on the benchmarks page, with the machine it ran on, GPU figures not
    measured where no GPU file exists; a file of a benchmark with no table of its own is shown as it is."""
    import gen_results

    files = gen_results.load(gen_results.RESULTS)
    assert files, "benchmarks/results/ holds no results"
    made = gen_results.pages(files)
    for stem in files:
        page = made[gen_results.benchmark_of(stem)]
        assert f"benchmarks/results/{stem}.json" in page and "*Measured on:*" in page, stem
    assert "GPU figures: not measured" in made["loader"]
    benchmarks = (DOCS / "benchmarks.md").read_text()
    assert all(f"_generated/results/{name}.md" in benchmarks for name in made), "a benchmark missing from the page"
    new = {**files, "newbench-cpu-2core": {"machine": {"cpu_count": 2}, "rows": [{"pipeline": "x", "s": 1.5}]}}
    assert "`rows.0.s` | 1.5" in gen_results.pages(new)["other"]


def test_the_workloads_are_named_by_what_they_are():
    for page in pages():
        assert not re.search(r"\bseeds? 00\d", page.read_text(), re.I), f"docs/{page.relative_to(DOCS)} names a seed"
    import gen_results

    assert not re.search(r"\bseeds? 00\d", json.dumps(gen_results.pages(gen_results.load(gen_results.RESULTS))))
