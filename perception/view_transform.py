"""Image features -> BEV grid by projecting pillar points into the cameras and sampling there.

Choice (BEVFormer-style sampling without learned offsets, rather than lift-splat): every BEV
cell centre, lifted to a few heights, is projected with the record's real intrinsics and
camera->LiDAR transforms, and the camera feature map is bilinearly sampled there; features of all
cameras and heights that see the point are averaged. Why: the mini world has no depth labels to
supervise a lift-splat depth distribution, the cost grows with the number of BEV cells (not image
pixels x depth bins), it is plain `grid_sample`, and the geometry is exactly checkable in tests.
The ambiguity along each camera ray is left to the BEV encoder and decoders to resolve.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.config import GridConfig
from perception.geometry import cell_centres, sampling_grid


class ProjectionViewTransform(nn.Module):
    """(B, C, F, h, w) camera features + calibration -> (B, F, H, W) BEV features (LiDAR frame)."""

    def __init__(self, grid: GridConfig) -> None:
        super().__init__()
        self.grid = grid
        centres = cell_centres(grid).reshape(-1, 2)  # (H*W, 2)
        heights = torch.tensor(grid.heights, dtype=torch.float32)
        pillars = torch.cat([centres.repeat(len(heights), 1), heights.repeat_interleave(len(centres))[:, None]], 1)
        self.register_buffer("pillar_points", pillars, persistent=False)  # (Z*H*W, 3), height-major

    def forward(self, features: torch.Tensor, sensor2lidar: torch.Tensor, intrinsics: torch.Tensor,
                image_size: torch.Tensor) -> torch.Tensor:
        batch, _, channels = features.shape[:3]
        bev = []
        for b in range(batch):
            coords, visible = sampling_grid(self.pillar_points, sensor2lidar[b], intrinsics[b], image_size[b])
            sampled = F.grid_sample(features[b], coords[:, None], align_corners=False)[:, :, 0]  # (C, F, N)
            weights = visible.float()[:, None]
            summed = (sampled * weights).sum(0).reshape(channels, len(self.grid.heights), -1).sum(1)
            count = weights.sum(0).reshape(len(self.grid.heights), -1).sum(0).clamp(min=1.0)
            bev.append((summed / count).reshape(channels, self.grid.cells, self.grid.cells))
        return torch.stack(bev)
