"""The identity of user code for the fingerprint: what a transform or a dataset factory runs.

:func:`code_identity` hashes the code that actually runs, across *your own* modules:

- the function's bytecode and constants, its defaults, the values its closure
  captured, the arguments of a ``functools.partial``, the attributes of a callable
  instance;
- every global name the code uses: functions and classes defined in any of your
  modules (a helper imported from ``utils.py`` included), recursively; constants;
  module attributes read through a module (``cfg.SHIFT`` hashes ``SHIFT`` of your
  ``cfg`` module); and module-level objects (a frozen ``ENCODER = nn.Linear(...)``);
- arrays and tensors by content; ``nn.Module`` weights and buffers by content
  (:mod:`.weights`, which hashes the weights of stages too), kept
  apart under ``weights`` so that a new checkpoint is reported as "weights of ENCODER
  changed", not as a code change. An object with a ``fingerprint()`` method is
  identified by what it returns.

"Your own modules" are those not in the standard library, not installed in
site-packages (or dist-packages), and not prebake itself: library code is
identified by name only, so upgrading a library does not make a cache stale. Objects
of library classes that are not ``nn.Module`` and have no ``fingerprint()`` (a logger,
a lock) are identified by their type, since their state is not stable across runs.
Editing a comment does not make a cache stale; editing a helper the function calls,
a constant it reads, or a parameter, does.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import site
import sys
import sysconfig
import types
from typing import Any

import numpy as np
import xxhash

from .weights import global_names, is_module, is_tensor, module_digest, tensor_bytes

log = logging.getLogger("prebake")
_MAX_DEPTH = 12
_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def code_identity(obj: Any) -> dict[str, Any]:
    """``{"name", "code", "weights"}``: the qualified name, the sha256 of the code and its
    parameters, and ``{where: sha256}`` of each ``nn.Module``'s weights and buffers."""
    hasher = _Hasher()
    hasher.feed(obj, _name_of(obj), 0)
    target = obj.func if isinstance(obj, functools.partial) else obj
    if not (isinstance(target, (types.FunctionType, types.MethodType, type))):
        target = type(target)
    return {"name": f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', '?')}",
            "code": hasher.h.hexdigest(), "weights": dict(sorted(hasher.weights.items()))}


def _name_of(obj: Any) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


class _Hasher:
    """One walk over the objects a piece of code depends on (see the module docstring)."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.seen: set[int] = set()
        self.weights: dict[str, str] = {}

    def feed(self, obj: Any, where: str, depth: int) -> None:
        h = self.h
        if depth > _MAX_DEPTH:
            h.update(b"<deep>")
            return
        if _is_value(obj):
            self._value(obj, where, depth)
            return
        if id(obj) in self.seen:
            h.update(b"<seen>")
            return
        self.seen.add(id(obj))
        if isinstance(obj, functools.partial):
            h.update(b"partial")
            self.feed(obj.func, where, depth + 1)
            self.feed(obj.args, f"{where}.args", depth + 1)
            self.feed(obj.keywords, f"{where}.keywords", depth + 1)
        elif isinstance(obj, types.MethodType):
            self.feed(obj.__func__, where, depth + 1)
            self.feed(obj.__self__, f"{where}.__self__", depth + 1)
        elif isinstance(obj, types.FunctionType):
            self._function(obj, depth)
        elif isinstance(obj, type):
            self._class(obj, depth)
        elif isinstance(obj, types.ModuleType) or callable(obj) and not hasattr(obj, "__dict__"):
            h.update(f"<{type(obj).__name__} {getattr(obj, '__name__', '')}>".encode())  # builtins, modules
        else:
            self._instance(obj, where, depth)

    def _function(self, fn: types.FunctionType, depth: int) -> None:
        self.h.update(fn.__qualname__.encode())
        _feed_code(self.h, fn.__code__)
        self.feed((fn.__defaults__, fn.__kwdefaults__), f"{fn.__qualname__}.defaults", depth + 1)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                self.feed(cell.cell_contents, f"{fn.__qualname__}.{name}", depth + 1)
            except ValueError:  # an empty cell
                self.h.update(b"<empty>")
        names = global_names(fn.__code__)
        for name in sorted(names):
            if name in fn.__globals__:
                self._global(name, fn.__globals__[name], names, fn.__module__, depth)

    def _global(self, name: str, value: Any, names: set[str], home: str, depth: int) -> None:
        """A module-level name the code uses: yours, or a value, is hashed; a library's is not."""
        if isinstance(value, types.ModuleType):
            if is_user_module(value) and id(value) not in self.seen and depth <= _MAX_DEPTH:
                self.seen.add(id(value))
                self.h.update(f"module {name}".encode())
                self._module_attrs(value, name, names, depth + 1)
            return
        if isinstance(value, (types.FunctionType, type)):
            module = getattr(value, "__module__", "")
            if module == home or is_user_module(sys.modules.get(module)):
                self.h.update(name.encode())
                self.feed(value, name, depth + 1)
            return
        if _is_value(value) or _has_own_identity(value) or _is_user_instance(value):
            self.h.update(name.encode())
            self.feed(value, name, depth + 1)
        else:
            log.debug("%s (a %s) is not in the fingerprint: a library object without fingerprint()",
                      name, type(value).__qualname__)

    def _module_attrs(self, module: types.ModuleType, where: str, names: set[str], depth: int) -> None:
        """The attributes of one of your modules that the code names (``cfg.SHIFT``)."""
        for attr in sorted(names):
            if attr in vars(module) and not attr.startswith("__"):
                self._global(f"{where}.{attr}", vars(module)[attr], names, module.__name__, depth)

    def _class(self, cls: type, depth: int) -> None:
        self.h.update(f"{cls.__module__}:{cls.__qualname__}".encode())
        if not is_user_module(sys.modules.get(cls.__module__)):
            return  # a library class: its name is its identity
        for base in cls.__mro__[1:]:
            if is_user_module(sys.modules.get(base.__module__)):
                self.feed(base, base.__qualname__, depth + 1)
        for name, member in sorted(vars(cls).items()):
            member = getattr(member, "__func__", member)  # staticmethod / classmethod
            if isinstance(member, (types.FunctionType, property)) or _is_value(member):
                self.h.update(name.encode())
                parts = (member.fget, member.fset) if isinstance(member, property) else (member,)
                for part in parts:
                    self.feed(part, f"{cls.__qualname__}.{name}", depth + 1)

    def _instance(self, obj: Any, where: str, depth: int) -> None:
        self.feed(type(obj), where, depth + 1)
        own = getattr(obj, "fingerprint", None)
        if callable(own):
            self.h.update(repr(own()).encode())
        elif is_module(obj):
            self._torch_module(obj, where)
        elif hasattr(obj, "__dict__"):
            self.feed(vars(obj), where, depth + 1)
        else:
            log.warning("%s has no fingerprint() and no __dict__; its state is not in the cache fingerprint",
                        type(obj).__qualname__)

    def _torch_module(self, m: Any, where: str) -> None:
        """Structure and train/eval mode into the code hash; weights and buffers by content apart."""
        self.h.update(repr(m).encode())
        self.h.update(repr([sub.training for sub in m.modules()]).encode())
        self.weights[where] = module_digest(m)

    def _value(self, v: Any, where: str, depth: int) -> None:
        h = self.h
        if isinstance(v, _SCALARS) or isinstance(v, np.generic):
            h.update(f"{type(v).__name__}:{v!r};".encode())
        elif isinstance(v, (tuple, list)):
            h.update(f"{type(v).__name__}[{len(v)}]".encode())
            for k, x in enumerate(v):
                self.feed(x, f"{where}[{k}]", depth + 1)
        elif isinstance(v, (set, frozenset)):
            h.update(repr(sorted(repr(x) for x in v)).encode())
        elif isinstance(v, dict):
            h.update(f"dict[{len(v)}]".encode())
            for k in sorted(v, key=repr):
                h.update(repr(k).encode())
                self.feed(v[k], f"{where}.{k}", depth + 1)
        else:  # arrays and tensors, by content
            h.update(f"array{v.dtype}{tuple(v.shape)}".encode())
            raw = tensor_bytes(v) if is_tensor(v) else np.ascontiguousarray(v).view(np.uint8).reshape(-1)
            # numpy declares the buffer protocol to type checkers only from Python 3.12
            h.update(xxhash.xxh3_128_digest(raw if raw.size else b""))  # type: ignore[arg-type]


def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            h.update(repr(const).encode())


# -- whose code is it -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def library_dirs() -> tuple[str, ...]:
    """Where the standard library and installed packages live."""
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= set(getattr(site, "getsitepackages", list)()) | {getattr(site, "getusersitepackages", str)()}
    return tuple(sorted(os.path.realpath(p) + os.sep for p in paths if p))


def is_user_module(module: Any) -> bool:
    """Whether ``module`` is one of the user's own (see the module docstring)."""
    name, file = getattr(module, "__name__", ""), getattr(module, "__file__", None)
    if name == "__main__":
        return True  # a script or an interactive session
    if not isinstance(module, types.ModuleType) or not file:
        return False  # builtins, namespace packages, missing modules
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top == "prebake":
        return False
    real = os.path.realpath(file)
    parts = real.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not real.startswith(library_dirs())


def _is_user_instance(obj: Any) -> bool:
    return is_user_module(sys.modules.get(type(obj).__module__))


def _has_own_identity(obj: Any) -> bool:
    return callable(getattr(obj, "fingerprint", None)) or is_module(obj)


def _is_value(obj: Any) -> bool:
    return isinstance(obj, (*_SCALARS, tuple, list, dict, set, frozenset, np.ndarray, np.generic)) or is_tensor(obj)
