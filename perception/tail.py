"""BEV perception split at the frozen camera backbone: fixed camera features in, trainable tail out.

Why: the planning stage fine-tunes perception with the LLM's loss but keeps the camera backbone
frozen (OpenDriveVLA, paper 002, stage 3). Everything up to the first trainable layer after the
backbone is then a constant per keyframe, so it can be computed once (`frozen_features`, cached on
disk by perception/feature_cache.py) while only the tail runs, with gradients, every step:

    features = frozen_features(model, load_camera_batch(records, image_cache))  # no grad
    outputs = PerceptionTail(model)(features)          # == model(batch); with grad

The cut is after the view transform, not at the FPN: the transform has no parameters, its BEV
output is smaller than the FPN level it samples (64x50x50 vs 6x64x18x32 floats at tiny size, and
10 M vs 34 M at base size), and building its sparse sampling matrix cost ~15% of a tail step.
Frames: BEV rows grow forward in the current LiDAR_TOP frame (x right, y forward), as in model.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from perception.inputs import CameraBatch
from perception.model import BevPerception


@dataclass
class FrozenFeatures:
    """What the frozen part of BevPerception produces for a batch of keyframes."""

    bev: torch.Tensor  # (B, C_fpn, H, W) finer FPN level sampled onto the BEV grid (view transform output)
    coarse: torch.Tensor  # (B, cams, C_fpn, h, w) coarsest FPN level, the scene tokens' input

    def __len__(self) -> int:
        return int(self.bev.shape[0])

    def select(self, rows: list[int]) -> FrozenFeatures:
        return FrozenFeatures(self.bev[rows], self.coarse[rows])


@torch.no_grad()
def frozen_features(model: BevPerception, batch: CameraBatch) -> FrozenFeatures:
    """Backbone + view transform of `batch`, exactly as BevPerception.forward computes them."""
    return FrozenFeatures(*model.frozen_part(batch))


class PerceptionTail(nn.Module):
    """The trainable rest of a BevPerception (BEV encoder, scene sampler, agent head, map decoder).

    A module of its own so a trainer can hand exactly this part to DDP; it holds the whole
    BevPerception (`self.perception`), whose state dict is what checkpoints store.
    """

    def __init__(self, perception: BevPerception) -> None:
        super().__init__()
        self.perception = perception

    def forward(self, features: FrozenFeatures) -> dict:
        """Same keys and shapes as BevPerception.forward (the perception loss reads them all)."""
        return self.perception.tail(features.bev, features.coarse)
