"""Camera backbone: a small ResNet-style CNN with an FPN neck, shared by the six cameras.

Why hand-written: torchvision/timm cannot be installed next to transformers here, and the network
is a few residual blocks. GroupNorm instead of BatchNorm because batches are 1-2 keyframes (6-12
images) and train/eval statistics would otherwise differ.

Input (N, 3, H, W) normalised images -> FPN levels finest to coarsest, each (N, C_fpn, H/s, W/s)
with strides 4, 8, ... (the stem halves, the first stage keeps, every later stage halves).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (1x1 projection when shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = norm(out_ch)
        self.shortcut = nn.Identity() if stride == 1 and in_ch == out_ch else nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class CameraBackbone(nn.Module):
    """ResNet-style stages + top-down FPN; returns one feature map per stage after the first."""

    def __init__(self, channels: tuple[int, ...], fpn_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), norm(channels[0]), nn.ReLU())
        stages, in_ch = [], channels[0]
        for i, out_ch in enumerate(channels):
            stages.append(BasicBlock(in_ch, out_ch, stride=1 if i == 0 else 2))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_channels, 1) for c in channels[1:])
        self.smooth = nn.ModuleList(nn.Conv2d(fpn_channels, fpn_channels, 3, 1, 1) for _ in channels[1:])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        stage_outputs = []
        for stage in self.stages:
            x = stage(x)
            stage_outputs.append(x)
        laterals = [conv(f) for conv, f in zip(self.lateral, stage_outputs[1:])]
        for i in range(len(laterals) - 2, -1, -1):  # top-down: coarse context added to finer maps
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
        return [smooth(f) for smooth, f in zip(self.smooth, laterals)]
