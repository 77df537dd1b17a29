"""Rasterised map head: per-class BEV segmentation at a finer raster, vectorised into polylines.

Why (docs/perception.md has the numbers): the DETR polyline decoder barely trains on the CPU
schedule (map Chamfer mAP 0.004-0.05), as the DETR agent decoder did before the centre head
replaced it. A dense head supervises every cell at every step. It predicts, per map class, whether
a cell of a raster `scale` times finer than the BEV grid (0.5 m at tiny size) lies on an element;
perception/map_vectorise.py turns the probabilities into polylines. The token of an element is the
mean of a learned projection of the BEV features sampled (bilinearly) at its P points plus a
learned type embedding, so map tokens carry the geometry that was found, with gradient to the BEV.

With the ground view (`model.ground_view_scale`, perception/ground_view.py) the head also reads the
camera colours on the ground plane at their own, finer resolution: a conv stem strides them down to
the raster, they are concatenated with the upsampled BEV features, and dilated convs (receptive field
about 15 m at 0.5 m cells) see enough of a crossing's stripes or a kerb's sides to name them.

    head = MapRasterHead(cfg.model, grid, len(MAP_CLASSES))
    out = head(bev)   # or head(bev, ground) with the ground view (B, 4, s*H, s*W); segmentation (B, T, s*H, s*W) logits, features (B, D, H, W), type_embed (B, T, D), half (B, 2)
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
from vla_world.data.records import MAP_CLASSES

CLOSED_TYPE = MAP_CLASSES.index("ped_crossing")  # the class drawn as a closed outline


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
        self.ground = GroundBranch(cfg.ground_view_scale // self.scale, dim, num_types=num_types) if cfg.ground_view_scale else None
        if self.ground is not None:
            nn.init.constant_(self.ground.out.bias, -2.0)

    def forward(self, bev: torch.Tensor, ground: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        hidden = self.segmentation(bev)
        if self.scale > 1:
            hidden = F.interpolate(hidden, scale_factor=self.scale, mode="bilinear", align_corners=False)
        if (self.ground is None) != (ground is None):
            raise ValueError("MapRasterHead: pass the ground view exactly when model.ground_view_scale > 0")
        segmentation = self.refine(hidden) if ground is None else self.ground(ground, hidden)
        return {"segmentation": segmentation, "features": self.features(bev),
                "type_embed": self.type_embed.weight.expand(bev.shape[0], -1, -1),
                "half": self.grid_half.expand(bev.shape[0], -1),  # metres, for decoding one keyframe alone
                "thickness": self.thickness.expand(bev.shape[0], -1)}  # target line width (raster cells), for the loss


def conv_block(inputs: int, outputs: int, dilation: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, dilation, dilation), nn.GroupNorm(8, outputs), nn.ReLU())


class GroundBranch(nn.Module):
    """Ground view (B, 4, k*R, k*R) + upsampled BEV features (B, D, R, R) -> (B, T, R, R) map logits."""

    def __init__(self, stride: int, dim: int, width: int = 32, num_types: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_block(4, width // 2), conv_block(width // 2, width, stride=stride))
        self.bev = nn.Conv2d(dim, width, 1)
        self.context = nn.Sequential(*(conv_block(2 * width if d == 1 else width, width, d) for d in (1, 2, 4, 8)))
        self.out = nn.Conv2d(width, num_types, 1)

    def forward(self, ground: torch.Tensor, bev_hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.context(torch.cat([self.stem(ground), self.bev(bev_hidden)], 1)))


def element_embeddings(features: torch.Tensor, type_embed: torch.Tensor, types: torch.Tensor, points: torch.Tensor,
                       half: torch.Tensor) -> torch.Tensor:
    """(M, D) tokens of one keyframe's elements: features (D, H, W) sampled at the (M, P, 2) points, averaged
    over the points, plus the type embedding (T, D) of each element's type (M,)."""
    if len(types) == 0:
        return features.new_zeros(0, features.shape[0])
    grid = (points.to(features) / half.to(features))[None]  # (1, M, P, 2) in [-1, 1]; x -> columns, y -> rows
    sampled = F.grid_sample(features[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0].mean(-1).T + type_embed[types]


def raster_targets(targets: FrameTargets, grid: GridConfig, scale: int, num_types: int, thickness: int = 1,
                   filled_types: tuple[int, ...] = (CLOSED_TYPE,)) -> np.ndarray:
    """(types, scale*H, scale*W) float32 masks: the raster cells each map element's polyline crosses
    (`thickness` cells wide, drawn with OpenCV), BEV layout (rows grow forward). A closed element of a
    `filled_types` class (a crossing whose outline the grid did not cut) is the filled polygon instead: the
    vectoriser takes the outer contour of such a blob, which for a thick outline band would lie half a band
    wide outside the element."""
    cells = grid.cells * scale
    masks = np.zeros((num_types, cells, cells), np.uint8)
    pixels_per_metre = np.array([cells / (2 * grid.x_half), cells / (2 * grid.y_half)])
    offset = np.array([grid.x_half, grid.y_half])
    for kind, points in zip(targets.map_types, targets.map_points):
        layer = np.ascontiguousarray(masks[kind])
        pixels = np.floor((points + offset) * pixels_per_metre).astype(np.int32)
        if kind in filled_types and np.allclose(points[0], points[-1], atol=1e-3):
            cv2.fillPoly(layer, [pixels], color=1)
        else:
            cv2.polylines(layer, [pixels], isClosed=False, color=1, thickness=thickness)
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
