"""From a batch of a ragged 1-D signal column to the ``(N, C, T)`` float input of the signal ops.

The heart-sound workload cut or padded each recording to a fixed length in ``__getitem__``, one sample at a
time. A ``Loader(cache, pad=True)`` batch already holds the recordings zero-padded to the
longest one, with their lengths; :func:`crop_or_pad` cuts every sample to ``T`` in one
gather on the device (a random or centred window, zeros past the end of short signals) and
scales integer PCM to ``[-1, 1)``. Then ``prebake.augment``'s signal ops take over.

>>> import torch, prebake
>>> x = torch.tensor([[1000, 2000, 3000, 4000], [-16384, 8192, 0, 0]], dtype=torch.int16)
>>> prebake.crop_or_pad(x, torch.tensor([4, 2]), 3, crop="start")
tensor([[[ 0.0305,  0.0610,  0.0916]],
<BLANKLINE>
        [[-0.5000,  0.2500,  0.0000]]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ViewError

CROPS = ("random", "center", "start")


def crop_or_pad(x: Tensor, lengths: Tensor, length: int, *, crop: str = "random", scale: float | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Cut or zero-pad each signal of a padded batch to ``length`` samples: ``(N, C, length)`` float32.

    Signal ``n`` holds ``lengths[n]`` valid samples along axis 1 of ``x``. A longer signal is
    cut to a window of ``length`` samples: at a uniformly random start (``crop="random"``, one
    draw per sample from ``generator``), in the middle (``"center"``) or at the start
    (``"start"``). A shorter one is kept whole and zero-padded: at the end, or on both sides for
    ``"center"``. One gather for the whole batch, on ``x``'s device; nothing is read back to
    the host.

    Args:
        x: ``(N, T_max)`` (one channel) or ``(N, T_max, C)`` samples, as ``Loader(pad=True)`` gives
            a ragged signal column.
        lengths: ``(N,)`` valid samples per signal (the batch's ``<column>_lengths``).
        length: ``T``, the samples per output signal, at least 1.
        crop: ``"random"``, ``"center"`` or ``"start"``.
        scale: multiply by this; default: ``1 / 2**(bits - 1)`` for signed integer PCM (int16 ->
            ``[-1, 1)``), ``(x - 128) / 128`` for uint8 PCM (8-bit WAV), 1 for floats.
        generator: the source of the random starts.

    Returns:
        ``(N, C, length)`` float32.
    """
    if crop not in CROPS:
        raise ViewError(f"crop={crop!r} must be one of {CROPS}")
    if int(length) != length or length < 1:
        raise ViewError(f"length={length!r} must be an integer >= 1 (samples per output signal)")
    if x.ndim not in (2, 3) or lengths.shape != x.shape[:1]:
        raise ViewError(f"crop_or_pad takes x of shape (N, T) or (N, T, C) and lengths of shape (N,), got "
                        f"{tuple(x.shape)} and {tuple(lengths.shape)}; pass a Loader(pad=True) batch's column and "
                        "its <column>_lengths")
    samples = x if x.ndim == 3 else x[..., None]
    n, width, channels = samples.shape
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    spare = lengths - length  # negative for a signal shorter than the output
    if crop == "start" and width > 0:  # every window starts at 0: a slice, no index to build or gather
        keep = min(width, length)
        out = _to_float(samples[:, :keep], scale)  # a new tensor: the padding is zeroed in place
        out.masked_fill_((torch.arange(keep, device=x.device) >= lengths[:, None])[:, :, None], 0.0)
        out = out.transpose(1, 2)
        return F.pad(out, (0, length - keep)) if keep < length else out.contiguous()
    if crop == "random":
        u = torch.rand(n, device=x.device, generator=generator)
        start = (u * (spare.clamp(min=0) + 1)).long().clamp(max=spare.clamp(min=0))
    elif crop == "center":
        start = torch.div(spare, 2, rounding_mode="floor")  # negative: pad both sides
    else:
        start = torch.zeros_like(lengths)
    pos = start[:, None] + torch.arange(length, device=x.device)
    valid = (pos >= 0) & (pos < lengths[:, None])
    if width == 0:
        return torch.zeros(n, channels, length, device=x.device)
    index = pos.clamp(0, width - 1)[:, :, None].expand(-1, -1, channels)
    out = _to_float(samples.gather(1, index), scale)
    return torch.where(valid[:, :, None], out, 0.0).transpose(1, 2).contiguous()


def _to_float(x: Tensor, scale: float | None) -> Tensor:
    """``x`` scaled to float32, always a new tensor (never ``x`` itself): one cast, then in place."""
    out = x.to(torch.float32, copy=True)
    if scale is not None:
        return out.mul_(scale)
    if x.dtype == torch.uint8:
        return out.sub_(128).div_(128)
    if not x.dtype.is_floating_point and x.dtype != torch.bool:
        return out.div_(2.0 ** (torch.iinfo(x.dtype).bits - 1))
    return out
