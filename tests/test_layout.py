"""The tree is the architecture: imports between prebake's packages point one way, with no cycles.

Read from the source with ``ast`` (nothing is imported), so a lazy import inside a
function counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prebake"
STAGES = ("cache", "bake", "load", "augment", "measure")

#: What each stage may import from prebake. ``errors``, ``_version`` and ``_lazy`` are the ground floor.
ALLOWED = {
    "cache": {"cache"},
    "bake": {"bake", "cache"},
    "load": {"load", "cache"},
    "augment": {"augment"},
    "measure": {"measure", "load", "cache", "bake", "augment"},
}
GROUND = {"errors", "_version", "_lazy"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every prebake module that ``path`` imports, as a dotted name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "prebake":
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)  # `from . import fingerprint`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "prebake")
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The module a dotted import names (``prebake.cache.format.ColumnSpec`` -> ``prebake.cache.format``)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for t in imports_of(path):
            m = resolve(t, known)
            if m and m != name and not name.startswith(m + "."):  # a submodule naming its own package face
                edges[name].add(m)
    return edges


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_stage_is_a_package():
    for s in STAGES:
        assert (SRC / s / "__init__.py").is_file(), s


@pytest.mark.parametrize("name", STAGES)
def test_stage_imports_only_what_it_may(name: str):
    bad = []
    for module, targets in graph().items():
        if stage(module) != name:
            continue
        for t in targets:
            other = stage(t)
            if other not in ALLOWED[name] and other not in GROUND:
                bad.append(f"{module} imports {t}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t] if t in stack else [m, t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_cycles_between_stages():
    between: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph().items():
        for t in targets:
            a, b = stage(module), stage(t)
            if a in STAGES and b in STAGES and a != b:
                between[a].add(b)
    for a, targets in between.items():
        for b in targets:
            assert a not in between.get(b, set()), f"{a} and {b} import each other"


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The checks above are not vacuous: a planted cache -> bake import, and the cycle it closes, are caught."""
    fake = tmp_path / "prebake"
    for s in STAGES:
        (fake / s).mkdir(parents=True)
        (fake / s / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "bake" / "build.py").write_text("from ..cache import format, reader\n")  # and reader imports build
    (fake / "cache" / "format.py").write_text("x = 1\n")
    (fake / "cache" / "reader.py").write_text("from ..bake.build import thing\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", fake)
    edges = graph()
    assert "prebake.bake.build" in edges["prebake.cache.reader"]
    with pytest.raises(AssertionError, match="prebake.cache.reader imports prebake.bake.build"):
        test_stage_imports_only_what_it_may("cache")
    with pytest.raises(AssertionError):
        test_no_import_cycles_between_modules()
