"""Where the crops of :class:`~prebake.Crops` lie: random-resized boxes for training, centre boxes for evaluation.

A box is ``(top, left, height, width)`` in the item's pixels, whole numbers, inside the image.

Training reimplements torchvision's ``RandomResizedCrop.get_params`` (torchvision/transforms/transforms.py):
up to 10 attempts, each an area uniform in ``scale`` times the image's and an aspect ratio log-uniform in
``ratio``, ``w = round(sqrt(area * r))``, ``h = round(sqrt(area / r))``; the first attempt that fits is placed
uniformly; when none fits, the whole image, clamped to the ratio range and centred (at least one pixel a
side: torchvision's fallback is an empty box for an image 1 pixel high and a ratio range under 1/2). Every
number comes from ``(seed, epoch, item)`` through ``load/draws.py``, vectorised over a batch, so a resumed or
sharded epoch draws the same boxes and no generator state is kept.

Evaluation: the shorter side scaled to ``round(size / 0.875)`` and the centre ``size x size`` kept
(torchvision's ``Resize(256) + CenterCrop(224)`` for 224), written as a box of the original: the centred
square of side ``round(min(H, W) * size / round(size / 0.875))``.
"""

from __future__ import annotations

import numpy as np

from .draws import below, uniforms

ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params
EVAL_FRACTION = 0.875  # 224 of 256: the shorter side is resized to round(size / 0.875) before the centre crop
_NONE_FITS = 2.0**62  # a side larger than any image, still an int64
_S_SCALE, _S_RATIO, _S_TOP, _S_LEFT = 0, ATTEMPTS, 2 * ATTEMPTS, 2 * ATTEMPTS + 1  # uniform streams


def train_boxes(dims: np.ndarray, scale: tuple[float, float], ratio: tuple[float, float], seed: int, epoch: int,
                item: np.ndarray, draw: np.ndarray | None = None) -> np.ndarray:
    """``(B, 4)`` int64 boxes ``(top, left, h, w)`` for items of ``dims`` ``(B, 2)`` (height, width); ``draw``: the
    how-manieth appearance of the item (0 unless ``indices=`` repeats it)."""
    n = len(item)
    if not n:
        return np.zeros((0, 4), np.int64)
    draw = np.zeros(n, np.int64) if draw is None else np.asarray(draw, np.int64)
    height, width = dims[:, 0].astype(np.float64), dims[:, 1].astype(np.float64)
    u_scale = np.stack([uniforms(seed, epoch, item, draw, _S_SCALE + a) for a in range(ATTEMPTS)], 1)
    u_ratio = np.stack([uniforms(seed, epoch, item, draw, _S_RATIO + a) for a in range(ATTEMPTS)], 1)
    area = (height * width)[:, None] * (scale[0] + u_scale * (scale[1] - scale[0]))
    lo, hi = np.log(ratio[0]), np.log(ratio[1])
    aspect = np.exp(lo + u_ratio * (hi - lo))
    # rint rounds half to even, as Python's round does; sides past any image (ratio 1e300) are capped before the cast
    w = np.rint(np.minimum(np.sqrt(area * aspect), _NONE_FITS)).astype(np.int64)
    h = np.rint(np.minimum(np.sqrt(area / aspect), _NONE_FITS)).astype(np.int64)
    fits = (w > 0) & (w <= dims[:, 1:2]) & (h > 0) & (h <= dims[:, 0:1])
    first = np.argmax(fits, axis=1)
    rows = np.arange(n)
    found = fits[rows, first]
    h, w = np.where(found, h[rows, first], 0), np.where(found, w[rows, first], 0)
    fh, fw = _fallback(dims, ratio)
    h, w = np.where(found, h, fh), np.where(found, w, fw)
    top = below(uniforms(seed, epoch, item, draw, _S_TOP), dims[:, 0] - h + 1)
    left = below(uniforms(seed, epoch, item, draw, _S_LEFT), dims[:, 1] - w + 1)
    top, left = np.where(found, top, (dims[:, 0] - h) // 2), np.where(found, left, (dims[:, 1] - w) // 2)
    return np.stack([top, left, h, w], 1).astype(np.int64)


def _fallback(dims: np.ndarray, ratio: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's fallback: the whole image, cut to the nearest end of the ratio range (a centre crop)."""
    height, width = dims[:, 0], dims[:, 1]
    in_ratio = width / height
    lo, hi = min(ratio), max(ratio)
    narrow, wide = in_ratio < lo, in_ratio > hi
    h = np.where(narrow, np.rint(np.minimum(width / lo, height)), height).astype(np.int64)
    w = np.where(wide, np.rint(np.minimum(height * hi, width)), width).astype(np.int64)
    return np.clip(h, 1, height), np.clip(w, 1, width)


def eval_boxes(dims: np.ndarray, size: int) -> np.ndarray:
    """``(B, 4)`` centre boxes: what ``Resize(round(size / 0.875))`` then ``CenterCrop(size)`` keeps."""
    short = np.minimum(dims[:, 0], dims[:, 1])
    side = np.clip(np.rint(short * size / round(size / EVAL_FRACTION)).astype(np.int64), 1, short)
    top, left = (dims[:, 0] - side) // 2, (dims[:, 1] - side) // 2
    return np.stack([top, left, side, side], 1).astype(np.int64)
