"""The API reference pages, written from the public names (``__all__``) at build time.

One page per public module: ``prebake`` (its ``__all__``, the exceptions apart), ``prebake.steps``,
``prebake.augment`` and every ``prebake.integrations`` module that declares ``__all__``. A name
added to an ``__all__`` appears in the reference with its docstring; nothing is listed by hand.

    python docs/gen_api.py OUT_DIR     # what docs/conf.py runs before Sphinx reads the pages
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path

# the subpackages that prebake.__all__ names get a page of their own, not an entry on prebake's
OWN_PAGES = {"augment": "prebake.augment", "steps": "prebake.steps", "lightning": "prebake.integrations.lightning"}


def public_modules() -> list[str]:
    """The modules whose ``__all__`` is the public API, in the order of the reference."""
    import prebake.integrations as integrations

    found = [f"prebake.integrations.{m.name}" for m in pkgutil.iter_modules(integrations.__path__)
             if not m.name.startswith("_")]
    extras = sorted(name for name in found if _declares_all(name))
    return ["prebake", "prebake.steps", "prebake.augment", *extras]


def _declares_all(module: str) -> bool:
    source = Path(importlib.util.find_spec(module).origin).read_text()  # type: ignore[union-attr, arg-type]
    return "\n__all__" in source


def public_names(module: str) -> list[str]:
    """``module.__all__``, without the subpackages documented on their own page."""
    names = list(importlib.import_module(module).__all__)
    return [n for n in names if not (module == "prebake" and n in OWN_PAGES)]


def _directive(module: str, name: str, seen: dict[int, str]) -> str:
    obj = getattr(importlib.import_module(module), name)
    full = f"{module}.{name}"
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) in seen:  # one object, one description
        role = "class" if inspect.isclass(obj) else "func"
        return f".. py:data:: {full}\n   :no-index:\n\n   The same as :py:{role}:`{seen[id(obj)]}`.\n"
    seen[id(obj)] = full
    if inspect.isclass(obj):
        return f".. autoclass:: {full}\n   :members:\n   :show-inheritance:\n"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return f".. autofunction:: {full}\n"
    return f".. autodata:: {full}\n   :annotation:\n"


def _is_error(module: str, name: str) -> bool:
    obj = getattr(importlib.import_module(module), name)
    return inspect.isclass(obj) and issubclass(obj, BaseException)


def page(module: str, seen: dict[int, str]) -> str:
    """The reStructuredText of one module's page: its docstring, then every public name."""
    title = f"``{module}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {module}", ""]
    names = public_names(module)
    if module == "prebake":
        lines += ["Submodules with a page of their own: "
                  + ", ".join(f":doc:`{target} <{target}>`" for target in OWN_PAGES.values()) + ".", ""]
    errors = [n for n in names if _is_error(module, n)]
    for name in (n for n in names if n not in errors):
        lines.append(_directive(module, name, seen))
    if errors:
        lines += ["Errors", "------", "",
                  "Every error prebake raises on purpose is a :class:`prebake.PrebakeError`.", ""]
        lines += [_directive(module, name, seen) for name in errors]
    return "\n".join(lines)


def index(modules: list[str]) -> str:
    lines = ["API reference", "=============", "",
             "Generated from the docstrings of the public names (each module's ``__all__``).", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    return "\n".join(lines + [f"   {m}" for m in modules]) + "\n"


def write(out: Path) -> Iterator[Path]:
    """Write the reference into ``out`` (its ``index.rst`` and one page per module); yield what changed."""
    out.mkdir(parents=True, exist_ok=True)
    modules = public_modules()
    seen: dict[int, str] = {}  # documented objects: a re-export on a later page refers to the first
    pages = {"index.rst": index(modules), **{f"{m}.rst": page(m, seen) for m in modules}}
    for stale in out.glob("*.rst"):
        if stale.name not in pages:
            stale.unlink()
    for name, text in pages.items():
        path = out / name
        if not path.exists() or path.read_text() != text:  # unchanged pages keep their mtime: no rebuild
            path.write_text(text)
            yield path


if __name__ == "__main__":
    for written in write(Path(sys.argv[1])):
        print(f"wrote {written}")
