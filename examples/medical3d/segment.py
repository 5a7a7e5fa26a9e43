"""Segmentation on volumes of many extents: balanced patches to train, a grid and stitching to infer, Dice per volume.

    python -m examples.medical3d.segment --out runs/medical3d-seg           # 24 synthetic volumes, 6 epochs
    python -m examples.medical3d.segment --volumes 8 --epochs 2 --out runs/medical3d-seg-quick   # a quick look

The volumes are synthetic int16 CT-like NIfTI files (``.nii.gz``, 40 to 72 voxels a side, each its own
extent) with a uint8 label map of bright lesions (spheres, class 1), listed in a MONAI-style data list.
One bake keeps every volume at its own shape and stores, per label map, the runs of each class
(``prebake.steps.FgBgIndices``). Training reads ``prebake.Patches(sampler="balanced")``: half the patches
centred on a lesion voxel, windowed to [0, 1] as they are read (``convert=``), flipped on the device with
the same random flips for image and label (one ``sample_params``, two ``apply``). Validation tiles each
held-out volume (``sampler="grid"``), stitches the predicted tiles back (``Patches.stitcher()``) and logs the
Dice of each volume; ``OUT/dice.csv`` holds them per epoch.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import prebake
from prebake.augment import IntensityWindow, RandomFlip3d

log = logging.getLogger(__name__)
PAD = {"image": -1024}  # air outside a volume, windowed like the air inside it
WINDOW = IntensityWindow(-200, 600)  # a soft-tissue window: body 0.3, lesions 0.68, air 0
FG_WEIGHT = torch.tensor([1.0, 10.0])  # lesions are about 2% of a patch: unweighted, "all background" is a minimum


@dataclass
class SegConfig:
    out: Path
    volumes: int = 24
    epochs: int = 6
    patch: int = 32
    per_item: int = 8
    batch: int = 8
    lr: float = 1e-2
    val_fraction: float = 0.25
    workers: int = 2
    seed: int = 0


def write_volumes(root: Path, n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """``n`` NIfTI volumes of 40 to 72 voxels a side, each with a label map of 1-3 lesions (+300 HU spheres)."""
    import nibabel as nib

    from prebake.synthetic_volumes import ct_phantom

    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        dims = tuple(int(d) for d in rng.integers(40, 73, 3))
        image, label = ct_phantom(dims, False, rng), np.zeros(dims, np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            r = int(rng.integers(4, 9))
            c = [int(rng.integers(d // 4 + r, 3 * d // 4 - r + 1)) for d in dims]  # inside the body
            z, y, x = np.ogrid[tuple(slice(-v, d - v) for v, d in zip(c, dims))]
            label[z * z + y * y + x * x <= r * r] = 1
        image[label == 1] += 300
        files.append({"image": str(root / f"ct{i:03d}.nii.gz"), "label_map": str(root / f"ct{i:03d}_seg.nii.gz")})
        nib.save(nib.Nifti1Image(image, np.eye(4)), files[-1]["image"])
        nib.save(nib.Nifti1Image(label, np.eye(4)), files[-1]["label_map"])
    return files


def read_pair(item: dict[str, Any]) -> dict[str, Any]:
    """A volume and its label map at their own bit depth, channel first."""
    import nibabel as nib

    return {"image": np.asanyarray(nib.load(item["image"]).dataobj)[None],
            "label_map": np.asanyarray(nib.load(item["label_map"]).dataobj).astype(np.uint8)[None]}


class TinyUNet3d(nn.Module):
    """Two levels: convolutions at full and half resolution, the coarse features upsampled and joined. No
    normalisation layers: with them (batch or group norm) the net fit one batch 10x slower here."""

    def __init__(self, width: int = 8, classes: int = 2):
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv3d(i, o, 3, padding=1), nn.ReLU(inplace=True))

        self.down, self.coarse = block(1, width), nn.Sequential(nn.MaxPool3d(2), block(width, 2 * width))
        self.up, self.head = block(3 * width, width), nn.Conv3d(width, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        fine = self.down(x)
        coarse = nn.functional.interpolate(self.coarse(fine), size=fine.shape[2:], mode="trilinear")
        return self.head(self.up(torch.cat([fine, coarse], 1)))


def train_epoch(model: nn.Module, loader: prebake.Loader, opt: torch.optim.Optimizer, flip: RandomFlip3d) -> float:
    model.train()
    losses = []
    for batch in loader:
        params = flip.sample_params(batch["image"].shape, batch["image"].device)  # one flip for image and label
        image, label = flip.apply(batch["image"], params), flip.apply(batch["label_map"], params)[:, 0].long()
        loss = nn.functional.cross_entropy(model(image), label, weight=FG_WEIGHT)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.inference_mode()
def dice_per_volume(model: nn.Module, cache: prebake.Cache, grid: prebake.Patches, batch: int) -> dict[int, float]:
    """Each volume of the grid predicted tile by tile, stitched back, and its Dice against its label map."""
    model.eval()
    stitcher, dice = grid.stitcher(), {}
    for b in prebake.Loader(grid, batch, shuffle=False, convert={"image": WINDOW}):
        for i in stitcher.add(model(b["image"]).softmax(1), b["item"], b["start"]):
            pred, truth = stitcher.pop(i).argmax(0).numpy() == 1, cache[i]["label_map"][0] == 1
            dice[i] = float(2 * (pred & truth).sum() / max(int(pred.sum() + truth.sum()), 1))
    return dice


def run(cfg: SegConfig) -> list[dict[str, Any]]:
    from prebake.integrations.monai import DataList
    from prebake.steps import FgBgIndices

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    files = write_volumes(cfg.out / "data", cfg.volumes, rng)
    cache = prebake.build(DataList(files), cfg.out / "cache", steps=[read_pair, FgBgIndices("label_map", (0, 1))],
                          workers=cfg.workers, progress=False)
    order = rng.permutation(len(cache))
    n_val = max(1, round(cfg.val_fraction * len(cache)))
    train = prebake.Patches(cache, "image", (cfg.patch,) * 3, cfg.per_item, sampler="balanced", label="label_map",
                            pos_fraction=0.5, pad_value=PAD, indices=np.sort(order[n_val:]), seed=cfg.seed)
    grid = prebake.Patches(cache, "image", (cfg.patch,) * 3, sampler="grid", overlap=0.25, pad_value=PAD,
                           columns=["image"], indices=np.sort(order[:n_val]))
    loader = prebake.Loader(train, cfg.batch, seed=cfg.seed, convert={"image": WINDOW})
    model, flip = TinyUNet3d(), RandomFlip3d()
    opt = torch.optim.Adam(model.parameters(), cfg.lr)
    rows = []
    for epoch in range(cfg.epochs):
        loss = train_epoch(model, loader, opt, flip)
        dice = dice_per_volume(model, cache, grid, cfg.batch)
        log.info("epoch %d: loss %.4f, Dice %s", epoch, loss, ", ".join(f"volume {i} {d:.3f}" for i, d in
                                                                         sorted(dice.items())))
        rows += [{"epoch": epoch, "item": i, "shape": "x".join(map(str, cache[i]["image"].shape[1:])),
                  "loss": loss, "dice": d} for i, d in sorted(dice.items())]
    with (cfg.out / "dice.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "item", "shape", "loss", "dice"])
        w.writeheader()
        w.writerows(rows)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.medical3d.segment", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="where the volumes, the cache and dice.csv go")
    for name, default in vars(SegConfig(Path("."))).items():
        if name != "out":
            p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run(SegConfig(**vars(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
