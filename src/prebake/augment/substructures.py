"""Split each cardiac cycle of a batch into K substructures, batched: ``(N, C, T) -> (N, K, C, W)``.

The heart-sound workload split every cycle into substructures in ``__getitem__`` (twice per sample, once per
view) and later with a batched ``split_substructures_batch`` at fixed fractions. Here one
gather cuts every part of every sample, at fixed fractions of the cycle or at each sample's
own boundaries (the S1/S2 positions the bake stored in ``cycle_bounds``: S1, systole, S2,
diastole).

**Variable lengths.** The signal ops take a fixed-length batch, and the right place to make
one is before them: ``prebake.crop_or_pad`` (or the bake's ``cycle_length``) gives every cycle
``T`` samples, S1 first, zeros after its end. The ops then see one static shape (one set of
kernels for any batch, one ``torch.compile`` graph), and the model sees exactly the ``T``
samples the ops produced, at training and at evaluation alike. Where the padding matters is
here, when a cycle is cut into parts: pass ``lengths=`` (each cycle's valid samples) and the
fixed fractions apply to the valid part, not to the padded ``T``; pass ``bounds=`` and each
part is cut where that sample's sounds are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import Device, Params
from .signal import SignalOp

FITS = ("pad", "resample")


def fraction_bounds(fractions: Sequence[float], lengths: Tensor) -> Tensor:
    """``(N, K + 1)`` int64 boundaries at the cumulative ``fractions`` of each sample's ``lengths``."""
    edges = torch.cumsum(torch.tensor([0.0, *fractions], device=lengths.device, dtype=torch.float64), 0)
    edges = edges / edges[-1]
    return torch.round(lengths.to(torch.float64)[:, None] * edges).long()


class SplitSubstructures(SignalOp):
    """Cut each signal into ``k`` parts, every part ``length`` samples wide: ``(N, k, C, length)``.

    Parts lie at the cumulative ``fractions`` of the signal (default: ``k`` equal parts), or at
    per-sample ``bounds`` ``(N, k + 1)`` (``op(x, bounds=...)``: sample positions, part ``j`` is
    ``[bounds[:, j], bounds[:, j + 1])``; a row whose first entry is negative, such as the
    ``-1`` rows of a fallback window, is cut at the fractions instead). ``lengths`` ``(N,)``
    makes the fractions apply to each sample's valid samples.

    ``fit="pad"``: a part keeps its samples, zero-padded to ``length`` (a longer part is cut at
    ``length``); ``fit="resample"``: each part is linearly resampled to ``length`` samples (time
    normalised, nothing cut). ``length`` defaults to ``T // k``: with equal fractions of a
    whole ``T``, exactly the parts of ``x.reshape(N, C, k, T // k)``.

    Deterministic (``random = False``): it applies in ``.eval()`` too; ``p`` does not apply.
    Output dtype: the input's. Params (``{"bounds": (N, k + 1)}``) replay like any op's.

    >>> import torch
    >>> x = torch.arange(8.0).reshape(1, 1, 8)
    >>> SplitSubstructures(2)(x)[0, :, 0].tolist()
    [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    >>> SplitSubstructures(2, length=4)(x, bounds=torch.tensor([[0, 1, 6]]))[0, :, 0].tolist()
    [[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]]
    """

    random = False

    def __init__(self, k: int = 4, fractions: Sequence[float] | None = None, length: int | None = None,
                 fit: str = "pad"):
        super().__init__(1.0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} must be an int >= 1 (parts per cycle; 4 for S1, systole, S2, diastole)")
        fractions = [1.0] * k if fractions is None else [float(f) for f in fractions]
        if len(fractions) != k or min(fractions) <= 0:
            raise ValueError(f"fractions={fractions!r} must be {k} positive numbers (their sum is the whole signal)")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ValueError(f"length={length!r} must be an int >= 1 (samples per part), or None for T // k")
        if fit not in FITS:
            raise ValueError(f"fit={fit!r} must be 'pad' (zero-pad each part) or 'resample' (stretch it to length)")
        self.k, self.fractions, self.length, self.fit = k, tuple(fractions), length, fit

    def width(self, t: int) -> int:
        return self.length if self.length is not None else max(1, t // self.k)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        n, c, t = shape
        return (n, self.k, c, self.width(t))

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        n, t = batch_shape[0], batch_shape[-1]
        return {"bounds": fraction_bounds(self.fractions, torch.full((n,), t, device=device))}

    def forward(self, x: Tensor, params: Params | None = None, generator: torch.Generator | None = None,
                return_params: bool = False, bounds: Tensor | None = None,
                lengths: Tensor | None = None) -> Any:
        """Split ``x``; ``bounds`` (per-sample boundaries) and ``lengths`` (valid samples) as in the class doc."""
        self.check_input(x)
        n, c, t = x.shape
        if params is None and bounds is None and lengths is None and self._equal_parts(t):
            out = x.reshape(n, c, self.k, t // self.k).transpose(1, 2).contiguous()  # no index to gather by
            return (out, {"bounds": self.bounds(x, None, None)}) if return_params else out
        if params is None:
            params = {"bounds": self.bounds(x, bounds, lengths)}
        out = self.apply(x, params)
        return (out, params) if return_params else out

    def _equal_parts(self, t: int) -> bool:
        """Whether the fixed fractions cut ``T`` into ``k`` whole parts of ``length``: a reshape."""
        return (self.fit == "pad" and len(set(self.fractions)) == 1 and t % self.k == 0
                and self.width(t) == t // self.k)

    def bounds(self, x: Tensor, bounds: Tensor | None, lengths: Tensor | None) -> Tensor:
        """The ``(N, k + 1)`` boundaries a call uses: ``bounds``, with the fractions where a row is unknown."""
        n, t = x.shape[0], x.shape[-1]
        valid = torch.full((n,), t, device=x.device) if lengths is None else lengths.to(x.device).clamp(0, t)
        fixed = fraction_bounds(self.fractions, valid)
        if bounds is None:
            return fixed
        bounds = bounds.to(device=x.device, dtype=torch.int64)
        if bounds.shape != (n, self.k + 1):
            raise ValueError(f"bounds has shape {tuple(bounds.shape)}; SplitSubstructures(k={self.k}) takes "
                             f"({n}, {self.k + 1}) boundaries per batch (the bake's cycle_bounds for k=4)")
        return torch.where(bounds[:, :1] < 0, fixed, bounds)

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        n, c, t = x.shape
        w = self.width(t)
        b = params["bounds"].clamp(0, t)
        start, size = b[:, :-1], (b[:, 1:] - b[:, :-1]).clamp(min=0)  # (N, K)
        step = torch.arange(w, device=x.device)
        if self.fit == "pad":
            index = start[..., None] + step  # (N, K, W)
            out = _gather(x, index.clamp(0, t - 1))
            return out.masked_fill(~(step < size[..., None])[:, :, None, :], 0)
        scale = (size.to(torch.float32) / w)[..., None]  # F.interpolate's align_corners=False map, per part
        pos = start[..., None] + ((step + 0.5) * scale - 0.5).clamp(min=0)
        last = (start + size - 1).clamp(min=0)[..., None].to(torch.float32)
        pos = torch.minimum(pos, last)
        left = pos.floor()
        i0 = left.long().clamp(0, t - 1)
        i1 = (i0 + 1).clamp(max=last.long()).clamp(0, t - 1)
        xf = x.to(torch.float32)
        y = torch.lerp(_gather(xf, i0), _gather(xf, i1), (pos - left)[:, :, None, :])
        return y.masked_fill((size == 0)[:, :, None, None], 0).to(x.dtype)

    def extra_repr(self) -> str:
        return f"k={self.k}, fractions={self.fractions}, length={self.length}, fit={self.fit!r}"


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """``out[n, k, c, w] = x[n, c, index[n, k, w]]``: one gather for every part of every sample."""
    n, c, _ = x.shape
    _, k, w = index.shape
    flat = x.gather(2, index.reshape(n, 1, k * w).expand(-1, c, -1))  # (N, C, K * W)
    return flat.reshape(n, c, k, w).transpose(1, 2)
