"""3-D ops on ``(N, C, D, H, W)`` volume batches: crop, flips, 90° rotations, intensity, noise, window.

Geometric ops (:class:`RandomCrop3d`, :class:`RandomFlip3d`, :class:`RandomRotate90`)
compute, per sample, which source voxel each output voxel reads, and read them all in
one advanced-indexing gather whose index tensors broadcast (``(N, 1, d, 1, 1)`` and the
like), so no index volume is built and the kernel count does not depend on the batch.
On a CPU, where reading the params costs no wait, they slice, flip or rotate one sample
at a time instead (:func:`per_volume`: the same values, 12-25x less time at 32^3-64^3).
They keep the dtype, int16 included: crop and flip a baked int16 CT before
:class:`IntensityWindow` turns it into float, and the gathers move half the bytes.

Spatial axes are numbered 0, 1, 2 for D, H, W. The intensity ops follow MONAI's
``RandScaleIntensity``/``RandShiftIntensity`` (``x * s + t``, one ``s`` and ``t`` per
sample) and ``RandGaussianNoise`` (the noise is part of the params, so a replay adds
the same noise); :class:`IntensityWindow` is ``ScaleIntensityRange(clip=True)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .base import (
    Device,
    Op,
    Params,
    applied_normal,
    blend,
    check_range,
    host_readable,
    lerp_range,
    per_sample,
    randint_from,
    restore_dtype,
    uniform,
)

_DTYPES = (torch.uint8, torch.int16, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _triple(size: int | Sequence[int], name: str) -> tuple[int, int, int]:
    t = (size,) * 3 if isinstance(size, int) else tuple(size)
    if len(t) != 3 or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in t):
        raise ValueError(f"{name}={size!r} must be a positive int or a (D, H, W) triple of them, e.g. 96")
    return t


def _axes(axes: Sequence[int], name: str, count: int | None = None) -> tuple[int, ...]:
    t = tuple(axes)
    if not t or any(a not in (0, 1, 2) for a in t) or len(set(t)) != len(t) or (count and len(t) != count):
        want = f"{count} distinct" if count else "distinct"
        raise ValueError(f"{name}={axes!r} must be {want} spatial axes among 0 (D), 1 (H), 2 (W)")
    return t


def gather(x: Tensor, d: Tensor, h: Tensor, w: Tensor) -> Tensor:
    """``out[n, c, i, j, k] = x[n, c, d[n, i, j, k], h[...], w[...]]``; the index tensors broadcast
    to ``(N, 1, d, h, w)`` (give each one with singleton dims where it does not vary)."""
    n = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1, 1, 1)
    c = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1, 1)
    return x[n, c, d, h, w]


#: Voxels per output sample from which a CPU op moves samples one at a time: below it the per-sample calls
#: cost more than the gather (a 4^3 crop of 64 samples: 251 against 58 us; at 8^3, 267 against 240 us).
PER_VOLUME_FROM = 4096


def one_at_a_time(params: Tensor, voxels: int) -> bool:
    """Whether a geometric op should use :func:`per_volume`: params readable for free, big enough samples,
    and at least one (an empty batch has nothing to stack; the gather gives its shape)."""
    return voxels >= PER_VOLUME_FROM and params.shape[0] > 0 and host_readable(params)


def per_volume(x: Tensor, moves: list[Callable[[Tensor], Tensor] | None], inplace: bool) -> Tensor:
    """Each volume ``x[i]`` through ``moves[i]`` (``None``: kept as it is), one sample at a time.

    On a CPU, where reading the params waits for nothing, a flip or rotation of one sample is
    ``torch.flip``/``torch.rot90`` and a copy: 0.2-0.3 ms for a 4 x 64^3 float32 batch against
    5.4 ms for the broadcast gather, which computes an index per voxel (benchmarks/monai_pipeline.py;
    64 x 32^3: 0.9 against 11.4 ms).
    With ``inplace`` the moved samples are written back into ``x`` and the others are not touched.
    """
    if inplace:
        for i, move in enumerate(moves):
            if move is not None:
                x[i] = move(x[i])
        return x
    return torch.stack([x[i] if move is None else move(x[i]) for i, move in enumerate(moves)])


def _cut(v: Tensor, box: tuple[slice, ...]) -> Tensor:
    return v[box]


def _along(idx: Tensor, axis: int) -> Tensor:
    """A per-sample ``(N, L)`` index along spatial ``axis`` as a broadcastable ``(N, 1, ., ., .)`` tensor."""
    shape = [idx.shape[0], 1, 1, 1, 1]
    shape[2 + axis] = idx.shape[1]
    return idx.view(shape)


class VolumeOp(Op):
    """Base of the volume ops: a 5-D batch, uint8/int16/float dtypes."""

    ndim = 5
    layout = "(N, C, D, H, W)"

    def check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor {self.layout}, got {type(x).__name__}; "
                            "convert with torch.as_tensor(x)")
        if x.dim() != 5:
            raise ValueError(f"{type(self).__name__} expects a batch of volumes {self.layout}, got shape "
                             f"{tuple(x.shape)}; add the batch or channel dimension with x.unsqueeze(...)")
        if x.dtype not in _DTYPES:
            raise TypeError(f"{type(self).__name__} expects uint8, int16 or floating volumes, got {x.dtype}; "
                            "convert with x.float()")


class RandomCrop3d(VolumeOp):
    """Crop a ``size`` (D, H, W) box at a random place in each volume; ``.eval()`` and samples that lose
    the ``p`` coin take the centred box (start ``(n - size) // 2``). Output dtype: the input's."""

    def __init__(self, size: int | Sequence[int], p: float = 1.0):
        super().__init__(p)
        self.size = _triple(size, "size")

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return (*tuple(shape)[:2], *self.size)

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        if any(s > n for s, n in zip(self.size, x.shape[2:])):
            raise ValueError(f"RandomCrop3d(size={self.size}) is larger than the volumes {tuple(x.shape[2:])}; "
                             "crop smaller, or pad at bake time (prebake build --volume-shape D H W)")

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        u = uniform((batch_shape[0], 4), device, generator)
        room = torch.tensor([n - s for n, s in zip(batch_shape[2:], self.size)], device=u.device)
        start = randint_from(u[:, 1:], room)
        centre = (room // 2).expand_as(start)
        apply = self.coin(u[:, 0])
        return {"apply": apply, "start": torch.where(apply[:, None], start, centre)}

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        start = params["start"]
        if one_at_a_time(start, x.shape[1] * self.size[0] * self.size[1] * self.size[2]):  # see per_volume
            (d, h, w) = self.size
            boxes = [(slice(None), slice(a, a + d), slice(b, b + h), slice(c, c + w)) for a, b, c in start.tolist()]
            return per_volume(x, [functools.partial(_cut, box=box) for box in boxes], inplace=False)
        idx = [_along(start[:, a, None] + torch.arange(s, device=x.device), a) for a, s in enumerate(self.size)]
        return gather(x, *idx)

    def eval_apply(self, x: Tensor) -> Tensor:
        starts = [(n - s) // 2 for n, s in zip(x.shape[2:], self.size)]
        return x[:, :, starts[0]:starts[0] + self.size[0], starts[1]:starts[1] + self.size[1],
                 starts[2]:starts[2] + self.size[2]]

    def extra_repr(self) -> str:
        return f"size={self.size}, p={self.p}"


class RandomFlip3d(VolumeOp):
    """Mirror each volume along each of ``axes`` (0 = D, 1 = H, 2 = W), each axis with its own coin of
    probability ``p`` per sample. Output dtype: the input's."""

    def __init__(self, axes: Sequence[int] = (0, 1, 2), p: float = 0.5):
        super().__init__(p)
        self.axes = _axes(axes, "axes")

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        u = uniform((batch_shape[0], len(self.axes)), device, generator)
        return {"flip": u < self.p}

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        if one_at_a_time(params["flip"], math.prod(x.shape[1:])):
            return per_volume(x, self._moves(params), inplace=False)
        idx = []
        for a in range(3):
            ar = torch.arange(x.shape[2 + a], device=x.device).expand(x.shape[0], -1)
            if a in self.axes:
                ar = torch.where(params["flip"][:, self.axes.index(a), None], x.shape[2 + a] - 1 - ar, ar)
            idx.append(_along(ar, a))
        return gather(x, *idx)

    def apply_inplace(self, x: Tensor, params: Params) -> Tensor:
        if not one_at_a_time(params["flip"], math.prod(x.shape[1:])):
            return self.apply(x, params)
        return per_volume(x, self._moves(params), inplace=True)

    def _moves(self, params: Params) -> list[Callable[[Tensor], Tensor] | None]:
        """Per sample, its flip over the (C, D, H, W) dims of the axes whose coin came up, or None."""
        dims = [[1 + a for a, f in zip(self.axes, row) if f] for row in params["flip"].tolist()]
        return [functools.partial(torch.flip, dims=d) if d else None for d in dims]

    def extra_repr(self) -> str:
        return f"axes={self.axes}, p={self.p}"


class RandomRotate90(VolumeOp):
    """Rotate each volume by k x 90° in the plane of spatial ``axes`` (default (1, 2): H, W), k drawn
    from 1, 2, 3 for the samples that win the ``p`` coin (``torch.rot90``'s direction). The plane must be
    square, so the shape is kept. Output dtype: the input's."""

    def __init__(self, axes: Sequence[int] = (1, 2), p: float = 0.5):
        super().__init__(p)
        self.axes = _axes(axes, "axes", count=2)

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        a, b = (x.shape[2 + i] for i in self.axes)
        if a != b:
            raise ValueError(f"RandomRotate90(axes={self.axes}) needs a square plane, the volumes have "
                             f"{a} x {b} there; crop it square first (RandomCrop3d or --volume-shape)")

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        u = uniform((batch_shape[0], 2), device, generator)
        apply = self.coin(u[:, 0])
        return {"apply": apply, "k": torch.where(apply, 1 + randint_from(u[:, 1], 2), 0)}

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        if one_at_a_time(params["k"], math.prod(x.shape[1:])):
            return per_volume(x, self._moves(params), inplace=False)
        a, b = self.axes
        size = x.shape[2 + a]
        ar = torch.arange(size, device=x.device)
        shape = [1, 1, 1, 1, 1]
        shape[2 + a] = size
        i = ar.view(shape)  # output coordinate along a
        shape[2 + a], shape[2 + b] = 1, size
        j = ar.view(shape)  # output coordinate along b
        k = per_sample(params["k"], 5)
        last = size - 1
        # torch.rot90(x, k, dims=(a, b)): k=1 reads (j, last-i), k=2 (last-i, last-j), k=3 (last-j, i)
        src_a = torch.where(k == 1, j, torch.where(k == 2, last - i, torch.where(k == 3, last - j, i)))
        src_b = torch.where(k == 1, last - i, torch.where(k == 2, last - j, torch.where(k == 3, i, j)))
        full = [torch.arange(n, device=x.device).view([1, 1] + [n if d == m else 1 for d in range(3)])
                for m, n in enumerate(x.shape[2:])]
        full[a], full[b] = src_a, src_b
        return gather(x, *full)

    def apply_inplace(self, x: Tensor, params: Params) -> Tensor:
        if not one_at_a_time(params["k"], math.prod(x.shape[1:])):
            return self.apply(x, params)
        return per_volume(x, self._moves(params), inplace=True)

    def _moves(self, params: Params) -> list[Callable[[Tensor], Tensor] | None]:
        """Per sample, ``torch.rot90`` by its k in the plane of the (C, D, H, W) dims of ``axes``, or None."""
        dims = (1 + self.axes[0], 1 + self.axes[1])
        return [functools.partial(torch.rot90, k=k, dims=dims) if k else None for k in params["k"].tolist()]

    def extra_repr(self) -> str:
        return f"axes={self.axes}, p={self.p}"


class RandomIntensity(VolumeOp):
    """``x * scale + shift`` with ``scale`` and ``shift`` drawn per sample from the (min, max) ranges
    (MONAI's RandScaleIntensity/RandShiftIntensity, in the volume's units). Output dtype: the input's
    (integers rounded and clipped)."""

    def __init__(self, scale: Sequence[float] | float = (0.9, 1.1), shift: Sequence[float] | float = (-0.1, 0.1),
                 p: float = 0.5):
        super().__init__(p)
        self.scale, self.shift = check_range(scale, "scale", low=0.0), check_range(shift, "shift")

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        u = uniform((batch_shape[0], 3), device, generator)
        apply = self.coin(u[:, 0])
        return {"apply": apply, "scale": torch.where(apply, lerp_range(u[:, 1], *self.scale), 1.0),
                "shift": torch.where(apply, lerp_range(u[:, 2], *self.shift), 0.0)}

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        work = x if x.dtype.is_floating_point else x.float()
        out = work * per_sample(params["scale"], 5).to(work.dtype) + per_sample(params["shift"], 5).to(work.dtype)
        return blend(params["apply"], restore_dtype(out, x.dtype), x)

    def apply_inplace(self, x: Tensor, params: Params) -> Tensor:
        if not x.dtype.is_floating_point:
            return self.apply(x, params)
        # samples without the coin have scale 1 and shift 0: x * 1 + 0 is x (-0.0 aside, which equals 0.0)
        return x.mul_(per_sample(params["scale"], 5).to(x.dtype)).add_(per_sample(params["shift"], 5).to(x.dtype))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, shift={self.shift}, p={self.p}"


class GaussianNoise3d(VolumeOp):
    """Add Gaussian noise of a standard deviation drawn per sample from ``std`` = (min, max), in the
    volume's units (MONAI's RandGaussianNoise). The noise is in the params, so a replay adds the same.
    On a CPU, only the samples with the coin draw noise. Output dtype: the input's (integers
    rounded and clipped)."""

    def __init__(self, std: Sequence[float] | float = (0.0, 0.1), p: float = 0.5):
        super().__init__(p)
        self.std = check_range(std, "std", low=0.0)

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        u = uniform((batch_shape[0], 2), device, generator)
        apply = self.coin(u[:, 0])
        return {"apply": apply, "std": torch.where(apply, lerp_range(u[:, 1], *self.std), 0.0),
                "noise": applied_normal(apply, batch_shape, device, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        std = per_sample(params["std"], 5)
        if x.dtype == torch.float32:
            return torch.addcmul(x, params["noise"], std)  # one pass: x + noise * std
        out = (x if x.dtype.is_floating_point else x.float()) + (params["noise"] * std).to(
            x.dtype if x.dtype.is_floating_point else torch.float32)
        return blend(params["apply"], restore_dtype(out, x.dtype), x)

    def apply_inplace(self, x: Tensor, params: Params) -> Tensor:
        if x.dtype != torch.float32:
            return self.apply(x, params)
        return x.addcmul_(params["noise"], per_sample(params["std"], 5))

    def extra_repr(self) -> str:
        return f"std={self.std}, p={self.p}"


class IntensityWindow(VolumeOp):
    """Clip to [``low``, ``high``] and map that range onto ``out`` = (a, b): deterministic, applies in eval too
    (MONAI's ``ScaleIntensityRange(low, high, a, b, clip=True)``). Integer volumes (a baked int16 CT)
    come out float32; float volumes keep their dtype."""

    random = False
    float_output = True

    def __init__(self, low: float, high: float, out: Sequence[float] = (0.0, 1.0)):
        super().__init__()
        if not float(low) < float(high):
            raise ValueError(f"IntensityWindow(low={low!r}, high={high!r}) needs low < high, e.g. (-1000, 1000)")
        self.low, self.high = float(low), float(high)
        self.out = check_range(out, "out")

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        # one pass from int16 to float32: bias + gain * x (a 0-dim float tensor promotes the int input), then
        # an in-place clamp (the map is monotonic, so clamping after equals clamping to [low, high] before);
        # 2.0x the samples/s of (x.float().clamp(low, high) - low) * gain + a on 8 x 96^3 int16 batches
        bias, gain = self._affine(self.output_dtype(x.dtype))
        return torch.add(bias, x, alpha=gain).clamp_(*self.out)

    def apply_inplace(self, x: Tensor, params: Params) -> Tensor:
        if not x.dtype.is_floating_point:
            return self.apply(x, params)  # int16 in, float32 out: a new tensor either way
        self.apply_(x)
        return x

    # -- as a Loader converter (prebake.load.convert): the same arithmetic, in place, chunk by chunk --

    def output_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """float32 for an integer volume; a float volume keeps its dtype."""
        return dtype if dtype.is_floating_point else torch.float32

    def apply_(self, x: Tensor) -> None:
        """``x`` (already cast to :meth:`output_dtype`) windowed in place, bit for bit as :meth:`apply`."""
        bias, gain = self._affine(x.dtype)
        torch.add(bias, x, alpha=gain, out=x).clamp_(*self.out)

    def _affine(self, dtype: torch.dtype) -> tuple[Tensor, float]:
        a, b = self.out
        gain = (b - a) / (self.high - self.low)
        return torch.tensor(a - self.low * gain, dtype=dtype), gain

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}, out={self.out}"

