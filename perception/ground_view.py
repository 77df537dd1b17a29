"""The camera images resampled onto the ground plane at a fine BEV raster (inverse perspective mapping).

Why: the map head has to find lines 15 cm wide and 3.5 m apart, but the BEV features it reads are a
stride-4 FPN map of 128x72 images, sampled at 1 m cells and averaged over pillar points up to 1.6 m
above the road (docs/perception.md: the three lane dividers came out as one blob). Road markings lie
on the ground, and the ground is a plane (nuScenes ego poses lie on the global plane z = 0, and the
mini world is flat), so each fine ground cell is seen at exactly one pixel per camera: the colour there
is a top-down picture of the markings, kerbs and crossings at full image resolution. No parameters;
it runs in the frozen part of the network (perception/model.py) and travels packed into the BEV
channels (`pack_ground` / `unpack_ground`) so the feature cache and the tail keep their interface.

The plane is taken from the pose, not assumed at a fixed LiDAR height: the nuScenes LiDAR is tilted by
about a degree, so LiDAR z = -1.84 m lies 0.2 m above the road 10 m ahead, which scales the picture by
up to 25 % at the grid edge.

Frames: LiDAR_TOP (x right, y forward, metres); raster rows grow forward like the BEV (perception/geometry.py).
Output channels: the ImageNet-normalised RGB averaged over the cameras that see the cell, then a
0/1 visibility channel (0 under the ego and where no camera looks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.config import GridConfig
from perception.geometry import cell_centres, sampling_grid

GROUND_CHANNELS = 4  # RGB + visibility


def ground_plane(lidar2global: torch.Tensor) -> torch.Tensor:
    """(..., 4) coefficients (a, b, c, d) of the ground in the LiDAR frame: a x + b y + c z + d = global z,
    i.e. the third row of the LiDAR -> global transform; the ground is where it is 0."""
    return lidar2global[..., 2, :]


def ground_points(xy: torch.Tensor, plane: torch.Tensor) -> torch.Tensor:
    """(N, 3) LiDAR-frame points on the ground plane (4,) below/above the (N, 2) cell centres."""
    a, b, c, d = plane.unbind(-1)
    z = -(a * xy[:, 0] + b * xy[:, 1] + d) / c
    return torch.cat([xy, z[:, None]], 1)


class GroundView(nn.Module):
    """(B, cams, 3, h, w) images + calibration + ground plane -> (B, 4, scale*H, scale*W) ground picture."""

    def __init__(self, grid: GridConfig, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.cells = grid.cells * scale
        fine = GridConfig(x_half=grid.x_half, y_half=grid.y_half, cells=self.cells, heights=grid.heights)
        self.register_buffer("centres", cell_centres(fine).reshape(-1, 2), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, sensor2lidar: torch.Tensor, intrinsics: torch.Tensor,
                image_size: torch.Tensor, plane: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.one(images[b], sensor2lidar[b], intrinsics[b], image_size[b], plane[b])
                            for b in range(images.shape[0])])

    def one(self, images: torch.Tensor, sensor2lidar: torch.Tensor, intrinsics: torch.Tensor, image_size: torch.Tensor,
            plane: torch.Tensor) -> torch.Tensor:
        coords, visible = sampling_grid(ground_points(self.centres, plane.float()), sensor2lidar, intrinsics, image_size)
        colour = F.grid_sample(images, coords[:, None], align_corners=False)[:, :, 0]  # (cams, 3, N)
        weight = visible.float()
        seen = weight.sum(0)
        mean = (colour * weight[:, None]).sum(0) / seen.clamp(min=1.0)
        return torch.cat([mean, (seen > 0).float()[None]]).reshape(GROUND_CHANNELS, self.cells, self.cells)


def split_ground(bev_input: torch.Tensor, ground_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BEV input (..., C, H, W) -> (camera channels, packed ground view): the ground view is the last
    `ground_channels` channels (BevPerception.frozen_part appends it)."""
    split = bev_input.shape[-3] - ground_channels
    return bev_input[..., :split, :, :], bev_input[..., split:, :, :]


def pack_ground(ground: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 4, s*H, s*W) -> (B, 4*s*s, H, W): the fine picture as extra channels of the BEV grid."""
    return F.pixel_unshuffle(ground, scale)


def unpack_ground(packed: torch.Tensor, scale: int) -> torch.Tensor:
    """Inverse of `pack_ground`."""
    return F.pixel_shuffle(packed, scale)
