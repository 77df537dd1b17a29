"""The BEV perception network: cameras -> backbone/FPN -> BEV -> agent and map decoders.

    model = BevPerception(cfg)                       # cfg: perception.config.PerceptionConfig
    out = model(batch)                               # batch: perception.inputs.CameraBatch
    out["agents"], out["map"], out["scene"], out["bev"], out["aux"]

Shapes: scene (B, S, D) with S = 6 * rows * cols; bev (B, D, H, W) (rows grow forward, LiDAR
frame); aux (B, 1 + 3, H, W) logits of agent-centre cells and map-class cells (training only);
agents as documented in perception/centre_head.py (dense heads, top-K peaks as queries), map
as in perception/decoders.py (`model.map_head: detr`) or perception/map_raster.py (`raster`).
With `model.ground_view_scale` the camera images resampled onto the ground plane
(perception/ground_view.py) ride along as extra BEV channels: the BEV encoder reads them, and the
raster map head reads them unpacked at their own resolution.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from perception.backbone import CameraBackbone
from perception.bev_encoder import BevEncoder
from perception.centre_head import CentreHead
from perception.config import PerceptionConfig
from perception.decoders import MapDecoder
from perception.ground_view import (
    GROUND_CHANNELS,
    GroundView,
    pack_ground,
    split_ground,
    unpack_ground,
)
from perception.inputs import CameraBatch
from perception.map_raster import MapRasterHead
from perception.scene_sampler import SceneSampler
from perception.view_transform import ProjectionViewTransform
from vla_world.data.records import CAMERAS, DETECTION_CLASSES, MAP_CLASSES


class BevPerception(nn.Module):
    def __init__(self, cfg: PerceptionConfig) -> None:
        super().__init__()
        m = cfg.model
        self.backbone = CameraBackbone(m.backbone_channels, m.fpn_channels)
        self.view_transform = ProjectionViewTransform(cfg.grid)
        # Optional second sampling at the ground alone: markings sharp instead of averaged over pillar heights.
        ground = cfg.grid.ground_height is not None
        self.ground_transform = ProjectionViewTransform(replace(cfg.grid, heights=(cfg.grid.ground_height,))) if ground else None
        self.ground_view = GroundView(cfg.grid, m.ground_view_scale) if m.ground_view_scale else None
        self.ground_channels = GROUND_CHANNELS * m.ground_view_scale ** 2
        self.bev_encoder = BevEncoder(m.fpn_channels * (2 if ground else 1) + self.ground_channels, m.token_dim,
                                      m.bev_encoder_blocks)
        self.scene_sampler = SceneSampler(m.fpn_channels, m.token_dim, m.scene_pool, len(CAMERAS))
        self.agent_head = CentreHead(m, cfg.grid, len(DETECTION_CLASSES))
        # Either head is called map_decoder so the loss and the planning stage find it by one name.
        self.map_decoder = (MapRasterHead(m, cfg.grid, len(MAP_CLASSES)) if m.map_head == "raster"
                            else MapDecoder(m, cfg.grid, len(MAP_CLASSES)))
        # Auxiliary dense heads (training only): per-cell "an agent centre is here" and map-class
        # masks. They supervise every BEV cell directly, which the sparse Hungarian-matched query
        # losses do not, and so speed up learning a usable BEV on a short CPU schedule.
        self.aux_heads = nn.Conv2d(m.token_dim, 1 + len(MAP_CLASSES), 1)
        nn.init.constant_(self.aux_heads.bias, -4.6)

    def forward(self, batch: CameraBatch) -> dict:
        return self.tail(*self.frozen_part(batch))

    def frozen_part(self, batch: CameraBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera backbone + view transform: (BEV input (B, C_fpn (x2 with grid.ground_height) + the packed
        ground view's 4 s^2 channels, H, W), coarsest level (B, cams, C_fpn, h, w)).

        The part the planning stage keeps frozen (perception/tail.py caches its output); the view
        transform has no parameters, so everything after it is trainable.
        """
        batch_size, cams = batch.images.shape[:2]
        levels = self.backbone(batch.images.flatten(0, 1))
        # The finer level feeds the BEV (spatial detail); the coarsest one the scene tokens, as in the paper.
        fine = levels[-2].unflatten(0, (batch_size, cams))
        coarse = levels[-1].unflatten(0, (batch_size, cams))
        bev = self.view_transform(fine, batch.sensor2lidar, batch.intrinsics, batch.image_size, batch.ground_plane)
        if self.ground_transform is not None:
            ground = self.ground_transform(fine, batch.sensor2lidar, batch.intrinsics, batch.image_size, batch.ground_plane)
            bev = torch.cat([bev, ground], 1)
        if self.ground_view is not None:
            bev = torch.cat([bev, pack_ground(self.ground_picture(batch), self.ground_view.scale)], 1)
        return bev, coarse

    def ground_picture(self, batch: CameraBatch) -> torch.Tensor:
        """(B, 4, s*H, s*W) camera colours on the ground plane (perception/ground_view.py)."""
        if batch.ground_images is None:
            raise ValueError("model.ground_view_scale > 0 needs the images at model.ground_image_size: build the "
                             "ImageCache with perception.inputs.image_cache(dataroot, cfg.model)")
        return self.ground_view(batch.ground_images, batch.sensor2lidar, batch.intrinsics, batch.image_size,
                                batch.ground_plane)

    def tail(self, bev_input: torch.Tensor, coarse: torch.Tensor) -> dict:
        """Everything after the view transform: BEV encoder, scene sampler, agent head, map decoder, aux heads."""
        bev = self.bev_encoder(bev_input)
        if self.ground_view is not None and isinstance(self.map_decoder, MapRasterHead):
            ground = unpack_ground(split_ground(bev_input, self.ground_channels)[1], self.ground_view.scale)
            map_out = self.map_decoder(bev, ground)
        else:
            map_out = self.map_decoder(bev)
        return {"bev": bev, "scene": self.scene_sampler(coarse), "agents": self.agent_head(bev), "map": map_out,
                "aux": self.aux_heads(bev)}


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level part and in total."""
    counts = {name: sum(p.numel() for p in child.parameters() if p.requires_grad) for name, child in model.named_children()}
    counts["total"] = sum(counts.values())
    return counts
