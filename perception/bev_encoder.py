"""BEV encoder: positional encoding + residual conv blocks on the (B, D, H, W) BEV grid.

The position of each cell is given as an MLP of its normalised (x, y), not a learned table, so
the same weights work at any grid resolution (the benchmark varies it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.backbone import norm


def normalised_coords(height: int, width: int) -> torch.Tensor:
    """(H*W, 2) cell centres in [-1, 1], x across columns and y across rows (rows grow forward)."""
    ys = (torch.arange(height) + 0.5) / height * 2 - 1
    xs = (torch.arange(width) + 0.5) / width * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], -1).reshape(-1, 2)


class PositionMLP(nn.Module):
    """Normalised 2D coordinates (..., 2) -> (..., D) positional embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords)


class BevEncoder(nn.Module):
    def __init__(self, in_channels: int, dim: int, blocks: int) -> None:
        super().__init__()
        self.input = nn.Conv2d(in_channels, dim, 1)
        self.position = PositionMLP(dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=False), norm(dim), nn.ReLU(),
                          nn.Conv2d(dim, dim, 3, 1, 1, bias=False), norm(dim)) for _ in range(blocks))

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        height, width = bev.shape[-2:]
        pos = self.position(normalised_coords(height, width).to(bev)).T.reshape(1, -1, height, width)
        x = self.input(bev) + pos
        for block in self.blocks:
            x = F.relu(x + block(x))
        return x
