"""User code that plugs in by name: ``module:function`` or ``path/to/file.py:function``.

The fingerprint of user code is a hash of the code that actually runs: the
function's bytecode and constants, its defaults, the values its closure
captured, the module-level functions, classes and constants it refers to
(recursively, within its module), the arguments of a ``functools.partial``,
and the attributes of a callable instance (arrays and tensors by content).
Editing a comment does not make a cache stale; editing a helper the
function calls, or a parameter, does.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ..errors import PrebakeError


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


#: module name -> sha256 of the source it was loaded from (to reload an edited file)
_LOADED: dict[str, str] = {}


def _import(module_part: str, spec: str) -> Any:
    if module_part.endswith(".py"):
        path = Path(module_part).resolve()
        if not path.is_file():
            raise PrebakeError(f"{path} does not exist (from {spec!r}); check the path before ':'")
        name = f"prebake_user_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules and _LOADED.get(name) == _file_sha(path):
            return sys.modules[name]
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


log = logging.getLogger("prebake")
_MAX_DEPTH = 12


def code_identity(obj: Any) -> dict[str, str]:
    """``{"name": qualified name, "code": sha256 of the code and parameters}`` for the fingerprint."""
    h = hashlib.sha256()
    _feed(h, obj, set(), 0)
    target = obj.func if isinstance(obj, functools.partial) else obj
    if not (isinstance(target, (types.FunctionType, types.MethodType, type))):
        target = type(target)
    return {"name": f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', '?')}",
            "code": h.hexdigest()}


def _feed(h: Any, obj: Any, seen: set[int], depth: int) -> None:
    """Hash what determines ``obj``'s behaviour (see the module docstring)."""
    if depth > _MAX_DEPTH:
        h.update(b"<deep>")
        return
    if _is_value(obj):
        _feed_value(h, obj, seen, depth)
        return
    if id(obj) in seen:
        h.update(b"<seen>")
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        h.update(b"partial")
        for part in (obj.func, obj.args, obj.keywords):
            _feed(h, part, seen, depth + 1)
    elif isinstance(obj, types.MethodType):
        _feed(h, obj.__func__, seen, depth + 1)
        _feed(h, obj.__self__, seen, depth + 1)
    elif isinstance(obj, types.FunctionType):
        _feed_function(h, obj, seen, depth)
    elif isinstance(obj, type):
        _feed_class(h, obj, seen, depth)
    elif isinstance(obj, types.ModuleType) or callable(obj) and not hasattr(obj, "__dict__"):
        h.update(f"<{type(obj).__name__} {getattr(obj, '__name__', '')}>".encode())  # builtins, modules
    else:
        _feed_instance(h, obj, seen, depth)


def _feed_function(h: Any, fn: types.FunctionType, seen: set[int], depth: int) -> None:
    h.update(fn.__qualname__.encode())
    _feed_code(h, fn.__code__)
    _feed(h, (fn.__defaults__, fn.__kwdefaults__), seen, depth + 1)
    for cell in fn.__closure__ or ():
        try:
            _feed(h, cell.cell_contents, seen, depth + 1)
        except ValueError:  # an empty cell
            h.update(b"<empty>")
    for name in sorted(_global_names(fn.__code__)):
        if name not in fn.__globals__:
            continue
        value = fn.__globals__[name]
        same_module = getattr(value, "__module__", None) == fn.__module__
        if _is_value(value) or same_module and isinstance(value, (types.FunctionType, type)):
            h.update(name.encode())
            _feed(h, value, seen, depth + 1)


def _feed_class(h: Any, cls: type, seen: set[int], depth: int) -> None:
    h.update(f"{cls.__module__}:{cls.__qualname__}".encode())
    for base in cls.__mro__[1:]:
        if base.__module__ == cls.__module__:
            _feed(h, base, seen, depth + 1)
    for name, member in sorted(vars(cls).items()):
        member = getattr(member, "__func__", member)  # staticmethod / classmethod
        if isinstance(member, (types.FunctionType, property)) or _is_value(member):
            h.update(name.encode())
            parts = (member.fget, member.fset) if isinstance(member, property) else (member,)
            for part in parts:
                _feed(h, part, seen, depth + 1)


def _feed_instance(h: Any, obj: Any, seen: set[int], depth: int) -> None:
    _feed(h, type(obj), seen, depth + 1)
    own = getattr(obj, "fingerprint", None)
    if callable(own):
        h.update(repr(own()).encode())
    elif hasattr(obj, "state_dict") and callable(obj.state_dict):  # torch modules: weights by content
        _feed(h, dict(obj.state_dict()), seen, depth + 1)
    elif hasattr(obj, "__dict__"):
        _feed(h, vars(obj), seen, depth + 1)
    else:
        log.warning("%s has no fingerprint() and no __dict__; its state is not in the cache fingerprint",
                    type(obj).__qualname__)


def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            h.update(repr(const).encode())


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _is_value(obj: Any) -> bool:
    return isinstance(obj, (*_SCALARS, tuple, list, dict, set, frozenset, np.ndarray, np.generic)) or _is_tensor(obj)


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _feed_value(h: Any, v: Any, seen: set[int], depth: int) -> None:
    if isinstance(v, _SCALARS) or isinstance(v, np.generic):
        h.update(f"{type(v).__name__}:{v!r};".encode())
    elif isinstance(v, (tuple, list)):
        h.update(f"{type(v).__name__}[{len(v)}]".encode())
        for x in v:
            _feed(h, x, seen, depth + 1)
    elif isinstance(v, (set, frozenset)):
        h.update(repr(sorted(repr(x) for x in v)).encode())
    elif isinstance(v, dict):
        h.update(f"dict[{len(v)}]".encode())
        for k in sorted(v, key=repr):
            h.update(repr(k).encode())
            _feed(h, v[k], seen, depth + 1)
    else:  # arrays and tensors, by content
        h.update(f"array{v.dtype}{tuple(v.shape)}".encode())
        raw = _tensor_bytes(v) if _is_tensor(v) else np.ascontiguousarray(v).view(np.uint8).reshape(-1)
        h.update(xxhash.xxh3_128_digest(raw if raw.size else b""))


def _tensor_bytes(t: Any) -> np.ndarray:
    """A tensor's raw bytes as uint8 (works for bfloat16, which numpy lacks)."""
    torch = sys.modules["torch"]
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


