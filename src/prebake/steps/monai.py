"""MONAI transforms as a bake step: a ``Compose``'s deterministic prefix, run in the workers.

``prebake.build(src, out, steps=compose)`` splits a ``monai.transforms.Compose`` by MONAI's own
rule (``PersistentDataset._pre_transform``): after ``Compose.flatten()``, the prefix ends at the
first transform that is ``RandomizableTrait`` or not a MONAI ``Transform`` (a plain function in a
Compose). The prefix becomes one :class:`MonaiTransforms` step; the rest is the *remainder*, a
``Compose`` the user applies per batch (``cache.build_report.remainder``,
:mod:`prebake.integrations.monai`). A list of steps may mix MONAI transforms with prebake's: each
run of MONAI transforms is one step, a plain function is a prebake function (deterministic), and
only MONAI transforms may follow the first random one.

Columns: a ``MetaTensor`` under key ``k`` is stored as its array (dtype kept), its affine, spacing
and origin (``affine``, ``spacing``, ``origin`` for ``image``; ``k_affine``... for other keys), and
the meta keys in ``meta`` (default ``k_original_affine`` and ``k_spatial_shape``):
plain ``.npy`` columns, never a pickled MetaTensor. Going in, an array with an affine column
becomes a ``MetaTensor`` again, so MONAI transforms can follow prebake steps or a volume source.

Fingerprint: :meth:`MonaiTransforms.describe` lists every transform's class and the values of
its attributes (nested transforms included, arrays by content, functions by code identity:
MONAI's own transform hash falls back to class names), the Compose's settings and MONAI's version.
monai is never imported here: the objects given are MONAI's, so it is imported already.
"""

from __future__ import annotations

import enum
import logging
import math
import sys
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import xxhash

from ..errors import BadItemError, OptionError
from ..identity.code import code_identity, is_user_module
from ..identity.weights import is_tensor, tensor_bytes
from .base import Function, Item, Step

log = logging.getLogger("prebake")

#: The meta keys of a MetaTensor kept as columns by default: the geometry before the transforms. Not the
#: file name: a string column is as wide as the first item's today, so paths of other lengths would be skipped.
DEFAULT_META = ("original_affine", "spatial_shape")
_GEOMETRY = ("affine", "spacing", "origin")
_TRACE_SUFFIXES = ("_meta_dict", "_transforms")  # MONAI's per-key bookkeeping, rebuilt from the columns
#: a random state and a thread-local (no effect on a deterministic output), whether an optional decoder is installed
_SKIPPED_ATTRS = {"R", "_tracing", "_nvimgcodec_available"}
#: what an object of a class of this name keeps from its last call, not from its parameters
_CALL_STATE = {"ImageReader": {"filenames", "has_series"}}
_MAX_DEPTH = 8
_SMALL = 64  # arrays up to this many values are listed in the description, larger ones hashed


def is_monai(obj: Any) -> bool:
    """Whether ``obj`` is an instance of a class from the monai package (checked without importing it)."""
    return any(c.__module__.split(".")[0] == "monai" for c in type(obj).__mro__)


def is_compose(obj: Any) -> bool:
    """A plain ``Compose`` (not OneOf, SomeOf, RandomOrder: those are random, by MONAI's rule)."""
    return is_monai(obj) and type(obj).__name__ == "Compose" and hasattr(obj, "flatten")


def is_random(t: Any) -> bool:
    """MONAI's rule for where caching stops: ``RandomizableTrait``, or not a MONAI ``Transform``."""
    from monai.transforms import RandomizableTrait, Transform

    return isinstance(t, RandomizableTrait) or not isinstance(t, Transform)


def settings_of(compose: Any) -> dict[str, Any]:
    """The options of a Compose that change what it computes."""
    return {"map_items": compose.map_items, "unpack_items": compose.unpack_items, "lazy": compose.lazy,
            "overrides": compose.overrides}


def flatten(compose: Any) -> list[Any]:
    """``compose.flatten().transforms`` without calling it: a new Compose would reseed the user's random transforms."""
    out: list[Any] = []
    for t in compose.transforms:
        out += flatten(t) if is_compose(t) and t.map_items == compose.map_items else [t]
    return out


def split_compose(compose: Any) -> tuple[list[Any], list[Any]]:
    """``(prefix, remainder)`` of the flattened ``compose`` at the first random transform."""
    flat = flatten(compose)
    first = next((i for i, t in enumerate(flat) if is_random(t)), len(flat))
    return flat[:first], flat[first:]


def expand(steps: Any) -> tuple[Any, Any]:
    """``steps`` with each run of MONAI transforms as one :class:`MonaiTransforms`, and the remainder
    (a ``Compose`` of the transforms from the first random one on, or None); ``steps`` unchanged when
    nothing in it is MONAI's."""
    if is_monai(steps):
        steps = [steps]
    elif not isinstance(steps, (list, tuple)) or not any(is_monai(s) for s in steps):
        return steps, None
    out: list[Any] = []
    run: list[Any] = []
    rest: list[Any] | None = None
    settings: dict[str, Any] = {}
    for k, step in enumerate(steps):
        if rest is not None:
            _check_after_random(k, step, rest[0])
            rest.append(step)
            continue
        if is_compose(step):
            prefix, remainder = split_compose(step)
            settings = settings_of(step)
            out += _run(run) + ([MonaiTransforms(prefix, **settings)] if prefix else [])
            run, rest = [], remainder or None
        elif is_monai(step):
            if is_random(step):
                rest = [step]
            else:
                run.append(step)
                continue
            out += _run(run)
            run = []
        else:
            out += _run(run) + [step]
            run = []
    out += _run(run)
    return out, _remainder(out, rest, settings)


def _run(transforms: list[Any]) -> list[Any]:
    return [MonaiTransforms(list(transforms))] if transforms else []


def _check_after_random(k: int, step: Any, first: Any) -> None:
    from .stage import Stage

    if isinstance(step, (Step, Stage, Function, type)):
        shown = str(step) if isinstance(step, (Step, Function)) else getattr(step, "name", type(step).__name__)
        raise OptionError(f"steps[{k}] ({shown}) comes after MONAI's random {type(first).__name__}: the transforms "
                          "from the first random one on are not baked but applied per batch (the remainder); "
                          f"put {shown} before {type(first).__name__}")


def _remainder(baked: list[Any], rest: list[Any] | None, settings: dict[str, Any]) -> Any:
    names = [str(s) for s in baked if isinstance(s, MonaiTransforms)]
    if rest is None:
        log.info("baking the MONAI transforms %s; none remains to apply per batch", ", ".join(names))
        return None
    from monai.transforms import Compose

    log.info("baking the MONAI transforms %s; applied per batch (cache.build_report.remainder): %s",
             ", ".join(names) or "(none)", ", ".join(type(t).__name__ for t in rest))
    remainder = Compose([], **settings)
    remainder.transforms = tuple(rest)  # set after: Compose(rest) would reseed the user's random transforms
    return remainder


class MonaiTransforms(Step):
    """Deterministic MONAI transforms as one step (see the module docstring).

    Args:
        transforms: MONAI transforms, none random (a Compose is flattened first).
        meta: the MetaTensor meta keys stored as columns, beside the array and its geometry.
        map_items, unpack_items, lazy, overrides: as ``monai.transforms.Compose``'s.
    """

    def __init__(self, transforms: Any, *, meta: Sequence[str] = DEFAULT_META, map_items: bool | int = True,
                 unpack_items: bool = False, lazy: bool | None = False, overrides: dict[str, Any] | None = None):
        given = flatten(transforms) if is_compose(transforms) else transforms
        if not isinstance(given, (list, tuple)) or not given:
            raise OptionError(f"MonaiTransforms(transforms={transforms!r}): give a non-empty list of MONAI "
                              "transforms or a monai.transforms.Compose")
        for k, t in enumerate(given):
            if not is_monai(t) or is_random(t):
                what = "random" if is_monai(t) else "not a MONAI transform"
                raise OptionError(f"MonaiTransforms: transforms[{k}] ({type(t).__name__}) is {what}; only the "
                                  "deterministic prefix is baked: prebake.integrations.monai.split(compose) "
                                  "gives (prefix step, random remainder)")
        if isinstance(meta, str) or not all(isinstance(m, str) for m in meta):
            raise OptionError(f"MonaiTransforms(meta={meta!r}): meta takes a tuple of meta key names, "
                              f"e.g. {DEFAULT_META}")
        from monai.transforms import Compose

        self.transforms, self.meta = tuple(given), tuple(meta)
        self.settings = {"map_items": map_items, "unpack_items": unpack_items, "lazy": lazy, "overrides": overrides}
        self.compose = Compose(list(given), **self.settings)  # type: ignore[arg-type]
        first = given[0]
        # what this step reads depends on its first transform, so it is set per instance
        self.needs = () if getattr(first, "allow_missing_keys", True) else tuple(map(str, first.keys))  # type: ignore[misc]

    def __call__(self, item: Item) -> Item:
        return from_monai(self.compose(to_monai(item)), self.meta)

    def describe(self) -> dict[str, Any]:
        monai = sys.modules["monai"]
        return {"name": "MonaiTransforms", "monai": monai.__version__, "compose": reduce(self.settings),
                "meta": list(self.meta), "transforms": [describe_transform(t) for t in self.transforms]}

    def __str__(self) -> str:
        return f"MonaiTransforms({', '.join(type(t).__name__ for t in self.transforms)})"


# -- columns <-> MONAI's data dict ----------------------------------------------------------------

def column(key: str, what: str) -> str:
    """Where ``what`` (affine, spacing, origin or a meta key) of key ``key`` is stored."""
    return what if key == "image" and what in _GEOMETRY else f"{key}_{what}"


def to_monai(item: Item, meta: Sequence[str] = DEFAULT_META) -> Item:
    """An item of plain columns as MONAI's data dict: each array with an affine column as a MetaTensor."""
    keys = [k for k, v in item.items() if isinstance(v, np.ndarray) and v.ndim >= 2 and column(k, "affine") in item]
    if not keys:
        return dict(item)
    from monai.data import MetaTensor

    out = dict(item)
    for k in keys:
        info: dict[str, Any] = {"affine": _tensor(np.asarray(out.pop(column(k, "affine")), dtype=np.float64)),
                                "space": "RAS"}  # prebake's affines are nibabel's: RAS+ world coordinates
        for what in _GEOMETRY[1:]:
            out.pop(column(k, what), None)
        for name in meta:
            if column(k, name) in out:
                info[name] = out.pop(column(k, name))
        out[k] = MetaTensor(_tensor(np.ascontiguousarray(item[k])), meta=info)
    return out


def from_monai(data: Any, meta: Sequence[str] = DEFAULT_META) -> Item:
    """MONAI's output dict as plain columns (see the module docstring)."""
    if not isinstance(data, dict):
        raise BadItemError(f"the MONAI transforms returned a {type(data).__name__}, expected a dict (dictionary "
                           "transforms, the ones ending in 'd'); a transform that makes several samples "
                           "(RandCropByPosNegLabeld, num_samples) belongs in the random remainder")
    out: Item = {}
    for key, value in data.items():
        key = str(key)
        if key.endswith(_TRACE_SUFFIXES) and isinstance(value, (dict, list)):
            continue
        if hasattr(value, "affine") and hasattr(value, "meta") and is_tensor(value):
            out.update(_meta_tensor(key, value, meta))
        else:
            out[key] = _plain(key, value)
    return out


def _meta_tensor(key: str, value: Any, meta: Sequence[str]) -> Item:
    affine = np.asarray(value.affine.detach().cpu().numpy(), dtype=np.float64)
    n = affine.shape[0] - 1
    cols = {key: np.ascontiguousarray(value.as_tensor().detach().cpu().numpy()), column(key, "affine"): affine,
            column(key, "spacing"): np.sqrt((affine[:n, :n] ** 2).sum(axis=0)),
            column(key, "origin"): affine[:n, n].copy()}
    for name in meta:
        if name in value.meta:
            cols[column(key, name)] = _plain(f"{key}.meta[{name!r}]", value.meta[name])
    return cols


def _plain(key: str, value: Any) -> Any:
    if is_tensor(value):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic, str, bytes, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        if arr.dtype.kind in "biufUS":
            return arr
    raise BadItemError(f"MONAI output {key!r} is a {type(value).__name__}; a cache column holds arrays, numbers "
                       f"and strings: drop it with DeleteItemsd(keys={key!r}) or turn it into an array")


def _tensor(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.asarray(x))


# -- the fingerprint entry of a transform ---------------------------------------------------------

def describe_transform(t: Any) -> dict[str, Any]:
    """``{"class": ..., attribute: value, ...}`` of a MONAI transform, as JSON values."""
    return _object(t, 0, set())


def reduce(value: Any, depth: int = 0, seen: set[int] | None = None) -> Any:
    """``value`` as JSON values that identify it (see the module docstring)."""
    seen = set() if seen is None else seen
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, np.generic):
        return reduce(value.item(), depth, seen)
    if isinstance(value, (np.ndarray,)) or is_tensor(value):
        return _array(value)
    if isinstance(value, (list, tuple)):
        return [reduce(v, depth + 1, seen) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((reduce(v, depth + 1, seen) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): reduce(value[k], depth + 1, seen) for k in sorted(value, key=str)}
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, np.dtype) or type(value).__name__ == "dtype" and type(value).__module__ == "torch":
        return str(value)
    if isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)) or _is_partial(value):
        return {"function": code_identity(value)}
    return _object(value, depth, seen)


def _object(value: Any, depth: int, seen: set[int]) -> Any:
    cls = type(value)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if depth > _MAX_DEPTH or id(value) in seen or not hasattr(value, "__dict__"):
        return {"class": name}
    seen = seen | {id(value)}
    out: dict[str, Any] = {"class": name}
    if is_user_module(sys.modules.get(cls.__module__)):
        out["code"] = code_identity(cls)["code"]  # your own transform class: its code is part of it
    skipped = _SKIPPED_ATTRS.union(*(_CALL_STATE.get(c.__name__, ()) for c in cls.__mro__))
    for attr in sorted(vars(value)):
        if attr not in skipped and not attr.startswith("__"):
            out[attr] = reduce(vars(value)[attr], depth + 1, seen)
    return out


def _array(value: Any) -> Any:
    """A small array as its values (readable in a rebuild's reason), a larger one by shape, dtype and content."""
    if is_tensor(value):
        small = value.numel() <= _SMALL and not value.is_complex()
        if small:
            return reduce(value.detach().cpu().tolist())
        return {"array": list(value.shape), "dtype": str(value.dtype),
                "xxh3": xxhash.xxh3_128_hexdigest(tensor_bytes(value).tobytes())}
    arr = np.asarray(value)
    if arr.dtype.kind == "O" or arr.size <= _SMALL and arr.dtype.kind in "biuf":
        return reduce(arr.tolist())
    raw = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
    return {"array": list(arr.shape), "dtype": str(arr.dtype), "xxh3": xxhash.xxh3_128_hexdigest(raw.tobytes())}


def _is_partial(value: Any) -> bool:
    import functools

    return isinstance(value, functools.partial)
