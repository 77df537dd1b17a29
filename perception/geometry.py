"""BEV grid geometry and camera projection, in the current LiDAR_TOP frame (x right, y forward, m).

BEV tensors are (C, H, W) with row i at y = -y_half + (i + 0.5) * cell height (rows grow
forward) and column j at x = -x_half + (j + 0.5) * cell width (columns grow to the right).
Camera pixels are (u, v) in the original image of `camera_image_size` (width, height); the
images are resized before the backbone, which changes nothing here because feature maps are
sampled with coordinates normalised by the image size.
"""

from __future__ import annotations

import numpy as np
import torch

from perception.config import GridConfig

MIN_DEPTH = 0.1  # m: points closer to (or behind) the camera plane are not visible


def cell_centres(grid: GridConfig) -> torch.Tensor:
    """(H, W, 2) float32 (x, y) metres of every BEV cell centre."""
    xs = -grid.x_half + (torch.arange(grid.cells) + 0.5) * (2 * grid.x_half / grid.cells)
    ys = -grid.y_half + (torch.arange(grid.cells) + 0.5) * (2 * grid.y_half / grid.cells)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], -1).float()


def cell_index(xy: np.ndarray, grid: GridConfig) -> np.ndarray:
    """(N, 2) metres -> (N, 2) int (row, col) of the BEV cell containing each point."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    col = np.floor((xy[:, 0] + grid.x_half) / (2 * grid.x_half) * grid.cells)
    row = np.floor((xy[:, 1] + grid.y_half) / (2 * grid.y_half) * grid.cells)
    return np.stack([row, col], 1).astype(np.int64)


def project_to_cameras(points: torch.Tensor, sensor2lidar: torch.Tensor, intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project LiDAR-frame points into each camera.

    points (N, 3) metres; sensor2lidar (C, 4, 4) camera->LiDAR; intrinsics (C, 3, 3).
    Returns pixels (C, N, 2) (u, v) in the original image and depth (C, N) metres along the optical axis.
    """
    lidar2cam = torch.linalg.inv(sensor2lidar.double()).float()
    cam_points = points @ lidar2cam[:, :3, :3].transpose(1, 2) + lidar2cam[:, None, :3, 3]  # (C, N, 3)
    depth = cam_points[..., 2]
    pixels_h = cam_points @ intrinsics.float().transpose(1, 2)
    pixels = pixels_h[..., :2] / depth.clamp(min=MIN_DEPTH)[..., None]
    return pixels, depth


def sampling_grid(points: torch.Tensor, sensor2lidar: torch.Tensor, intrinsics: torch.Tensor,
                  image_size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_sample coordinates in [-1, 1] (C, N, 2) and a visibility mask (C, N) for LiDAR points.

    image_size (C, 2) is (width, height) of the original images the intrinsics refer to.
    """
    pixels, depth = project_to_cameras(points, sensor2lidar, intrinsics)
    size = image_size.float()[:, None, :]
    normalised = pixels / size * 2 - 1
    visible = (depth > MIN_DEPTH) & (normalised.abs() <= 1).all(-1)
    return normalised, visible
