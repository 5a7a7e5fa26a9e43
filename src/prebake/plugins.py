"""User code that plugs in by name: ``module:function`` or ``path/to/file.py:function``.

The fingerprint of user code is the hash of its whole module's source, so a
change to a helper the function calls also makes the cache stale.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from .errors import PrebakeError


def load_object(spec: str) -> Any:
    """Import ``module:attr`` (module on sys.path or the current directory) or ``file.py:attr``."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise PrebakeError(
            f"{spec!r} is not 'module:function' or 'path/to/file.py:function' "
            "(for example 'mytransforms:crop_face')"
        )
    module = _import(module_part, spec)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PrebakeError(
                f"{module_part} has no attribute {attr!r} (from {spec!r}); check the name after ':'"
            ) from None
    return obj


def _import(module_part: str, spec: str) -> Any:
    if module_part.endswith(".py"):
        path = Path(module_part).resolve()
        if not path.is_file():
            raise PrebakeError(f"{path} does not exist (from {spec!r})")
        name = f"prebake_user_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
        mod_spec = importlib.util.spec_from_file_location(name, path)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        mod_spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_part)
    except ImportError as e:
        raise PrebakeError(
            f"cannot import {module_part!r} (from {spec!r}): {e}; run from the directory that "
            "holds it, add it to PYTHONPATH, or pass 'path/to/file.py:function'"
        ) from e


def code_identity(obj: Any) -> dict[str, str]:
    """``{"name": qualified name, "code": sha256 of its module's source}`` for the fingerprint.

    Falls back to the function's own source, then to its bytecode, when the
    module source is not available (for example a function defined in a REPL).
    """
    target = obj if inspect.isroutine(obj) or inspect.isclass(obj) else type(obj)
    name = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"
    source = _source_text(target)
    return {"name": name, "code": hashlib.sha256(source).hexdigest()}


def _source_text(target: Any) -> bytes:
    module = inspect.getmodule(target)
    for getter in (lambda: inspect.getsource(module), lambda: inspect.getsource(target)):
        try:
            return getter().encode()
        except (OSError, TypeError):
            continue
    code = getattr(target, "__code__", None)
    if code is not None:
        return code.co_code + repr(code.co_consts).encode()
    return repr(target).encode()
