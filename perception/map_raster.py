"""Rasterised map head: per-class BEV segmentation at a finer raster, vectorised into polylines.

Why (docs/perception.md has the numbers): the DETR polyline decoder barely trains on the CPU
schedule (map Chamfer mAP 0.004-0.05), as the DETR agent decoder did before the centre head
replaced it. A dense head supervises every cell at every step. It predicts, per map class, whether
a cell of a raster `scale` times finer than the BEV grid (0.5 m at tiny size) lies on an element;
perception/map_vectorise.py turns the probabilities into polylines. The token of an element is the
mean of a learned projection of the BEV features sampled (bilinearly) at its P points plus a
learned type embedding, so map tokens carry the geometry that was found, with gradient to the BEV.

    head = MapRasterHead(cfg.model, len(MAP_CLASSES))
    out = head(bev)   # segmentation (B, T, s*H, s*W) logits, features (B, D, H, W), type_embed (B, T, D), half (B, 2)
    tokens = element_embeddings(features, type_embed, types, points, half)   # (M, D), one keyframe
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.config import BevModelConfig, GridConfig
from perception.targets import FrameTargets


class MapRasterHead(nn.Module):
    """BEV (B, D, H, W) -> map-class segmentation logits at `map_raster_scale` x the BEV resolution."""

    def __init__(self, cfg: BevModelConfig, grid: GridConfig, num_types: int) -> None:
        super().__init__()
        dim = cfg.token_dim
        self.scale = cfg.map_raster_scale
        self.register_buffer("thickness", torch.tensor([cfg.map_raster_thickness]), persistent=False)
        self.register_buffer("grid_half", torch.tensor([grid.x_half, grid.y_half]), persistent=False)
        self.segmentation = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.ReLU())
        self.refine = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, 1, 1), nn.ReLU(), nn.Conv2d(dim // 2, num_types, 1))
        nn.init.constant_(self.refine[-1].bias, -2.0)  # ~12% prior: map cells are a few percent of the grid
        self.features = nn.Conv2d(dim, dim, 1)
        self.type_embed = nn.Embedding(num_types, dim)

    def forward(self, bev: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.segmentation(bev)
        if self.scale > 1:
            hidden = F.interpolate(hidden, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return {"segmentation": self.refine(hidden), "features": self.features(bev),
                "type_embed": self.type_embed.weight.expand(bev.shape[0], -1, -1),
                "half": self.grid_half.expand(bev.shape[0], -1),  # metres, for decoding one keyframe alone
                "thickness": self.thickness.expand(bev.shape[0], -1)}  # target line width (raster cells), for the loss


def element_embeddings(features: torch.Tensor, type_embed: torch.Tensor, types: torch.Tensor, points: torch.Tensor,
                       half: torch.Tensor) -> torch.Tensor:
    """(M, D) tokens of one keyframe's elements: features (D, H, W) sampled at the (M, P, 2) points, averaged
    over the points, plus the type embedding (T, D) of each element's type (M,)."""
    if len(types) == 0:
        return features.new_zeros(0, features.shape[0])
    grid = (points.to(features) / half.to(features))[None]  # (1, M, P, 2) in [-1, 1]; x -> columns, y -> rows
    sampled = F.grid_sample(features[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0].mean(-1).T + type_embed[types]


def raster_targets(targets: FrameTargets, grid: GridConfig, scale: int, num_types: int, thickness: int = 1) -> np.ndarray:
    """(types, scale*H, scale*W) float32 masks: the raster cells each map element's polyline crosses
    (`thickness` cells wide, drawn with OpenCV), BEV layout (rows grow forward)."""
    cells = grid.cells * scale
    masks = np.zeros((num_types, cells, cells), np.uint8)
    pixels_per_metre = np.array([cells / (2 * grid.x_half), cells / (2 * grid.y_half)])
    offset = np.array([grid.x_half, grid.y_half])
    for kind, points in zip(targets.map_types, targets.map_points):
        layer = np.ascontiguousarray(masks[kind])
        cv2.polylines(layer, [np.floor((points + offset) * pixels_per_metre).astype(np.int32)], isClosed=False,
                      color=1, thickness=thickness)
        masks[kind] = layer
    return masks.astype(np.float32)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Per-class BCE (positives up-weighted: map cells are a few percent of the raster) + soft Dice,
    which does not care how rare the positives are. logits, target: (T, H, W)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=logits.new_tensor(pos_weight))
    prob = logits.sigmoid().flatten(1)
    flat = target.flatten(1)
    dice = 1 - (2 * (prob * flat).sum(1) + 1) / (prob.sum(1) + flat.sum(1) + 1)
    return bce + dice.mean()
