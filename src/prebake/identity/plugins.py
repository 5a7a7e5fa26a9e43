"""User code that plugs in by name: ``module:function`` or ``path/to/file.py:function``.

What of it enters the fingerprint is :func:`prebake.identity.code.code_identity`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ..errors import PrebakeError

__all__ = ["file_modules", "load_object"]

_FILE_MODULE = "prebake_user_"  # the module name prefix of a file loaded by path


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


def file_modules() -> list[Any]:
    """The modules loaded from a ``path/to/file.py:attr`` spec: importable nowhere else, so an
    executor that pickles its work (Ray) ships their code by value."""
    return [sys.modules[n] for n in _LOADED if n.startswith(_FILE_MODULE) and n in sys.modules]


#: module name -> sha256 of the source it was loaded from (to reload an edited file)
_LOADED: dict[str, str] = {}


def _import(module_part: str, spec: str) -> Any:
    if module_part.endswith(".py"):
        path = Path(module_part).resolve()
        if not path.is_file():
            raise PrebakeError(f"{path} does not exist (from {spec!r}); check the path before ':'")
        name = f"{_FILE_MODULE}{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules and _LOADED.get(name) == _file_sha(path):
            return sys.modules[name]
        if str(path.parent) not in sys.path:  # as `python path/to/file.py` does: the file imports the modules beside
            sys.path.insert(0, str(path.parent))  # it, here and in the forked workers that import them lazily
        mod_spec = importlib.util.spec_from_file_location(name, path)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:  # the user's file failed to import: say where and why, in one line
            del sys.modules[name]
            raise _import_failed(str(path), spec, e) from e
        _LOADED[name] = _file_sha(path)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_part)
    except ModuleNotFoundError as e:
        if e.name and module_part.split(".")[0] == e.name.split(".")[0]:
            raise PrebakeError(
                f"cannot import {module_part!r} (from {spec!r}): {e}; run from the directory that "
                "holds it, add it to PYTHONPATH, or pass 'path/to/file.py:function'"
            ) from e
        raise _import_failed(module_part, spec, e) from e
    except Exception as e:
        raise _import_failed(module_part, spec, e) from e
    return _reload_if_edited(module)


def _import_failed(what: str, spec: str, e: Exception) -> PrebakeError:
    """One line for a user module whose own code failed to import, naming the line when known."""
    if isinstance(e, ModuleNotFoundError) and e.name:
        return PrebakeError(f"{what} (from {spec!r}) imports {e.name!r}, which is not installed in this Python: "
                            f"install it (pip install {e.name.split('.')[0]}) or remove the import")
    tb = e.__traceback__
    line = None
    while tb is not None:  # the deepest frame of the user's own file
        if tb.tb_frame.f_code.co_filename.endswith(what.rsplit("/", 1)[-1]):
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" line {line}" if line else ""
    return PrebakeError(f"{what}{where} (from {spec!r}) failed to import: {type(e).__name__}: {e}")


def _reload_if_edited(module: Any) -> Any:
    """A module whose file changed since it was loaded here is reloaded (a notebook re-run)."""
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return module
    sha = _file_sha(Path(file))
    previous = _LOADED.setdefault(module.__name__, sha)
    if previous != sha:
        module = importlib.reload(module)
        _LOADED[module.__name__] = sha
    return module


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
