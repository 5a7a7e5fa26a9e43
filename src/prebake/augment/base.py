"""The contract every augmentation follows: draw per-sample parameters, then apply them.

An op is an ``nn.Module`` with two methods of its own:

- ``sample_params(batch_shape, device, generator)`` draws every random number the
  batch needs, as device tensors, in one call (one ``torch.rand`` of shape
  ``(N, k)`` for most ops). Samples that lose the per-sample ``p`` coin get the
  op's *neutral* parameters (scale 1, shift 0, no flip) through ``torch.where``.
- ``apply(x, params)`` is a pure batched tensor function of ``x`` and ``params``.
  An op may also write ``apply_inplace(x, params)``, the same result written into
  ``x``: ``Compose`` calls it on the tensors its own ops made (never on its
  caller's), so an elementwise op after the first makes no new batch-sized tensor
  and, on a CPU, ``on_applied`` ops copy their rows into it instead of into a copy.
  For the heart-sound workload's six ops on 2 x 64 x 1600 signals that is one batch-sized buffer
  after ``TimeShift``: 3.1-3.4 ms against 3.2-3.7 ms in its training loop (2-core CPU,
  four alternating fresh-process pairs).

``forward`` joins them, returns the params on request, and replays them when they
are passed back in. Nothing reads a tensor's value on the host (no ``.item()``,
``.tolist()``, boolean-mask indexing or ``if tensor:``), and no Python loop runs
over samples, so one call issues the same kernels for any batch size and never
waits for the device. One exception, where waiting costs nothing: on a CPU the
costliest ops compute only the samples whose coin came up
(:func:`on_applied`), still with the same kernels for any batch size.

Random ops are the identity in ``.eval()``; those that change the shape (a crop to
a smaller size) apply their deterministic version instead (a centre crop).
Deterministic ops (``Resize``, ``Normalize``) set ``random = False`` and apply in
both modes: they define the model's input, not a variation of it.

Generators: a CUDA tensor can only be drawn from a CUDA ``torch.Generator``. A
generator on another device than ``x`` still works: the params are drawn on the
generator's device and copied to ``x``'s, which on CUDA is a small host-to-device
copy that waits for the host. Pass ``torch.Generator(device=x.device)`` for runs
that never sync.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

Params = dict[str, Any]
"""Per-sample parameters: tensors with a leading batch dimension (nested dicts for pipelines)."""

Device = torch.device | str
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _draw_device(device: Device, generator: torch.Generator | None) -> torch.device:
    return torch.device(device) if generator is None else generator.device


def uniform(shape: Sequence[int], device: Device, generator: torch.Generator | None = None) -> Tensor:
    """Float32 uniforms in [0, 1) on ``device``, drawn from ``generator`` on its own device."""
    u = torch.rand(tuple(shape), device=_draw_device(device, generator), generator=generator)
    return u.to(device)


def normal(shape: Sequence[int], device: Device, generator: torch.Generator | None = None) -> Tensor:
    """Float32 standard normals on ``device``, drawn from ``generator`` on its own device."""
    z = torch.randn(tuple(shape), device=_draw_device(device, generator), generator=generator)
    return z.to(device)


def lerp_range(u: Tensor, low: float, high: float) -> Tensor:
    """Map uniforms in [0, 1) onto [low, high)."""
    return low + (high - low) * u


def randint_from(u: Tensor, high: Tensor | int) -> Tensor:
    """Integers uniform in [0, high] (inclusive) from uniforms, as int64; ``high`` may vary per sample."""
    if isinstance(high, Tensor):  # per-sample bounds stay on the device: no host round trip
        return torch.minimum(torch.floor(u * (high + 1)), high.to(u.dtype)).long()
    return torch.floor(u * (high + 1)).clamp_(max=high).long()  # u * (high + 1) can round up to it


def per_sample(t: Tensor, ndim: int) -> Tensor:
    """View a ``(N,)`` tensor as ``(N, 1, ..., 1)`` with ``ndim`` dims, to broadcast over a batch."""
    return t.reshape(t.shape[0], *([1] * (ndim - 1)))


def blend(apply: Tensor, out: Tensor, x: Tensor) -> Tensor:
    """Per-sample ``p``: ``out`` where the sample's coin came up, ``x`` untouched elsewhere."""
    return torch.where(per_sample(apply, x.dim()), out, x)


def applied_rows(apply: Tensor) -> Tensor | None:
    """The indices of the samples whose coin came up, where reading the coins waits for nothing.

    On a CPU (outside ``torch.compile``, which cannot trace a data-dependent shape) an op
    can then compute those rows alone: at ``p=0.5`` half the work. Elsewhere ``None``: on
    CUDA reading them would stall the host until the device catches up, so the op computes
    every sample and keeps the input where the coin did not come up.
    """
    return apply.nonzero().squeeze(1) if host_readable(apply) else None


def host_readable(t: Tensor) -> bool:
    """Whether an op may read ``t``'s values on the host (sizes from params, say) without waiting:
    a CPU tensor, outside ``torch.compile``, which cannot trace a data-dependent shape."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def owned(x: Tensor, source: Tensor) -> bool:
    """Whether a pipeline may write into ``x``, an op's output: it shares no memory with the pipeline's
    input ``source``, has no overlapping elements, and is not being traced or recorded for autograd."""
    if torch.compiler.is_compiling() or x.device.type == "meta" or not x.is_contiguous():
        return False
    if x.requires_grad and torch.is_grad_enabled():
        return False
    return x.untyped_storage().data_ptr() != source.untyped_storage().data_ptr()


def on_applied(apply: Tensor, x: Tensor, fn: Callable[[Tensor, Tensor | None], Tensor], *,
               neutral: bool = False) -> Tensor:
    """``fn`` on the samples whose coin came up, ``x`` untouched elsewhere; output dtype ``x``'s.

    On a CPU, ``fn(x[rows], rows)`` computes only those samples (:func:`applied_rows`;
    ``fn`` takes its params' ``rows`` too) and they are copied into a copy of ``x``: the
    same kernels whether some or all applied, and none of ``fn``'s when no sample did.
    Elsewhere ``fn(x, None)`` runs on every sample and :func:`blend` keeps ``x`` where the
    coin did not come up; with ``neutral=True`` those samples' params already leave them
    as they are (a stretch at rate 1), and the blend is skipped.
    """
    return _on_applied(apply, x, fn, neutral, inplace=False)


def on_applied_inplace(apply: Tensor, x: Tensor, fn: Callable[[Tensor, Tensor | None], Tensor], *,
                       neutral: bool = False) -> Tensor:
    """:func:`on_applied` for :meth:`Op.apply_inplace`: on a CPU the computed rows are copied into ``x``
    itself (no copy of the batch); elsewhere the same as :func:`on_applied`."""
    return _on_applied(apply, x, fn, neutral, inplace=True)


def _on_applied(apply: Tensor, x: Tensor, fn: Callable[[Tensor, Tensor | None], Tensor], neutral: bool,
                inplace: bool) -> Tensor:
    rows = applied_rows(apply)
    if rows is None:
        return fn(x, None) if neutral else blend(apply, fn(x, None), x)
    out = x if inplace else x.clone()
    return out.index_copy_(0, rows, fn(x.index_select(0, rows), rows)) if len(rows) else out


def applied_normal(apply: Tensor, shape: Sequence[int], device: Device,
                   generator: torch.Generator | None = None) -> Tensor:
    """Standard normals of ``shape`` for the samples whose coin came up: a noise op's params.

    On a CPU the samples without the coin get zeros and no draws (:func:`applied_rows`:
    half the draws at ``p=0.5``); elsewhere every sample gets its draws, which such a
    sample adds times 0.
    """
    rows = applied_rows(apply)
    if rows is None:
        return normal(shape, device, generator)
    drawn = normal((len(rows), *shape[1:]), device, generator)
    # zeros, then the draws copied in: 29 against 39 us on 128 x 1 x 1600 (2 CPU cores) for the draws copied into
    # an empty tensor and the other rows filled; fill_, not zeros(), makes the same ATen calls at every size
    return torch.empty(tuple(shape), device=drawn.device).fill_(0.0).index_copy_(0, rows, drawn)


def take_rows(params: Params, rows: Tensor | None) -> Params:
    """``params`` of the samples ``rows`` (all of them for ``None``), for :func:`on_applied`'s ``fn``."""
    if rows is None:
        return params
    return {k: v.index_select(0, rows) if isinstance(v, Tensor) else v for k, v in params.items()}


def to_float32(x: Tensor) -> Tensor:
    """Float32 working copy for kernels that need it (interpolate, grid_sample, FFT on CPU)."""
    return x if x.dtype == torch.float32 else x.float()


def restore_dtype(y: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast a float result back to ``dtype``; integers are rounded and clipped to their range."""
    if y.dtype == dtype:
        return y
    if dtype.is_floating_point:
        return y.to(dtype)
    info = torch.iinfo(dtype)
    return y.round().clamp_(info.min, info.max).to(dtype)


def value_max(dtype: torch.dtype) -> float:
    """The value of full intensity: 255 for uint8 images, 1.0 for float images."""
    return 255.0 if dtype == torch.uint8 else 1.0


def check_probability(p: float, name: str = "p") -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name}={p!r} is not a probability; pass a value in [0, 1]")
    return float(p)


def check_range(value: Sequence[float] | float, name: str, *, low: float | None = None,
                high: float | None = None) -> tuple[float, float]:
    """A ``(min, max)`` pair with ``min <= max`` inside ``[low, high]``; a number ``v`` means ``(v, v)``."""
    pair = (float(value), float(value)) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if len(pair) != 2 or pair[0] > pair[1]:
        raise ValueError(f"{name}={value!r} must be a (min, max) pair with min <= max, e.g. (0.8, 1.2)")
    if (low is not None and pair[0] < low) or (high is not None and pair[1] > high):
        raise ValueError(f"{name}={value!r} must lie in [{low}, {high}]; pass a narrower range")
    return pair


def check_tensor(x: Any, ndim: int, layout: str, op: str, *, floating: bool = False) -> None:
    """Reject inputs the op cannot handle, naming the value, the expectation and the fix."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op} expects a torch.Tensor {layout}, got {type(x).__name__}; "
                        "convert with torch.as_tensor(x)")
    if x.dim() != ndim:
        raise ValueError(f"{op} expects a batch of shape {layout}, got shape {tuple(x.shape)}; "
                         f"add the missing batch or channel dimension with x.unsqueeze(...)")
    if floating and x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op} expects a floating signal (float16, bfloat16 or float32), got {x.dtype}; "
                        "convert integer PCM with x.float() / 32768 (int16) first")
    if not floating and x.dtype not in (torch.uint8, *FLOAT_DTYPES):
        raise TypeError(f"{op} expects uint8 or floating images, got {x.dtype}; convert with x.float()")


def _also_module_apply(apply: Callable[..., Tensor]) -> Callable[..., Any]:
    """Keep ``nn.Module.apply(fn)`` working on an op whose ``apply(x, params)`` shadows it.

    ``model.apply(init_weights)`` calls ``child.apply(fn)`` on every submodule, an
    augmentation pipeline inside the model included: a lone callable goes to
    ``nn.Module.apply``, anything else to the op's own ``apply``.
    """
    @functools.wraps(apply)
    def dispatch(self: nn.Module, x: Any, params: Params | None = None) -> Any:
        if params is None and callable(x) and not isinstance(x, Tensor):
            return nn.Module.apply(self, x)
        return apply(self, x, params)
    return dispatch


class Op(nn.Module):
    """Base class of every augmentation: subclasses write ``sample_params`` and ``apply``.

    ``p`` is the per-sample probability of applying the op (each sample tosses its own coin). ``random = False``
    marks deterministic ops, which apply in ``.eval()`` too.
    """

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "apply" in cls.__dict__:
            cls.apply = _also_module_apply(cls.__dict__["apply"])  # type: ignore[method-assign]

    random: ClassVar[bool] = True
    #: Each sample's output depends on that sample and its own params alone (False for MixUp and
    #: CutMix, which pair samples): then a call on two batches end to end is two calls, which is
    #: what lets ``TwoViews`` draw both views in one pass.
    per_sample: ClassVar[bool] = True
    ndim: ClassVar[int] = 4
    layout: ClassVar[str] = "(N, C, H, W)"
    floating_only: ClassVar[bool] = False

    def __init__(self, p: float = 1.0):
        super().__init__()
        self.p = check_probability(p)

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        """Draw the parameters of every sample of a batch of ``batch_shape``, in one call."""
        return {}

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]  # pragma: no cover - abstract
        """Apply the op to ``x`` with ``params``: a pure function, no randomness."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply(x, params)")

    def apply_inplace(self, x: Tensor, params: Params) -> Tensor:
        """``apply``, free to write its result into ``x``; use the tensor it returns.

        A pipeline calls it on its own intermediates (``Compose`` never on its caller's
        tensor): an elementwise op then makes no new batch-sized tensor, and an op that
        changes some samples writes only those. By default it is ``apply(x, params)``;
        an override must return what ``apply`` does, bit for bit.
        """
        return self.apply(x, params)

    def eval_apply(self, x: Tensor) -> Tensor:
        """What a random op does in ``.eval()``: nothing, unless it changes the shape."""
        return x

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape ``apply`` returns for an input of ``shape`` (used by ``Compose``)."""
        return tuple(shape)

    def check_input(self, x: Tensor) -> None:
        check_tensor(x, self.ndim, self.layout, type(self).__name__, floating=self.floating_only)

    def coin(self, u: Tensor) -> Tensor:
        """Per-sample ``p``: True where the op applies, from uniforms ``u`` of shape (N,)."""
        return u < self.p

    def forward(self, x: Tensor, params: Params | None = None, generator: torch.Generator | None = None,
                return_params: bool = False) -> Tensor | tuple[Tensor, Params]:
        """Augment ``x``; pass ``params`` back in to replay a call, ``return_params=True`` to get them.

        In ``.eval()`` a random op ignores ``params`` and returns ``eval_apply(x)``
        (the identity for shape-preserving ops) with empty params.
        """
        out, params = self.run(x, params, generator)
        return (out, params) if return_params else out

    def run(self, x: Tensor, params: Params | None = None, generator: torch.Generator | None = None,
            inplace: bool = False) -> tuple[Tensor, Params]:
        """What :meth:`forward` does, returning ``(out, params)``; ``inplace=True`` applies through
        :meth:`apply_inplace`, which may overwrite ``x`` (a pipeline's own intermediate)."""
        self.check_input(x)
        if self.random and not self.training:
            return self.eval_apply(x), {}
        if params is None:
            params = self.sample_params(tuple(x.shape), x.device, generator)
        return (self.apply_inplace(x, params) if inplace else self.apply(x, params)), params

    @property
    def has_inplace(self) -> bool:
        """Whether this op's :meth:`apply_inplace` writes into its input (an override of the default)."""
        return type(self).apply_inplace is not Op.apply_inplace and type(self).forward is Op.forward

    def extra_repr(self) -> str:
        return f"p={self.p}" if self.random else ""
