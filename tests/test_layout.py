"""The tree is the architecture: imports between prebake's packages point one way, with no cycles.

cache < identity < sources < steps < bake: the format, what a cache is made from, the readers,
the per-item steps, running a build; load uses only cache, augment nothing, measure load and
bake; cli and the top-level modules each have their own row in ALLOWED.

Read from the source with ``ast`` (nothing is imported), so a lazy import inside a
function counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prebake"
#: The packages, from the bottom up: the format, what a cache is made from, readers, per-item steps,
#: running a build; then loading, device augmentation, measuring and the command line.
STAGES = ("cache", "identity", "sources", "steps", "bake", "load", "augment", "measure", "cli")
#: The top-level modules that are not package faces.
MODULES = ("errors", "_version", "_lazy", "native", "progress", "configfile", "config", "settings", "synthetic",
           "synthetic_volumes", "demo", "__main__")
GROUND = {"errors", "_version", "_lazy", "native"}  # any package or module may import these (native: C loops)
_EVERYTHING = set(STAGES) | set(MODULES) | {"integrations"}

#: What each package, and each top-level module, may import from prebake besides itself and GROUND.
ALLOWED = {
    "cache": set(),
    "identity": {"cache"},  # a file's identity, code and weight hashing, the fingerprint
    "sources": {"identity", "cache"},  # readers describe their files and (datasets) their code
    "steps": {"sources", "identity", "cache"},  # readers' image and volume helpers; code identity; column names
    "bake": {"steps", "sources", "identity", "cache", "config", "progress"},  # build() checks its options, shows bars
    "load": {"cache"},
    "augment": set(),
    "measure": {"load", "cache", "bake", "augment"},
    "cli": _EVERYTHING - {"__main__"},  # prebake export --format hf runs integrations.hf (which never imports cli)
    "integrations": _EVERYTHING - {"__main__", "cli", "demo"},  # adapters to other libraries, at the top
    "errors": set(), "_version": set(), "_lazy": set(), "native": set(), "progress": set(), "configfile": set(),
    "config": {"configfile"},  # the settings' names, types and ranges, and reading a config file
    "settings": {"config", "steps", "sources", "identity"},  # flags and config files compile to steps
    "synthetic": {"synthetic_volumes", "sources"},
    "synthetic_volumes": set(),
    "demo": {"bake", "cache", "measure", "steps", "synthetic"},
    "__main__": {"cli"},
}


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


def test_every_package_and_module_has_a_rule():
    """A new package or top-level module gets its row in ALLOWED, so the direction of its imports is decided."""
    found = {stage(m) for m in modules()} - {None}
    assert found <= set(ALLOWED), f"no rule for {sorted(found - set(ALLOWED))}: add them to ALLOWED"


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_stage_imports_only_what_it_may(name: str):
    bad = []
    for module, targets in graph().items():
        if stage(module) != name:
            continue
        for t in targets:
            other = stage(t)
            if other != name and other not in ALLOWED[name] and other not in GROUND:
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
            if a in ALLOWED and b in ALLOWED and a != b:
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


def test_the_checker_sees_each_direction(tmp_path, monkeypatch):
    """A reader importing a step, identity importing a reader and config importing the loader are each caught."""
    fake = tmp_path / "prebake"
    for s in STAGES:
        (fake / s).mkdir(parents=True)
        (fake / s / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "steps" / "base.py").write_text("x = 1\n")
    (fake / "load" / "loader.py").write_text("x = 1\n")
    (fake / "sources" / "base.py").write_text("x = 1\n")
    (fake / "sources" / "images.py").write_text("from ..steps.base import x\n")
    (fake / "identity" / "reads.py").write_text("from ..sources import base\n")
    (fake / "config.py").write_text("def f():\n    from .load.loader import x\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", fake)
    for name, planted in (("sources", "prebake.sources.images imports prebake.steps.base"),
                          ("identity", "prebake.identity.reads imports prebake.sources.base"),
                          ("config", "prebake.config imports prebake.load.loader")):
        with pytest.raises(AssertionError, match=planted):
            test_stage_imports_only_what_it_may(name)
    (fake / "newthing.py").write_text("x = 1\n")
    with pytest.raises(AssertionError, match="no rule for"):
        test_every_package_and_module_has_a_rule()


def _imports_of_tests(root: Path) -> list[str]:
    """``file: module`` for each import of the tests package under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            found += [f"{path.relative_to(root.parent)}: {n}" for n in names if n.split(".")[0] == "tests"]
    return found


def test_benchmarks_import_nothing_from_the_tests(tmp_path):
    """The fault trials live in benchmarks/trials/, which tests/faults/ imports; never the other way."""
    assert not _imports_of_tests(SRC.parents[1] / "benchmarks")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "x.py").write_text("from tests.faults import trials\n")
    assert _imports_of_tests(tmp_path / "benchmarks") == ["benchmarks/x.py: tests.faults"]
