"""Pipelines of ops: Compose, RandomApply, OneOf, TwoViews, and the Loader adapter.

Each is itself an op (``TwoViews`` aside, which returns two tensors), so pipelines
nest, replay (params are nested dicts keyed by position) and follow ``.eval()``.
:func:`batch_transform` plugs pipelines into ``prebake.Loader(transform=...)``,
which hands it a dict of tensors per batch::

    train = batch_transform(image=image_train_preset(224), mix=CutMix(num_classes=10)).to("cuda")
    loader = prebake.Loader(cache, 256, device="cuda", transform=train)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from .base import Device, Op, Params, blend, owned, uniform
from .image import RandomCrop, RandomHorizontalFlip
from .mix import _Mix


def _as_op(op: Op | Sequence[Op], where: str) -> Op:
    """An op, or a list of ops made into a ``Compose``."""
    if isinstance(op, Op):
        return op
    if isinstance(op, (list, tuple)):
        return Compose(op)
    raise TypeError(f"{where} expects a prebake.augment op or a list of them, got {type(op).__name__}; "
                    "wrap a plain function in a subclass of prebake.augment.Op")


def _ops(modules: nn.ModuleList) -> list[Op]:
    """The ops of a ModuleList, typed (ModuleList only knows it holds Modules)."""
    return cast(list[Op], list(modules))


class Compose(Op):
    """Run ``ops`` in order. Params replay as ``{"0": params of op 0, "1": ...}``."""

    def __init__(self, ops: Sequence[Op]):
        super().__init__()
        self.ops = nn.ModuleList([_as_op(op, "Compose") for op in ops])

    def check_input(self, x: Tensor) -> None:
        if self.ops:
            _ops(self.ops)[0].check_input(x)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        for op in _ops(self.ops):
            shape = op.output_shape(shape)
        return tuple(shape)

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        params = {}
        for i, op in enumerate(_ops(self.ops)):
            params[str(i)] = op.sample_params(batch_shape, device, generator)
            batch_shape = op.output_shape(batch_shape)
        return params

    def _fused(self, i: int) -> RandomCrop | None:
        """The crop that op ``i``, a flip, fuses into (one pass instead of two), if ops ``i, i + 1`` are both
        training and the pair is RandomHorizontalFlip then RandomCrop (the CIFAR recipe)."""
        ops = _ops(self.ops)
        if i + 1 < len(ops) and type(ops[i]) is RandomHorizontalFlip and isinstance(ops[i + 1], RandomCrop):
            crop = cast(RandomCrop, ops[i + 1])
            return crop if ops[i].training and crop.training else None
        return None

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        ops, i, source = _ops(self.ops), 0, x
        while i < len(ops):
            crop = self._fused(i)
            if crop is not None:
                x = crop.apply_flipped(x, params[str(i + 1)], params[str(i)]["apply"])
                i += 2
            elif ops[i].has_inplace and owned(x, source):
                x = ops[i].apply_inplace(x, params[str(i)])
                i += 1
            else:
                x = ops[i].apply(x, params[str(i)])
                i += 1
        return x

    def forward(self, x: Tensor, params: Params | None = None, generator: torch.Generator | None = None,
                return_params: bool = False) -> Tensor | tuple[Tensor, Params]:
        """Each op checks its own input and follows its own train/eval mode.

        A flip followed by a crop runs as one fused crop (``RandomCrop.apply_flipped``):
        same params, drawn in the same order, and the same output as running them apart.
        An op after the first writes into the tensor the op before it made
        (:meth:`Op.apply_inplace`) when that tensor is the pipeline's own
        (:func:`~prebake.augment.base.owned`): the caller's ``x`` is never written.
        """
        used: Params = {}
        ops, i, source = _ops(self.ops), 0, x
        while i < len(ops):
            given = None if params is None else params[str(i)]
            crop = self._fused(i)
            if crop is None:
                if ops[i].has_inplace and owned(x, source):
                    x, used[str(i)] = ops[i].run(x, given, generator, inplace=True)
                else:
                    x, used[str(i)] = ops[i](x, given, generator, return_params=True)
                i += 1
                continue
            ops[i].check_input(x)
            crop.check_input(x)
            flip = ops[i].sample_params(tuple(x.shape), x.device, generator) if given is None else given
            crop_params = (crop.sample_params(tuple(x.shape), x.device, generator) if params is None
                           else params[str(i + 1)])
            x = crop.apply_flipped(x, crop_params, flip["apply"])
            used[str(i)], used[str(i + 1)] = flip, crop_params
            i += 2
        return (x, used) if return_params else x

    def extra_repr(self) -> str:
        return ""


class RandomApply(Op):
    """Apply ``op`` (or a list of ops, composed) to each sample with probability ``p``.

    The inner op runs on the whole batch and ``torch.where`` keeps it per sample,
    so its cost is paid for every sample. It must keep shape and dtype.
    """

    def __init__(self, op: Op | Sequence[Op], p: float = 0.5):
        super().__init__(p)
        self.op = _as_op(op, "RandomApply")

    def check_input(self, x: Tensor) -> None:
        self.op.check_input(x)
        if self.op.output_shape(x.shape) != tuple(x.shape):
            raise ValueError(f"RandomApply needs an op that keeps the shape; {type(self.op).__name__} turns "
                             f"{tuple(x.shape)} into {self.op.output_shape(x.shape)}; apply it unconditionally")

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        coin = self.coin(uniform((batch_shape[0],), device, generator))
        return {"apply": coin, "inner": self.op.sample_params(batch_shape, device, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        out = self.op.apply(x, params["inner"])
        return blend(params["apply"], out.to(x.dtype), x)


class OneOf(Op):
    """Apply one of ``ops`` per sample, picked with probabilities ``weights`` (default: equal).

    With probability ``1 - p`` a sample gets none. Every op runs on the whole batch
    and ``torch.where`` picks per sample, so the cost is the sum of the ops. All
    must keep the shape; outputs are cast to the input dtype.
    """

    def __init__(self, ops: Sequence[Op], weights: Sequence[float] | None = None, p: float = 1.0):
        super().__init__(p)
        if not ops:
            raise ValueError("OneOf needs at least one op, got an empty list")
        self.ops = nn.ModuleList([_as_op(op, "OneOf") for op in ops])
        weights = [1.0] * len(ops) if weights is None else [float(w) for w in weights]
        if len(weights) != len(ops) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights={weights!r} must be {len(ops)} non-negative numbers with a positive sum")
        total, acc, self.bounds = sum(weights), 0.0, []
        for w in weights[:-1]:
            acc += w / total
            self.bounds.append(acc)

    def check_input(self, x: Tensor) -> None:
        for op in _ops(self.ops):
            op.check_input(x)
            if op.output_shape(x.shape) != tuple(x.shape):
                raise ValueError(f"OneOf needs ops that keep the shape; {type(op).__name__} turns "
                                 f"{tuple(x.shape)} into {op.output_shape(x.shape)}")

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        u = uniform((batch_shape[0], 2), device, generator)
        choice = torch.zeros_like(u[:, 1], dtype=torch.long)
        for bound in self.bounds:  # cumulative weights: a handful of ops, not samples
            choice = choice + (u[:, 1] >= bound).long()
        params: Params = {"apply": self.coin(u[:, 0]), "choice": choice}
        for i, op in enumerate(_ops(self.ops)):
            params[str(i)] = op.sample_params(batch_shape, device, generator)
        return params

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        out = x
        for i, op in enumerate(_ops(self.ops)):  # a handful of ops, not samples
            picked = params["apply"] & (params["choice"] == i)
            out = blend(picked, op.apply(x, params[str(i)]).to(x.dtype), out)
        return out

    def extra_repr(self) -> str:
        return f"bounds={self.bounds}, p={self.p}"


class TwoViews(nn.Module):
    """Two independently augmented views of the same batch, for contrastive pretraining (the heart-sound workload).

    ``pipeline`` is an op or a list of ops (a :class:`Compose`), drawn afresh for each view.
    ``view1, view2 = TwoViews(pipeline)(x)``; with ``return_params=True`` also
    ``{"view1": params, "view2": params}``, which replay when passed back.

    When every op of the pipeline is per-sample (:attr:`Op.per_sample`; all but MixUp and
    CutMix), both views are made in one pass over the batch twice end to end: the same
    kernels as for one view, on ``2N`` samples, with each sample's params drawn apart as
    before. Params stay per view (the first ``N`` rows are view 1's). For the six signal ops
    on a GPU's path that is 146 ATen calls for both views instead of 286: half the launches.
    On a CPU, where the ops are bound by their passes over memory, it is no faster (64 x 1 x
    1600, 2 cores: 4.2 ms against 4.1 ms median).
    """

    def __init__(self, pipeline: Op | Sequence[Op]):
        super().__init__()
        self.pipeline = _as_op(pipeline, "TwoViews")
        self.one_pass = all(getattr(m, "per_sample", True) for m in self.pipeline.modules())

    def forward(self, x: Tensor, params: Params | None = None, generator: torch.Generator | None = None,
                return_params: bool = False) -> Any:
        if self.one_pass and self.pipeline.training and isinstance(x, Tensor) and x.dim() > 0:
            n = x.shape[0]
            both = None if params is None else _cat_params(params["view1"], params["view2"])
            y, p = self.pipeline(torch.cat([x, x]), both, generator, return_params=True)
            v1, v2 = y[:n], y[n:]
            if not return_params:
                return v1, v2
            return (v1, v2), {"view1": _rows(p, slice(0, n)), "view2": _rows(p, slice(n, 2 * n))}
        v1, p1 = self.pipeline(x, None if params is None else params["view1"], generator, return_params=True)
        v2, p2 = self.pipeline(x, None if params is None else params["view2"], generator, return_params=True)
        return ((v1, v2), {"view1": p1, "view2": p2}) if return_params else (v1, v2)


def _cat_params(a: Any, b: Any) -> Any:
    """Two views' params as one batch's: tensors end to end along the batch dimension."""
    if isinstance(a, Tensor):
        return torch.cat([a, b])
    if isinstance(a, Mapping):
        return {k: _cat_params(a[k], b[k]) for k in a}
    return a


def _rows(p: Any, rows: slice) -> Any:
    """The params of ``rows`` of a batch's params."""
    if isinstance(p, Tensor):
        return p[rows]
    if isinstance(p, Mapping):
        return {k: _rows(v, rows) for k, v in p.items()}
    return p


class BatchTransform(nn.Module):
    """Apply a pipeline per column of a batch dict; see :func:`batch_transform`.

    ``pipelines`` maps a column to its pipeline; ``mix``, ``mix_keys`` and ``generator``
    are :func:`batch_transform`'s.
    """

    def __init__(self, pipelines: Mapping[str, Op | TwoViews | Sequence[Op]], mix: _Mix | None = None,
                 mix_keys: tuple[str, str] = ("image", "label"), generator: torch.Generator | None = None):
        super().__init__()
        self.pipelines = nn.ModuleDict({k: p if isinstance(p, TwoViews) else _as_op(p, f"batch_transform({k}=...)")
                                        for k, p in pipelines.items()})
        self.mix, self.mix_keys, self.generator = mix, mix_keys, generator

    def _column(self, batch: Mapping[str, Any], key: str) -> Any:
        if key not in batch:
            raise KeyError(f"batch_transform has a pipeline for column {key!r}, but the batch has only "
                           f"{sorted(batch)}; rename the keyword or load that column")
        return batch[key]

    def forward(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        """``generator``: the draws of this call when the transform was made without one (a ``Loader``
        passes one seeded per batch, so a resumed run augments its remaining batches as the first did)."""
        g = self.generator if self.generator is not None else generator
        out = dict(batch)
        for key, pipeline in self.pipelines.items():
            result = pipeline(self._column(out, key), generator=g)
            if isinstance(result, tuple):  # TwoViews: image -> image_view1, image_view2
                del out[key]
                out[f"{key}_view1"], out[f"{key}_view2"] = result
            else:
                out[key] = result
        if self.mix is not None:
            x_key, y_key = self.mix_keys
            x, y = self.mix(self._column(out, x_key), generator=g, target=self._column(out, y_key))
            out[x_key] = x
            if isinstance(y, tuple):  # labels="pair": label_a, label_b, lam
                out[f"{y_key}_a"], out[f"{y_key}_b"], out["lam"] = y
                del out[y_key]
            else:
                out[y_key] = y
        return out


def batch_transform(*, mix: _Mix | None = None, mix_keys: tuple[str, str] = ("image", "label"),
                    generator: torch.Generator | None = None,
                    **pipelines: Op | TwoViews | Sequence[Op]) -> BatchTransform:
    """A ``Loader`` transform: ``batch_transform(image=pipeline)`` augments ``batch["image"]``.

    Columns without a pipeline pass through. A ``TwoViews`` pipeline replaces
    ``key`` by ``key_view1`` and ``key_view2``. ``mix`` (MixUp or CutMix) runs
    last on ``mix_keys`` = (inputs, labels) and writes soft labels over the label
    column, or ``label_a``, ``label_b`` and ``lam`` with ``labels="pair"``. The
    result is an ``nn.Module``: ``.to(device)``, ``.train()`` and ``.eval()`` reach every op.
    ``generator``, when given, draws every op's parameters (a seeded, replayable stream); without
    one, a ``Loader`` hands each batch its own generator seeded from (seed, rank, epoch, batch),
    so a run resumed from ``state_dict()`` augments exactly as the uninterrupted one.
    """
    return BatchTransform(pipelines, mix, mix_keys, generator)
