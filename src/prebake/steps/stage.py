"""``prebake.Stage``: a batched step of the bake, such as a frozen encoder on the GPU.

Per-item transforms run in forked CPU workers, one item at a time. A stage runs after
them, in the building process, on whole batches of items: a frozen ``nn.Module`` (an audio
encoder, a motion encoder) under ``torch.inference_mode()``, on CUDA when there is one,
with optional autocast (``dtype=torch.bfloat16``). The workers are forked before the stage
first touches CUDA, so CUDA is never initialised in a forked child.

How ragged inputs (a clip's frames, a recording's samples) reach ``fn``:

- ``ragged="concat"`` (per-frame models): the rows of every item of the batch, concatenated
  along axis 0, plus ``<input>_lengths`` (rows per item). Every output must have one row per
  input row; it is split back per item into a ragged column with the input's lengths.
- ``ragged="pad"`` (clip-level models): one zero-padded ``(B, longest, ...)`` tensor plus
  ``<input>_lengths``. An output is one row per item ``(B, ...)``, or, when ``fn`` also
  returns ``<output>_lengths``, a ragged column: item ``b`` keeps ``out[b, :lengths[b]]``
  (so an audio encoder may return fewer rows than it was given samples). The items of a
  chunk are batched in order of length (of the first ragged input), so a batch pads to
  little more than its own items rather than to the chunk's longest; outputs come back in
  item order.

With fixed-size inputs only, ``fn`` gets ``(B, ...)`` tensors and returns ``(B, ...)`` ones.
Outputs arrive in the cache in the dtype ``fn`` returned (bfloat16, which numpy lacks,
as float32).

>>> import numpy as np, torch
>>> double = Stage(lambda b: {"y": b["x"] * 2}, inputs=("x",), outputs=("y",), batch_size=2, device="cpu")
>>> double.run({"x": np.arange(6, dtype=np.float32).reshape(3, 2)})["y"].tolist()
[[0.0, 2.0], [4.0, 6.0], [8.0, 10.0]]
>>> frames = Stage(lambda b: {"z": b["f"].sum(dim=1)}, inputs=("f",), outputs=("z",), device="cpu")
>>> [z.tolist() for z in frames.run({"f": [np.ones((2, 3)), np.ones((1, 3))]})["z"]]   # concat: per frame
[[3.0, 3.0], [3.0]]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import OptionError, PrebakeError
from ..identity.code import code_identity
from ..identity.weights import tensor_digests

Columns = dict[str, Any]  # name -> ndarray (B, ...) for fixed columns, list of ndarrays for ragged ones
MODES = ("concat", "pad")


class Stage:
    """A batched step of the bake: ``fn(batch dict of tensors) -> dict of tensors``.

    Parameters:
        fn: a function or an ``nn.Module`` (put in eval mode, moved to ``device``) taking a
            dict of batched tensors, one per name in ``inputs``, and returning a dict with
            (at least) every name in ``outputs``.
        inputs: the columns ``fn`` reads: columns of the items, or outputs of an earlier stage.
        outputs: the columns ``fn`` writes into the cache.
        batch_size: items per call of ``fn``. Not part of the fingerprint: a stage's output for
            an item must not depend on the other items of its batch (see the module docstring).
        device: where ``fn`` runs; default CUDA when available, else the CPU.
        dtype: an autocast dtype (``torch.bfloat16``, ``torch.float16``), or None for none.
        name: the stage's name in messages and the fingerprint (default: ``fn``'s name).
        ragged: how ragged inputs reach ``fn``: ``"concat"`` or ``"pad"`` (module docstring).
        keep: False drops this stage's inputs from the finished cache (an input still needed by
            a later stage, or an output of another stage, is dropped only if no one keeps it).
        max_rows: with ragged inputs, also at most this many rows of the first ragged input per
            call: their sum (``"concat"``) or batch x longest (``"pad"``). A call holds whole
            items, so an item longer than ``max_rows`` runs alone. It bounds a call's memory
            when items vary in length (GPU memory; on a CPU, activations that stay in the
            caches). Not part of the fingerprint, for the same reason as ``batch_size``.
    """

    spec: str | None = None  # the "module:function" it was loaded from, when it was (how a config file names it)

    def __init__(self, fn: Callable[[dict[str, Any]], Mapping[str, Any]], inputs: Sequence[str],
                 outputs: Sequence[str], batch_size: int = 64, device: Any = None, dtype: Any = None,
                 name: str | None = None, ragged: str = "concat", keep: bool = True, max_rows: int | None = None):
        if not callable(fn):
            raise OptionError(f"Stage fn must be callable (a function or an nn.Module), got {type(fn).__name__}")
        self.inputs, self.outputs = _names(inputs, "inputs"), _names(outputs, "outputs")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OptionError(f"Stage batch_size must be a positive integer, got {batch_size!r}")
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
            raise OptionError(f"Stage max_rows must be a positive integer or None, got {max_rows!r}")
        if ragged not in MODES:
            raise OptionError(f"Stage ragged={ragged!r}: use 'concat' (per-row models) or 'pad' (per-item models)")
        clash = set(self.inputs) & set(self.outputs)
        if clash:
            raise OptionError(f"Stage outputs {sorted(clash)} are also its inputs; give the outputs new names")
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(fn, torch.nn.Module):
            fn.eval()  # frozen from the start, so its identity does not change when it first runs
        self.fn, self.batch_size, self.device, self.dtype = fn, batch_size, device, dtype
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.ragged, self.keep, self.max_rows = ragged, keep, max_rows
        self._ready: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a Ray actor) without the prepared callable: ``fn`` moves to the actor's device there."""
        return {**self.__dict__, "_ready": None}

    def __repr__(self) -> str:
        return (f"Stage({self.name!r}, inputs={list(self.inputs)}, outputs={list(self.outputs)}, "
                f"batch_size={self.batch_size}, ragged={self.ragged!r}"
                + ("" if self.max_rows is None else f", max_rows={self.max_rows}") + ")")

    # -- the fingerprint --------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """JSON identity: code, parameters and the content of every weight and buffer, by value."""
        return {"name": f"stage {self.name}", "inputs": list(self.inputs), "outputs": list(self.outputs),
                "ragged": self.ragged, "dtype": None if self.dtype is None else str(self.dtype),
                "keep": self.keep, "code": code_identity(self.fn)["code"], "weights": tensor_digests(self.fn)}

    # -- running ----------------------------------------------------------------------------

    def resolved_device(self) -> Any:
        import torch

        return torch.device(self.device if self.device is not None else
                            ("cuda" if torch.cuda.is_available() else "cpu"))

    def _callable(self) -> Callable[[dict[str, Any]], Mapping[str, Any]]:
        """``fn`` ready to run: a module in eval mode on the device (done once)."""
        if self._ready is None:
            import torch

            fn = self.fn
            if isinstance(fn, torch.nn.Module):
                fn = fn.to(self.resolved_device()).eval()
            self._ready = fn
        return self._ready

    def run(self, columns: Columns) -> Columns:
        """Apply the stage to one chunk of items: ``columns`` has every input (fixed arrays or lists
        of per-item arrays); returns every output the same way. Batches of ``batch_size`` items."""
        missing = [c for c in self.inputs if c not in columns]
        if missing:
            raise PrebakeError(f"stage {self.name!r} reads {missing}, which no item or earlier stage has; "
                               f"columns are {sorted(columns)}")
        n = len(next(iter(columns[c] for c in self.inputs)))
        order = self._order(columns, n)
        inputs = {c: _take(columns[c], order) for c in self.inputs}
        parts: list[Columns] = [self._batch({c: v[s:e] for c, v in inputs.items()}) for s, e in self._spans(inputs, n)]
        inverse = None if order is None else np.argsort(order)
        return {o: _take(_join([p[o] for p in parts]), inverse) for o in self.outputs}

    def _spans(self, inputs: Columns, n: int) -> list[tuple[int, int]]:
        """The calls' item ranges: ``batch_size`` items each, fewer where ``max_rows`` says so."""
        ragged = [v for v in inputs.values() if isinstance(v, list)]
        if self.max_rows is None or not ragged:
            return [(s, min(n, s + self.batch_size)) for s in range(0, n, self.batch_size)]
        lengths = [len(a) for a in ragged[0]]
        spans, start, rows, longest = [], 0, 0, 0
        for i, k in enumerate(lengths):
            count = i - start  # items in the call so far
            grown = rows + k if self.ragged == "concat" else (count + 1) * max(longest, k)
            if count and (count >= self.batch_size or grown > self.max_rows):
                spans.append((start, i))
                start, rows, longest = i, 0, 0
            rows, longest = rows + k, max(longest, k)
        return [*spans, (start, n)] if n else spans

    def _order(self, columns: Columns, n: int) -> np.ndarray | None:
        """``ragged="pad"`` over several batches: the items by length, so each batch pads to little more than
        its own items (outputs go back to item order). None: the items' own order."""
        ragged = [columns[c] for c in self.inputs if isinstance(columns[c], list)]
        if self.ragged != "pad" or not ragged or n <= self.batch_size:
            return None
        return np.argsort(np.array([len(a) for a in ragged[0]]), kind="stable")

    def _batch(self, items: Columns) -> Columns:
        import torch

        device = self.resolved_device()
        ragged = [c for c, v in items.items() if isinstance(v, list)]
        lengths = {c: np.array([len(a) for a in items[c]], dtype=np.int64) for c in ragged}
        if self.ragged == "concat" and len({tuple(v) for v in lengths.values()}) > 1:
            raise PrebakeError(f"stage {self.name!r} (ragged='concat') got ragged inputs {ragged} whose items have "
                               "different lengths; use ragged='pad', or one stage per input")
        batch: dict[str, Any] = {}
        for c, v in items.items():
            if c in lengths:
                batch[c] = _to_tensor(_concat(v) if self.ragged == "concat" else _pad(v), device)
                batch[f"{c}_lengths"] = torch.from_numpy(lengths[c]).to(device)
            else:
                batch[c] = _to_tensor(np.asarray(v), device)
        with torch.inference_mode(), _autocast(device, self.dtype):
            out = self._callable()(batch)
        if not isinstance(out, Mapping) or any(o not in out for o in self.outputs):
            got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
            raise PrebakeError(f"stage {self.name!r} must return a dict with {list(self.outputs)}, returned {got}")
        b = len(next(iter(items.values())))
        rows = next(iter(lengths.values()), None)
        return {o: self._split(o, out, b, rows) for o in self.outputs}

    def _split(self, name: str, out: Mapping[str, Any], b: int, rows: np.ndarray | None) -> Any:
        value = _to_numpy(out[name])
        if self.ragged == "concat" and rows is not None:
            if len(value) != rows.sum():
                raise PrebakeError(f"stage {self.name!r}: output {name!r} has {len(value)} rows for {rows.sum()} "
                                   "input rows; with ragged='concat' an output has one row per input row")
            return np.split(value, np.cumsum(rows)[:-1])
        if len(value) != b:
            raise PrebakeError(f"stage {self.name!r}: output {name!r} has {len(value)} rows for a batch of {b} items")
        if f"{name}_lengths" in out:
            keep = _to_numpy(out[f"{name}_lengths"]).astype(np.int64)
            return [value[k, : keep[k]] for k in range(b)]
        return value


def _names(names: Sequence[str], what: str) -> tuple[str, ...]:
    out = (names,) if isinstance(names, str) else tuple(names)
    if not out or not all(isinstance(n, str) and n for n in out):
        raise OptionError(f"Stage {what} must be one or more column names, got {names!r}")
    return out


def _concat(items: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a) for a in items]) if items else np.empty(0)


def _pad(items: list[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(a) for a in items]
    longest = max((len(a) for a in arrays), default=0)
    out = np.zeros((len(arrays), longest, *arrays[0].shape[1:]), dtype=arrays[0].dtype)
    for k, a in enumerate(arrays):  # a copy per item into one preallocated batch: no per-item tensors
        out[k, : len(a)] = a
    return out


def _to_tensor(a: np.ndarray, device: Any) -> Any:
    import torch

    a = a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))
    return torch.from_numpy(np.ascontiguousarray(a)).to(device, non_blocking=True)


def _to_numpy(t: Any) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(t, torch.Tensor):
        t = t.detach()
        return (t.float() if t.dtype == torch.bfloat16 else t).cpu().numpy()
    return np.asarray(t)


def _take(value: Any, order: np.ndarray | None) -> Any:
    if order is None:
        return value
    return [value[i] for i in order] if isinstance(value, list) else np.asarray(value)[order]


def _join(parts: list[Any]) -> Any:
    if parts and isinstance(parts[0], list):
        return [a for p in parts for a in p]
    return np.concatenate(parts) if parts else np.empty(0)


def _autocast(device: Any, dtype: Any) -> Any:
    import contextlib

    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
