"""The weights and buffers of the ``nn.Module`` s that user code holds, hashed by content.

Both kinds of user code in the fingerprint hash their modules here:

- a stage (:class:`prebake.Stage`): :func:`modules_of` finds the modules its ``fn`` uses and
  :func:`tensor_digests` gives one digest per tensor, so a rebuild names the tensors that changed;
- a per-item function or a dataset factory: :mod:`.code` walks its code and the objects it
  holds, and takes :func:`module_digest` of each module it meets.

The two forms are what the fingerprints of existing caches hold, so each stays as it is.
torch is never imported here: a module or a tensor can only exist once the user imported it.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import types
from typing import Any

import numpy as np
import xxhash

_MAX_DEPTH = 3  # how far modules_of looks: fn -> closure / default / global / partial -> its parts


def global_names(code: types.CodeType) -> set[str]:
    """Every global name ``code`` and the code objects nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def tensor_bytes(t: Any) -> np.ndarray:
    """A tensor's raw bytes as uint8 (works for bfloat16, which numpy lacks)."""
    torch = sys.modules["torch"]
    raw = t.detach().cpu().contiguous().reshape(-1)
    return raw.view(torch.uint8).numpy() if raw.numel() else np.zeros(0, np.uint8)


def module_digest(module: Any) -> str:
    """sha256 over every weight and buffer of ``module``: name, dtype, shape and xxh3-128 of the bytes."""
    h = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        h.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(xxhash.xxh3_128_digest(_buffer(tensor_bytes(tensor))))
    return h.hexdigest()


def tensor_digests(fn: Any) -> dict[str, str]:
    """``{"<module>.<tensor name>": "<dtype><shape>:<xxh3-64>"}`` for every weight and buffer ``fn`` uses."""
    out: dict[str, str] = {}
    for k, module in enumerate(modules_of(fn)):
        prefix = f"{type(module).__name__}{'' if k == 0 else k}"
        for key, t in module.state_dict(keep_vars=False).items():
            out[f"{prefix}.{key}"] = f"{t.dtype}{tuple(t.shape)}:{xxhash.xxh3_64_hexdigest(_buffer(tensor_bytes(t)))}"
    return out


def modules_of(fn: Any) -> list[Any]:
    """The ``nn.Module`` s a stage's ``fn`` uses: itself, or those its closure, defaults, globals
    (its own module's) or partial arguments hold."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    found: dict[int, Any] = {}

    def visit(obj: Any, depth: int) -> None:
        if depth > _MAX_DEPTH or id(obj) in found:
            return
        if isinstance(obj, torch.nn.Module):
            found[id(obj)] = obj
            return
        for part in _parts(obj):
            visit(part, depth + 1)

    visit(fn, 0)
    return list(found.values())


def _parts(obj: Any) -> list[Any]:
    """What a callable holds that may be (or hold) a module."""
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, types.MethodType):
        return [obj.__self__]
    if isinstance(obj, types.FunctionType):
        cells = [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
        # sorted: a set's order changes with PYTHONHASHSEED, and the digests' keys follow this order
        names = sorted(global_names(obj.__code__))
        return [*cells, *(obj.__defaults__ or ()), *(obj.__globals__.get(n) for n in names)]
    if hasattr(obj, "__dict__") and callable(obj):
        return list(vars(obj).values())
    return []


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _buffer(raw: np.ndarray) -> Any:
    return raw if raw.size else b""
