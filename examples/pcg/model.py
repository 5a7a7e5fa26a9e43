"""A small 1-D CNN encoder, its projection head, the NT-Xent loss and a linear probe."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Encoder(nn.Module):
    """Strided 1-D convolutions, global average pooling, a linear embedding: ``(N, 1, T) -> (N, D)``."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64), embedding_dim: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(channels):
            k = 15 if i == 0 else 7
            layers += [nn.Conv1d(c_in, c, k, stride=4 if i == 0 else 2, padding=k // 2), nn.BatchNorm1d(c), nn.ReLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.embed = nn.Linear(c_in, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.features(x).mean(dim=-1))


class Contrastive(nn.Module):
    """Encoder plus an MLP projection head (SimCLR); the probe reads the encoder's embedding."""

    def __init__(self, channels: Sequence[int], embedding_dim: int, projection_dim: int):
        super().__init__()
        self.encoder = Encoder(channels, embedding_dim)
        self.head = nn.Sequential(nn.Linear(embedding_dim, embedding_dim), nn.ReLU(),
                                  nn.Linear(embedding_dim, projection_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """SimCLR's normalised-temperature cross entropy: each view's positive is the other view of its sample."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def pretrain_loss(model: Contrastive, batch: dict[str, Tensor], temperature: float, sub_weight: float) -> Tensor:
    """NT-Xent over the cycles' two views, plus over their substructures (PA-HCL's second level) when given."""
    loss = nt_xent(model(batch["view1"]), model(batch["view2"]), temperature)
    if "subs1" in batch and sub_weight:
        s1, s2 = batch["subs1"], batch["subs2"]  # (N, K, 1, W)
        loss = loss + sub_weight * nt_xent(model(s1.flatten(0, 1)), model(s2.flatten(0, 1)), temperature)
    return loss


@torch.no_grad()
def embed(encoder: Encoder, x: Tensor, batch: int = 512) -> Tensor:
    was = encoder.training
    encoder.eval()
    out = torch.cat([encoder(x[i:i + batch]) for i in range(0, len(x), batch)])
    encoder.train(was)
    return out


def linear_probe(features: Tensor, labels: Tensor, groups: Tensor, epochs: int, seed: int) -> float:
    """Accuracy of a logistic regression on frozen features, trained on 70 % of the recordings, tested on
    the other 30 % (every cycle of a recording on one side)."""
    g = torch.Generator().manual_seed(seed)
    recs = torch.unique(groups)
    test_recs = recs[torch.randperm(len(recs), generator=g)[: max(1, int(0.3 * len(recs)))]]
    test = torch.isin(groups, test_recs).to(features.device)
    mean, std = features[~test].mean(0), features[~test].std(0) + 1e-6
    f = (features - mean) / std
    probe = nn.Linear(f.shape[1], int(labels.max()) + 1).to(f.device)
    opt = torch.optim.Adam(probe.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(probe(f[~test]), labels[~test]).backward()
        opt.step()
    with torch.no_grad():
        return float((probe(f[test]).argmax(1) == labels[test]).float().mean())
