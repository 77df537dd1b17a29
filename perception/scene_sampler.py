"""Scene tokens: each camera's coarsest FPN map adaptively max-pooled to rows x cols cells.

As in OpenDriveVLA (3x5 cells per camera, 90 tokens for six cameras); a linear layer maps the
FPN width to the token width D and a learned per-camera embedding says which camera a token is
from. Tokens are ordered camera-major (CAMERAS order), then row-major within a camera.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SceneSampler(nn.Module):
    def __init__(self, in_channels: int, dim: int, pool: tuple[int, int], num_cameras: int) -> None:
        super().__init__()
        self.pool = tuple(pool)
        self.proj = nn.Linear(in_channels, dim)
        self.camera_embed = nn.Parameter(torch.zeros(num_cameras, 1, dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, cams, C, h, w) -> (B, cams * rows * cols, D)."""
        batch, cams = features.shape[:2]
        pooled = F.adaptive_max_pool2d(features.flatten(0, 1), self.pool).flatten(2).transpose(1, 2)
        tokens = self.proj(pooled).reshape(batch, cams, -1, self.proj.out_features) + self.camera_embed
        return tokens.flatten(1, 2)
