"""The run's settings, parsed once from the command line into typed dataclasses.

Flag names are the talking-head workload's (``train.py``: ``--data_root``, ``--steps``, ``--batch_size``,
``--lr``, ``--mixed_precision``, ``--num_workers``, ``--wandb_project``, ``--cache_dir``,
``--force_preprocess``) where it had one. ``--config tiny`` is the configuration the tests
run; ``--config default`` the one the bench runs.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DATA_PATHS = ("original", "optimised", "prebake")
#: The audio encoder's input rate, as FLOAT's wav2vec2 (clips at another rate are bad items of the bake).
SAMPLE_RATE = 16000


@dataclass
class Data:
    """The synthetic clips (ignored with ``--data``): how many, their lengths in frames, size and rate."""

    clips: int = 200
    frames: tuple[int, int] = (40, 120)
    size: int = 64  # H = W of the frames
    fps: int = 25
    speakers: int = 8


@dataclass
class Encoders:
    """The two frozen encoders (stand-ins for FLOAT's wav2vec2 and motion auto-encoder) and the bake's batches."""

    audio: Path | None = None  # a state-dict file; None: write a random-init one under OUT/encoders
    motion: Path | None = None
    audio_dim: int = 32
    motion_dim: int = 64
    width: int = 32  # channels of the conv layers
    stage_batch: int = 32  # clips per call of an encoder at bake time
    motion_max_rows: int | None = 256  # and at most this many frames per call of the motion encoder (bench.py)
    stage_device: str | None = None  # where the encoders run at bake time; None: CUDA when there is one
    stage_dtype: str | None = None  # their autocast there: None (float32), "bf16" or "fp16"


@dataclass
class Train:
    steps: int = 300
    batch_size: int = 8  # the seed's
    lr: float = 1e-3
    window: int = 16  # frames per sample; the previous window is the motion context
    stride: int = 4  # frames between the starts of consecutive windows of a clip
    hidden: int = 128
    num_workers: int = 2  # DataLoader workers of the original and optimised paths (the seed's 4; 2 cores here)
    mixed_precision: str = "no"  # no | bf16 | fp16: autocast of the training step
    seed: int = 0


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    encoders: Encoders = field(default_factory=Encoders)
    train: Train = field(default_factory=Train)
    data_path: str = "prebake"
    data_dir: Path | None = None  # real clips, root/<clip>/video.mp4 + audio.wav; None: synthetic ones
    out: Path = Path("runs/talking_head")
    cache_dir: Path | None = None  # None: OUT/cache
    force_preprocess: bool = False
    wandb_project: str = "talking-head"  # the TensorBoard run's name (wandb is not used)
    device: str = "auto"

    @property
    def cache_root(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.out / "cache"

    @property
    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def tiny() -> Config:
    """What the tests run: 12 clips of 24-40 frames at 32 x 32, 40 steps."""
    return Config(data=Data(clips=12, frames=(24, 40), size=32, speakers=3),
                  encoders=Encoders(audio_dim=16, motion_dim=16, width=8, stage_batch=4),
                  train=Train(steps=40, batch_size=8, window=8, stride=2, hidden=32, num_workers=0, lr=3e-3))


PRESETS = {"default": Config, "tiny": tiny}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.talking_head",
                                description="Talking-head training (FLOAT, small stand-in models) fed "
                                "by the seed's original Dataset, its optimised one, or prebake.")
    a = p.add_argument
    a("--config", choices=sorted(PRESETS), default="default", help="sizes of the data and models (tiny: the tests')")
    a("--data", "--data_root", dest="data", type=Path,
      help="real clips, DIR/<clip>/video.mp4 + audio.wav (16 kHz); default: synthetic clips under OUT/clips")
    a("--data_path", choices=DATA_PATHS, default="prebake",
      help="original: encoders in __getitem__; optimised: the seed's preprocess-into-memory; prebake")
    a("--out", type=Path, default=Path("runs/talking_head"), help="logs, encoders, synthetic clips")
    a("--cache_dir", type=Path, help="where the bake goes (prebake: CACHE_DIR/prebake; optimised: "
      "CACHE_DIR/optimised.pt); default OUT/cache")
    a("--force_preprocess", action="store_true", help="rebuild the cache (prebake: force=True; not needed: "
      "the fingerprint rebuilds when the clips, the encoders or the code change)")
    a("--audio_encoder", type=Path, help="the audio encoder's state dict (torch.save); default: a random-init one")
    a("--motion_encoder", type=Path, help="the motion encoder's state dict; default: a random-init one")
    a("--steps", type=int, help="training steps (0: bake, and train no step)")
    a("--batch_size", type=int)
    a("--lr", type=float)
    a("--mixed_precision", choices=["no", "bf16", "fp16"])
    a("--num_workers", type=int, help="DataLoader workers of the original and optimised paths")
    a("--window", type=int, help="frames per training window (the previous window is its context)")
    a("--wandb_project", help="the TensorBoard run's name (wandb is not used; the CSV has every figure)")
    a("--device", default="auto", help="auto: CUDA when there is one")
    a("--seed", type=int)
    return p


def parse_args(argv: Sequence[str] | None = None) -> Config:
    ns = parser().parse_args(argv)
    cfg = PRESETS[ns.config]()
    train = {k: getattr(ns, k) for k in ("steps", "batch_size", "lr", "mixed_precision", "num_workers", "window",
                                         "seed") if getattr(ns, k) is not None}
    for key, value in train.items():
        if isinstance(value, int) and key != "seed" and value < (0 if key in ("num_workers", "steps") else 1):
            parser().error(f"--{key} {value}: give a positive number")
    cfg.train = dataclasses.replace(cfg.train, **train)
    cfg.encoders = dataclasses.replace(cfg.encoders, audio=ns.audio_encoder, motion=ns.motion_encoder)
    cfg.data_path, cfg.data_dir, cfg.out, cfg.cache_dir = ns.data_path, ns.data, ns.out, ns.cache_dir
    cfg.force_preprocess, cfg.device = ns.force_preprocess, ns.device
    if ns.wandb_project:
        cfg.wandb_project = ns.wandb_project
    return cfg
