"""The two frozen encoders, small conv stand-ins for FLOAT's, and the stages that bake them.

- :class:`AudioEncoder` (for FLOAT's wav2vec2): an int16 waveform at 16 kHz -> one feature
  row per video frame, resampled to the clip's frame count as FLOAT's
  ``audio_encoder.inference(audio, seq_len=num_frames)`` does;
- :class:`MotionEncoder` (for FLOAT's motion auto-encoder): one latent per frame.

Both take and return dicts of batched tensors, so each is a ``prebake.Stage`` as it is; the
seed's paths call them one clip at a time (:meth:`AudioEncoder.inference`,
:meth:`MotionEncoder.encode`). They are loaded from local state-dict files
(``--audio_encoder``, ``--motion_encoder``); without one, a random-init encoder is written
to ``OUT/encoders/`` once and loaded from there.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import prebake

from .config import Config, Encoders

log = logging.getLogger("examples.talking_head")
#: The audio encoder's convolutions: (kernel, stride) each; one feature per 80 samples (5 ms at 16 kHz).
AUDIO_CONVS = ((10, 5), (8, 4), (8, 4))


class AudioEncoder(nn.Module):
    """``{"audio": int16 (B, S) zero-padded, "audio_lengths", "num_frames"}`` -> ``w_audio`` (B, frames, dim).

    Each clip's features come from its own samples only (the convolutions see the zeros
    after a clip's end, never another clip), and are resampled linearly to its own frame
    count: a clip's output does not depend on the other clips of its batch.
    """

    def __init__(self, dim: int = 32, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for k, s in AUDIO_CONVS:
            layers += [nn.Conv1d(channels, width, k, stride=s), nn.GELU()]
            channels = width
        self.net = nn.Sequential(*layers, nn.Conv1d(width, dim, 1))
        self.stride = 1
        self.field = 1  # the receptive field, in samples
        for k, s in AUDIO_CONVS:
            self.field += (k - 1) * self.stride
            self.stride *= s

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["audio"].float()[:, None] / 32768
        if x.shape[-1] < self.field:
            x = F.pad(x, (0, self.field - x.shape[-1]))
        feats = self.net(x)  # (B, dim, positions)
        nf = batch["num_frames"].long()
        valid = ((batch["audio_lengths"].long() - self.field) // self.stride + 1).clamp(1, feats.shape[-1])
        k = torch.arange(int(nf.max()), device=x.device, dtype=torch.float64)[None]
        pos = k * (valid - 1)[:, None] / (nf - 1).clamp_min(1)[:, None]  # the clip's features over its frames
        lo = pos.floor().long().clamp(max=feats.shape[-1] - 1)
        hi = torch.minimum(lo + 1, (valid - 1)[:, None])
        w = (pos - lo).float()[:, None]
        take = lambda i: feats.gather(2, i[:, None].expand(-1, feats.shape[1], -1))  # noqa: E731
        out = (1 - w) * take(torch.minimum(lo, (valid - 1)[:, None])) + w * take(hi)
        return {"w_audio": out.transpose(1, 2).contiguous(), "w_audio_lengths": nf}

    def inference(self, audio: torch.Tensor, seq_len: int) -> torch.Tensor:
        """The seed's call: one clip's int16 samples ``(S,)`` -> ``(seq_len, dim)``."""
        out = self({"audio": audio[None], "audio_lengths": torch.tensor([len(audio)], device=audio.device),
                    "num_frames": torch.tensor([seq_len], device=audio.device)})
        return out["w_audio"][0]


class MotionEncoder(nn.Module):
    """``{"frames": uint8 (N, 3, H, W)}`` -> ``motion`` (N, dim): one latent per frame."""

    def __init__(self, dim: int = 64, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w // 2, 4, 2, 1), nn.GELU(), nn.Conv2d(w // 2, w, 4, 2, 1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.GELU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * w, dim))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"motion": self.encode(batch["frames"])}

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """The seed's ``_extract_motion_latent``: frames ``(N, 3, H, W)`` uint8 -> ``(N, dim)``."""
        return self.net(frames.float() / 255)


class Reference(nn.Module):
    """A clip's reference motion: the latent of its first frame (the seed's ``reference_motion``)."""

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"reference": batch["motion"][:, 0]}


def load_encoders(cfg: Config) -> tuple[AudioEncoder, MotionEncoder]:
    """Both encoders from their state-dict files (written, random-init, when none was given), frozen."""
    e = cfg.encoders
    makers = {"audio_encoder": (lambda: AudioEncoder(e.audio_dim, e.width), e.audio, e.audio_dim),
              "motion_encoder": (lambda: MotionEncoder(e.motion_dim, e.width), e.motion, e.motion_dim)}
    models = []
    for k, (name, (make, path, dim)) in enumerate(makers.items()):
        if path is None:
            path = cfg.out / "encoders" / f"{name}-dim{dim}-width{e.width}.pt"
            if not path.exists():
                write_random(make, path, cfg.train.seed + k)
        model = make()
        load_state(model, Path(path), f"--{name}")
        models.append(model.eval().requires_grad_(False))
    return models[0], models[1]


def write_random(make: Any, path: Path, seed: int) -> Path:
    """A random-init state dict of ``make()`` at ``path`` (seeded: the same settings give the same weights)."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(make().state_dict(), path)
    log.info("wrote a random-init encoder to %s", path)
    return path


def load_state(model: nn.Module, path: Path, flag: str) -> None:
    """``path``'s state dict into ``model``, or a ValueError naming the file, the mismatch and the fix."""
    if not path.is_file():
        raise ValueError(f"{flag} {path}: no such file; give a state dict saved with torch.save(model.state_dict())")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{flag} {path} does not fit {type(model).__name__} "
                         f"({str(e).splitlines()[0]}); give a state dict of this encoder with these sizes") from None


#: ``encoders.stage_dtype`` -> the Stages' autocast dtype.
AUTOCAST = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}


def stages(audio: AudioEncoder, motion: MotionEncoder, e: Encoders) -> list[Any]:
    """The bake's three batched steps. ``keep=False``: the frames and samples feed the encoders, and only the
    latents reach the cache (a few percent of its size).

    Each Stage gets its own copy of its encoder: a Stage moves its module to its device (CUDA when
    there is one), and the seed's paths keep running these on the CPU in their DataLoader workers.
    The copies hold the same weights, so the fingerprint is the same."""
    if e.stage_dtype not in AUTOCAST:
        raise ValueError(f"encoders.stage_dtype={e.stage_dtype!r}: choose 'bf16', 'fp16' or none (float32)")
    on = {"device": e.stage_device, "dtype": AUTOCAST[e.stage_dtype]}
    return [prebake.Stage(copy.deepcopy(audio), inputs=("audio", "num_frames"), outputs=("w_audio",),
                          batch_size=e.stage_batch, ragged="pad", keep=False, name="audio_encoder", **on),
            prebake.Stage(copy.deepcopy(motion), inputs=("frames",), outputs=("motion",), batch_size=e.stage_batch,
                          ragged="concat", keep=False, name="motion_encoder", max_rows=e.motion_max_rows, **on),
            prebake.Stage(Reference(), inputs=("motion",), outputs=("reference",), batch_size=e.stage_batch,
                          ragged="pad", name="reference_motion", device=e.stage_device)]
