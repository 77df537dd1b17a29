"""BEV half turns for perception training: a keyframe turned by 180 degrees is another plausible keyframe.

Why: the mini world has 280 training keyframes, and the detector overfits them long before the map head does.
BEVDet's BEV data augmentation flips and rotates the BEV features and the targets together after the view
transform, so the camera geometry stays exact. Here only the half turn (x and y flipped together) is drawn: a
single mirror turns right-hand traffic into left-hand traffic, and the detector reads an agent's heading from
the side of the road it drives on (the boxes are plain cuboids, front and back look alike). A first version with
independent x / y mirrors, not kept, raised detection AP but about doubled the orientation error, so NDS fell.

Frames: LiDAR_TOP, x right, y forward, metres; yaw CCW from +x. A flip of x maps (x, y, yaw, vx) to
(-x, y, pi - yaw, -vx); a flip of y maps (x, y, yaw, vy) to (x, -y, -yaw, -vy). BEV tensors are (C, H, W) with
columns along x and rows along y (perception/geometry.py), so the x flip reverses columns, the y flip rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from perception.ground_view import pack_ground, split_ground, unpack_ground
from perception.targets import FrameTargets


@dataclass(frozen=True)
class Flip:
    x: bool = False
    y: bool = False

    @property
    def any(self) -> bool:
        return self.x or self.y


def draw_flips(seed: int, step: int, count: int, probability: float) -> list[Flip]:
    """Half turns (both flips) or nothing for the `count` keyframes of optimizer step `step`, each turned with
    `probability`: a function of (seed, step), so a resumed run draws the same ones."""
    if probability <= 0:
        return [Flip()] * count
    turns = np.random.default_rng([seed, step]).random(count) < probability
    return [Flip(bool(t), bool(t)) for t in turns]


def flip_bev(bev_input: torch.Tensor, flip: Flip, ground_channels: int = 0, ground_scale: int = 1) -> torch.Tensor:
    """One keyframe's BEV input (C, H, W); its last `ground_channels` channels are a ground view packed at
    `ground_scale` (perception/ground_view.py), which is flipped in its own resolution and packed again."""
    dims = [d for d, on in ((-1, flip.x), (-2, flip.y)) if on]
    if not dims:
        return bev_input
    camera, packed = split_ground(bev_input, ground_channels)
    if not ground_channels:
        return camera.flip(dims)
    ground = unpack_ground(packed[None], ground_scale).flip(dims)
    return torch.cat([camera.flip(dims), pack_ground(ground, ground_scale)[0]])


def flip_targets(targets: FrameTargets, flip: Flip) -> FrameTargets:
    """The targets of the mirrored keyframe (boxes, velocities, map points); classes and ids unchanged."""
    if not flip.any:
        return targets
    boxes, velocities, points = targets.boxes.copy(), targets.velocities.copy(), targets.map_points.copy()
    if flip.x:
        boxes[:, 0], boxes[:, 6], velocities[:, 0], points[..., 0] = -boxes[:, 0], np.pi - boxes[:, 6], -velocities[:, 0], -points[..., 0]
    if flip.y:
        boxes[:, 1], boxes[:, 6], velocities[:, 1], points[..., 1] = -boxes[:, 1], -boxes[:, 6], -velocities[:, 1], -points[..., 1]
    boxes[:, 6] = np.arctan2(np.sin(boxes[:, 6]), np.cos(boxes[:, 6]))
    return replace(targets, boxes=boxes, velocities=velocities, map_points=points)
