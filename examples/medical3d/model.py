"""A small 3-D CNN: four conv blocks (3x3x3, batch norm, ReLU, stride-2 pooling), global average, linear."""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN3d(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for k in range(4):
            out = width * 2 ** min(k, 2)
            layers += [nn.Conv3d(channels, out, 3, padding=1, bias=False), nn.BatchNorm3d(out), nn.ReLU(inplace=True)]
            if k < 3:
                layers.append(nn.MaxPool3d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3, 4)))
