"""MixUp and CutMix: mix each sample with a random partner, with a per-sample λ.

``mix(x, y)`` mixes a batch and its labels in one call: soft targets
``(N, num_classes)``, or ``(y_a, y_b, lam)`` for ``lam * loss(out, y_a) +
(1 - lam) * loss(out, y_b)`` with ``labels="pair"``. ``mix(x)`` mixes the batch
alone, and ``mix.targets(y, params)`` the labels of a call that returned ``params``::

    mix = CutMix(alpha=1.0, num_classes=10)
    images, soft = mix(images, labels)
    images, soft, params = mix(images, labels, return_params=True)
    again, soft2 = mix(images_2, labels, params)     # replays the same mixing

λ is drawn per sample from Beta(alpha, alpha). ``torch.distributions.Beta`` takes
no ``generator``, so :func:`beta` builds it from two Gamma draws, each by
Marsaglia and Tsang's method with a fixed number of proposals per sample (no
rejection loop, so no host sync).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Device, Op, Params, check_tensor, normal, per_sample, restore_dtype, to_float32, uniform
from .image import box_mask

_PROPOSALS = 8  # each Marsaglia-Tsang proposal is accepted with probability > 0.95: all 8 fail < 1e-10


def gamma(shape_k: float, n: int, device: Device, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws from Gamma(shape_k, 1) (Marsaglia & Tsang 2000), vectorised over fixed proposals.

    For ``shape_k < 1`` it draws Gamma(shape_k + 1) and multiplies by ``U ** (1 / shape_k)``.
    """
    k = shape_k + 1.0 if shape_k < 1.0 else shape_k
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    z = normal((n, _PROPOSALS), device, generator)
    u = uniform((n, _PROPOSALS + 1), device, generator)
    v = (1.0 + c * z) ** 3
    ok = (v > 0) & (torch.log(u[:, 1:]) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-30)))
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
    g = torch.where(ok.any(dim=1), (d * v).gather(1, first).squeeze(1), d)  # d: the mode, if all 8 fail
    if shape_k < 1.0:
        g = g * u[:, 0] ** (1.0 / shape_k)
    return g


def beta(alpha: float, n: int, device: Device, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws from Beta(alpha, alpha) as ``G1 / (G1 + G2)``, from ``generator``."""
    if alpha == 1.0:
        return uniform((n,), device, generator)  # Beta(1, 1) is uniform
    g1, g2 = gamma(alpha, n, device, generator), gamma(alpha, n, device, generator)
    return g1 / (g1 + g2).clamp_min(1e-30)


class _Mix(Op):
    """Shared parts: λ and partner sampling, label mixing, the ``target=`` convenience."""

    per_sample = False  # a sample's output reads its partner's

    def __init__(self, alpha: float, num_classes: int | None, labels: str, p: float):
        super().__init__(p)
        name = type(self).__name__
        if alpha <= 0:
            raise ValueError(f"alpha={alpha!r} must be > 0 (Beta(alpha, alpha)); 1.0 draws λ uniformly")
        if labels not in ("soft", "pair"):
            raise ValueError(f"labels={labels!r} must be 'soft' (N, num_classes) or 'pair' (y_a, y_b, lam)")
        if labels == "soft" and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                 or num_classes < 1):
            raise ValueError(f"{name}(labels='soft') one-hots the labels, so it needs the number of classes: "
                             f"{name}(num_classes=10), or {name}(labels='pair') for (y_a, y_b, lam); "
                             f"got num_classes={num_classes!r}")
        self.alpha, self.num_classes, self.labels = float(alpha), num_classes, labels

    def _lam_and_partner(self, n: int, device: Device, generator: torch.Generator | None,
                         extra: int = 0) -> Params:
        """The coin, λ, a partner permutation, and ``extra`` more uniforms per sample (under "extra")."""
        u = uniform((n, 2 + extra), device, generator)
        apply = self.coin(u[:, 0])
        lam = torch.where(apply, beta(self.alpha, n, device, generator), 1.0)
        params = {"apply": apply, "lam": lam, "partner": u[:, 1].argsort()}  # argsort of uniforms: a permutation
        return params | ({"extra": u[:, 2:]} if extra else {})

    def targets(self, y: Tensor, params: Params) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Mix labels ``y`` (class ids (N,) or soft (N, K)) like the images of the call that gave ``params``."""
        lam, partner = params["lam"], params["partner"]
        if self.labels == "pair":
            return y, y[partner], lam
        if not y.is_floating_point():
            if self.num_classes is None:
                raise ValueError(f"{type(self).__name__}(labels='soft') needs num_classes to one-hot integer "
                                 "labels; pass num_classes=..., or labels='pair'")
            y = F.one_hot(y.long(), self.num_classes).float()
        lam = per_sample(lam, y.dim()).to(y.dtype)
        return torch.lerp(y[partner], y, lam)

    def forward(self, x: Tensor, *args: Any, target: Tensor | None = None, **kwargs: Any):
        """``mix(x, y[, params])`` -> ``(x, mixed y[, params])``; ``mix(x[, params])`` as :meth:`Op.forward`.

        A tensor second argument is the labels (also ``target=y``); the arguments after it
        are ``params``, ``generator`` and ``return_params``, as for every op.
        """
        if args and isinstance(args[0], Tensor):
            if target is not None:
                raise TypeError(f"{type(self).__name__} got the labels twice: as the second argument and as target=")
            target, args = args[0], args[1:]
        return self._forward(x, *args, target=target, **kwargs)

    def _forward(self, x: Tensor, params: Params | None = None, generator: torch.Generator | None = None,
                 return_params: bool = False, *, target: Tensor | None = None) -> Any:
        if target is None:
            return super().forward(x, params, generator, return_params)
        if not isinstance(target, Tensor):
            raise TypeError(f"{type(self).__name__} target must be a tensor of labels, got "
                            f"{type(target).__name__}; convert with torch.as_tensor(y)")
        if not self.training:
            params = self.neutral_params(x.shape[0], x.device)
            return (x, self.targets(target, params), params) if return_params else (x, self.targets(target, params))
        out, params = super().forward(x, params, generator, return_params=True)
        y = self.targets(target, params)
        return (out, y, params) if return_params else (out, y)

    @staticmethod
    def neutral_params(n: int, device: Device) -> Params:
        """No mixing: λ = 1 and every sample is its own partner (eval)."""
        return {"apply": torch.zeros(n, dtype=torch.bool, device=device),
                "lam": torch.ones(n, device=device), "partner": torch.arange(n, device=device)}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, num_classes={self.num_classes}, labels={self.labels!r}, p={self.p}"


class MixUp(_Mix):
    """``lam * x + (1 - lam) * x[partner]`` with per-sample λ ~ Beta(alpha, alpha) (Zhang et al. 2018).

    Works on any ``(N, ...)`` batch (images or signals). Computes in float32;
    output dtype: the input's (uint8 rounded). See the module docstring for labels.

    ``alpha``: λ ~ Beta(alpha, alpha) (0.2 by default, the paper's ImageNet setting).
    ``num_classes``: for ``labels="soft"``, the width of the one-hot targets (required).
    ``labels``: ``"soft"`` gives (N, num_classes) targets, ``"pair"`` gives (y_a, y_b, lam).
    """

    def __init__(self, alpha: float = 0.2, num_classes: int | None = None, labels: str = "soft", p: float = 1.0):
        super().__init__(alpha, num_classes, labels, p)

    def check_input(self, x: Tensor) -> None:
        check_tensor(x, x.dim() if isinstance(x, Tensor) and x.dim() >= 2 else 2, "(N, ...)", "MixUp")

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        return self._lam_and_partner(batch_shape[0], device, generator)

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        xf = to_float32(x)
        mixed = torch.lerp(xf[params["partner"]], xf, per_sample(params["lam"], x.dim()))
        return torch.where(per_sample(params["apply"], x.dim()), restore_dtype(mixed, x.dtype), x)


class CutMix(_Mix):
    """Paste a box of the partner into each image (Yun et al. 2019); ``(N, C, H, W)``.

    The box covers a fraction ``1 - λ`` of the image, λ ~ Beta(alpha, alpha), centred
    uniformly and clipped to the image; λ is then corrected to the area actually
    kept, so the labels match the pixels. Output dtype: the input's.

    ``alpha``: λ ~ Beta(alpha, alpha) (1.0 by default: uniform, the paper's setting).
    ``num_classes`` and ``labels``: as for :class:`MixUp`.
    """

    def __init__(self, alpha: float = 1.0, num_classes: int | None = None, labels: str = "soft", p: float = 1.0):
        super().__init__(alpha, num_classes, labels, p)

    def sample_params(self, batch_shape: Sequence[int], device: Device,
                      generator: torch.Generator | None = None) -> Params:
        n, height, width = batch_shape[0], batch_shape[-2], batch_shape[-1]
        params = self._lam_and_partner(n, device, generator, extra=2)
        centre, cut = params.pop("extra"), torch.sqrt(1.0 - params["lam"])
        sides = []
        for axis, length in enumerate((height, width)):  # two axes, not samples
            mid, half = centre[:, axis] * length, torch.round(cut * length) / 2
            lo = torch.floor(mid - half).clamp_min(0)
            sides.append((lo, torch.floor(mid + half).clamp_max(length) - lo))
        (top, h), (left, w) = sides
        params["box"] = torch.stack([top, left, h, w], dim=1)
        params["lam"] = 1.0 - h * w / (height * width)  # the area actually kept
        return params

    def apply(self, x: Tensor, params: Params) -> Tensor:  # type: ignore[override]
        mask = box_mask(params["box"], x.shape[-2], x.shape[-1])[:, None]
        return torch.where(mask, x[params["partner"]], x)
