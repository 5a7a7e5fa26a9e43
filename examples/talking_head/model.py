"""A small stand-in for FLOAT's motion generator: a window's motion latents from its audio and the window before.

FLOAT samples motion latents by flow matching, conditioned on the audio features, the
previous window's motion and the reference motion. Here one regression step stands in for
it (same inputs, same target), so the data path is what a run measures.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class MotionPredictor(nn.Module):
    """``(w_audio (B, L, A), motion_context (B, L, M), reference (B, M))`` -> motion ``(B, L, M)``."""

    def __init__(self, audio_dim: int, motion_dim: int, hidden: int = 128):
        super().__init__()
        self.inp = nn.Linear(audio_dim + 2 * motion_dim, hidden)
        self.temporal = nn.Conv1d(hidden, hidden, 5, padding=2)
        self.out = nn.Linear(hidden, motion_dim)

    def forward(self, w_audio: torch.Tensor, motion_context: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        ref = reference[:, None].expand(-1, w_audio.shape[1], -1)
        h = F.gelu(self.inp(torch.cat([w_audio, motion_context, ref], dim=-1)))
        h = h + F.gelu(self.temporal(h.transpose(1, 2)).transpose(1, 2))
        return self.out(h)


def loss_of(model: MotionPredictor, batch: dict[str, Any]) -> torch.Tensor:
    """Mean squared error of the predicted motion latents of the window."""
    pred = model(batch["w_audio"].float(), batch["motion_context"].float(), batch["reference"].float())
    return F.mse_loss(pred.float(), batch["motion"].float())
