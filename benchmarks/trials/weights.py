"""The weights of the ``nn.Module`` s that stages and per-item functions hold, in the fingerprint.

A trial builds a random module (Linear, Conv1d, BatchNorm1d with its integer buffer,
Embedding, a Sequential of them; float32, float64, float16 or bfloat16) and hands it to
user code by a random route: the module itself, a closure, a default argument,
``functools.partial``, a bound method, a callable object, or a module-level global. For a
stage (``Stage.describe()["weights"]``) and for a per-item function (``code_identity``'s
``weights``) it checks that

- the digests are the same when computed twice, and for an equal copy of the module;
- one element changed in one random weight or buffer changes them, and the stage's
  digests name exactly that tensor.

A digest that misses a change means a stale cache is used; one that changes for equal
weights means a rebuild every time.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prebake import Stage
from prebake.identity.code import code_identity

from . import Row

ROUTES = ("module", "closure", "default", "partial", "method", "callable", "global")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class _Holder:
    """A callable object holding a module, as a user's encoder wrapper does."""

    def __init__(self, m: torch.nn.Module):
        self.m = m

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"y": self.m(batch["x"])}


def _apply(batch: dict[str, Any], m: torch.nn.Module) -> dict[str, Any]:
    return {"y": m(batch["x"])}


def random_module(rng: np.random.Generator) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 4))
        width = int(rng.integers(1, 5))
        if kind == 0:
            layers.append(torch.nn.Linear(width, int(rng.integers(1, 4)), bias=bool(rng.integers(0, 2))))
        elif kind == 1:
            layers.append(torch.nn.Conv1d(width, 2, int(rng.integers(1, 3))))
        elif kind == 2:
            layers.append(torch.nn.BatchNorm1d(width))
        else:
            layers.append(torch.nn.Embedding(int(rng.integers(2, 6)), width))
    m = layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)
    torch.manual_seed(int(rng.integers(0, 2**31)))
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape))
    return m.to(DTYPES[int(rng.integers(0, len(DTYPES)))])


def route(m: torch.nn.Module, how: str) -> Callable[..., Any]:
    """A piece of user code that uses ``m``, reached by ``how``."""
    if how == "module":
        return m
    if how == "closure":
        def run(batch: dict[str, Any]) -> dict[str, Any]:
            return {"y": m(batch["x"])}
        return run
    if how == "default":
        def by_default(batch: dict[str, Any], enc: torch.nn.Module = m) -> dict[str, Any]:
            return {"y": enc(batch["x"])}
        return by_default
    if how == "partial":
        return functools.partial(_apply, m=m)
    if how == "method":
        return m.forward
    if how == "callable":
        return _Holder(m)
    namespace: dict[str, Any] = {"__name__": "trial_user_code", "ENCODER": m}
    exec("def uses_global(batch):\n    return {'y': ENCODER(batch['x'])}\n", namespace)  # noqa: S102 - a user module
    return namespace["uses_global"]


def digests(fn: Callable[..., Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(the stage's per-tensor digests, the per-item function's per-module digests)."""
    stage = Stage(fn, inputs=("x",), outputs=("y",), device="cpu").describe()["weights"]
    return stage, code_identity(fn)["weights"]


def _perturb(m: torch.nn.Module, rng: np.random.Generator) -> str | None:
    """Change one element of one random non-empty tensor of ``m``; return its state_dict name."""
    state = {k: t for k, t in m.state_dict().items() if t.numel()}
    if not state:
        return None
    name = sorted(state)[int(rng.integers(0, len(state)))]
    flat = state[name].view(-1)
    k = int(rng.integers(0, flat.numel()))
    with torch.no_grad():
        flat[k] = 1 if bool(flat[k] == 0) else 0
    return name


def one_trial(rng: np.random.Generator) -> tuple[bool, str]:
    m, how = random_module(rng), ROUTES[int(rng.integers(0, len(ROUTES)))]
    what = f"{how} route to {type(m).__name__} ({next(iter(m.state_dict().values())).dtype})"
    first = digests(route(m, how))
    if digests(route(m, how)) != first or digests(route(copy.deepcopy(m), how)) != first:
        return False, f"{what}: equal weights gave other digests"
    if not first[0] or not first[1]:
        return False, f"{what}: no weights found (stage {sorted(first[0])}, function {sorted(first[1])})"
    name = _perturb(m, rng)
    if name is None:
        return True, ""
    stage, function = digests(route(m, how))
    changed = sorted(k for k in first[0] if stage.get(k) != first[0][k])
    if changed != [k for k in first[0] if k.split(".", 1)[1] == name] or function == first[1]:
        return False, f"{what}: changing {name} changed stage digests {changed}, function digests changed: " \
                      f"{function != first[1]}"
    return True, ""


def weights(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    row = Row("weights of stages and per-item functions: a changed tensor is seen, equal weights are equal")
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        ok, message = one_trial(rng)
        row.check(ok, message)
    row.notes["routes"] = len(ROUTES)
    return row
