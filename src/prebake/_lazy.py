"""Package faces that import their members on first use.

``import prebake`` and ``prebake --version`` should not pay for torch (about 1.1 s
on a 2-core machine) when the command never touches a tensor; ``prebake ls``,
``info``, ``verify`` and ``clear`` start in under 0.3 s this way
(``benchmarks/startup.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_members(package: str, members: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    ``members`` maps a public name to where it lives, relative to ``package``:
    ``".reader"`` (the same name in that module), ``".reader:open_cache"`` (another
    name), or ``".augment:"`` (the module itself).
    """

    def __getattr__(name: str) -> Any:
        try:
            module_name, _, attr = members[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(module_name, package)
        value = getattr(module, attr or name) if attr or ":" not in members[name] else module
        importlib.import_module(package).__dict__[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(members))

    return __getattr__, __dir__
