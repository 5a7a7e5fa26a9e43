"""The seeds' own pipelines, rebuilt faithfully for side-by-side measurement.

The federated ViT workload (CIFAR-10) preprocesses offline with a
``preprocess_data.py`` that, for every image in turn, in one process:

    PIL image -> Resize(S) -> ToTensor() (float32 in [0, 1], CHW) -> raw np.memmap (float32)

prebake never depends on torchvision, so the
two torchvision steps are written with the same operations: ``Resize`` on a PIL
image is ``PIL.Image.resize`` with bilinear filtering; ``ToTensor`` is
``asarray / 255`` in float32, transposed to CHW.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def seed_preprocess_cifar(images_chw: np.ndarray, size: int, out_file: Path) -> int:
    """The federated ViT workload's preprocess loop over ``images_chw`` (uint8 N x 3 x 32 x 32); returns bytes."""
    n = len(images_chw)
    out = np.memmap(out_file, dtype=np.float32, mode="w+", shape=(n, 3, size, size))
    for i in range(n):
        img = Image.fromarray(np.ascontiguousarray(images_chw[i].transpose(1, 2, 0)))
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    out.flush()
    del out
    return n * 3 * size * size * 4
