"""The clips (synthetic talking heads, or ``--data DIR``), their bake, and the prebake data path.

A synthetic clip is a speaker's face whose mouth opens with the loudness of its speech: a
real ``video.mp4`` (H.264 through PyAV) and an ``audio.wav`` (16-bit PCM, 16 kHz) in
``root/<clip>/``, the layout ``prebake``'s video source reads. The bake decodes every clip
in the worker processes, counts its frames (:func:`add_num_frames`), runs both frozen
encoders as batched stages in the building process, and keeps only their outputs:
``motion`` (T, motion_dim) and ``w_audio`` (T, audio_dim) per clip, and ``reference``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.errors import BadItemError
from prebake.sources.video import write_video

from .config import SAMPLE_RATE, Config, Data
from .encoders import AudioEncoder, MotionEncoder, stages

#: What training reads of the cache: one gather each per batch (their ``_context`` rows come in the same gather).
COLUMNS = ["motion", "w_audio", "reference"]


def speech(n_frames: int, fps: int, pitch: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(int16 samples at 16 kHz, mouth opening per frame in [0, 1]): syllables of a voiced tone."""
    hop = SAMPLE_RATE // fps
    t = np.arange(n_frames * hop) / SAMPLE_RATE
    centres = np.cumsum(rng.uniform(0.12, 0.35, size=int(n_frames / fps / 0.12) + 2))
    widths, loud = rng.uniform(0.03, 0.07, len(centres)), rng.uniform(0.3, 1.0, len(centres))
    frame_t = (np.arange(n_frames) + 0.5) / fps
    envelope = lambda x: (loud * np.exp(-(((x[:, None] - centres) / widths) ** 2))).max(axis=1)  # noqa: E731
    phase = 2 * np.pi * pitch * (t + 0.003 * np.sin(2 * np.pi * 3 * t))
    voice = sum(np.sin(h * phase) / h for h in range(1, 5))
    x = 0.35 * envelope(t) * voice + 0.005 * rng.standard_normal(len(t))
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16), envelope(frame_t)


def face(opening: np.ndarray, size: int, speaker: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, 3, size, size): a face that sways a little, its mouth open by ``opening`` per frame."""
    n = len(opening)
    palette = np.random.default_rng(1000 + speaker)
    bg, skin = palette.integers(0, 120, 3), palette.integers(150, 255, 3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = np.arange(n)[:, None, None] / 25
    cx = 0.5 + 0.04 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3))
    cy = 0.5 + 0.02 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6.3))
    head = ((xx - cx) / 0.3) ** 2 + ((yy - cy) / 0.38) ** 2 < 1
    eyes = np.minimum(((xx - cx + 0.11) ** 2 + (yy - cy + 0.1) ** 2), ((xx - cx - 0.11) ** 2 + (yy - cy + 0.1) ** 2))
    mouth = ((xx - cx) / 0.12) ** 2 + ((yy - cy - 0.17) / (0.01 + 0.09 * opening[:, None, None])) ** 2 < 1
    img = np.where(head[..., None], skin, bg).astype(np.float32)
    img[eyes < 0.0012] = 20
    img[mouth & head] = (110, 20, 30)
    return np.ascontiguousarray(img.transpose(0, 3, 1, 2).clip(0, 255).astype(np.uint8))


def write_synthetic(root: Path, d: Data, seed: int = 0) -> Path:
    """``root/<clip>/video.mp4`` + ``audio.wav`` for ``d.clips`` clips of ``d.frames`` frames (uniform)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    for i in range(d.clips):
        speaker = i % d.speakers
        n = int(rng.integers(d.frames[0], d.frames[1] + 1))
        audio, opening = speech(n, d.fps, 100 + 20 * speaker, rng)
        clip = root / f"speaker{speaker:02d}_clip{i:04d}"
        clip.mkdir(parents=True, exist_ok=True)
        sf.write(clip / "audio.wav", audio, SAMPLE_RATE, subtype="PCM_16")
        write_video(clip / "video.mp4", face(opening, d.size, speaker, rng), d.fps)
    return root


def add_num_frames(item: dict[str, Any]) -> dict[str, Any]:
    """Per clip, in the bake's workers: its frame count (the audio encoder's ``seq_len``). A clip without audio,
    or with audio at another rate than the encoder's, is a bad item with that reason."""
    if "audio" not in item:
        raise BadItemError("has no audio file; the audio encoder needs one per clip (DIR/<clip>/audio.wav)")
    if int(item["sample_rate"]) != SAMPLE_RATE:
        raise BadItemError(f"audio at {int(item['sample_rate'])} Hz; the audio encoder takes {SAMPLE_RATE} Hz: "
                           f"resample the WAV files (sox in.wav -r {SAMPLE_RATE} out.wav)")
    item["num_frames"] = np.int64(len(item["frames"]))
    return item


def bake(root: Path, cfg: Config, audio: AudioEncoder, motion: MotionEncoder, workers: int | None = None,
         out: Path | None = None, **settings: Any) -> prebake.Cache:
    """Decode every clip and run both encoders once (a no-op while the clips, encoders and code are unchanged)."""
    steps = [add_num_frames, *stages(audio, motion, cfg.encoders)]
    return prebake.build(root, out or cfg.cache_root / "prebake", steps, kind="video", force=cfg.force_preprocess,
                         workers=workers, progress=False, **settings)


def dataset_version(cache: prebake.Cache) -> str:
    """The cache's fingerprint digest: what the seed logged to wandb as ``dataset_version``."""
    return str(cache.manifest["fingerprint"]["digest"])


def windows(cache: prebake.Cache, cfg: Config) -> prebake.Windows:
    """One sample per window of ``train.window`` frames, with the previous window's rows as context."""
    t = cfg.train
    return prebake.Windows(cache, "motion", t.window, t.stride, columns=COLUMNS, context=t.window,
                           require_context=True)


class PrebakeBatches:
    """Epochs of ``prebake.Loader`` batches of windows: one gather per column per batch."""

    def __init__(self, cache: prebake.Cache, cfg: Config, device: str):
        self.windows = windows(cache, cfg)
        self.loader = prebake.Loader(self.windows, cfg.train.batch_size, seed=cfg.train.seed, drop_last=True,
                                     device=device)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        self.loader.set_epoch(epoch)
        return iter(self.loader)
