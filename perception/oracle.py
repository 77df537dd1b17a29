"""Oracle perception: `PerceptionTokens` built from ground truth instead of from cameras.

Why: the LLM stages (align, instruct, motion, planning) can be developed and tested without a
trained perception model, and oracle runs give an upper bound on what better perception would buy.
Select it with `token_source: oracle` in the perception config; `oracle_tokens(record, cfg)` gives
tokens with the same shapes as the model's (scene (S, D), agents (A, D), map (M, D)).

How (all deterministic; the only randomness is fixed projection matrices drawn from
`cfg.oracle.seed`, so the same GT always gives the same tokens):
  * agent token = R_agent @ [Fourier(normalised x, y, z, log size, sin/cos yaw, velocity), one-hot class]
  * map token   = R_map   @ [Fourier(normalised P polyline points), one-hot map type]
  * scene tokens: a GT BEV raster around the ego (3 map-class channels + 1 agent-footprint channel,
    drawn with cv2) is average-pooled into 6 * rows * cols cells (the model's scene-token count);
    token = R_scene @ [pooled channels, Fourier(cell centre)].
Agents and map elements are those of `perception.targets.frame_targets` (in the grid; polylines
clipped and resampled to P points); futures are never used. Frame: current LiDAR_TOP, metres.

    from perception.oracle import oracle_tokens
    tokens = oracle_tokens(record, cfg)   # cfg: perception.config.PerceptionConfig
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from perception.config import GridConfig, PerceptionConfig
from perception.targets import FrameTargets, frame_targets
from perception.tokens import PerceptionTokens
from vla_world.data.records import CAMERAS, DETECTION_CLASSES, MAP_CLASSES, SampleRecord

SIZE_LOG_SCALE = 3.0  # log(size in m) / 3 keeps sizes of 0.3 .. 20 m roughly within [-1, 1.1]
SPEED_SCALE = 15.0  # m/s mapped to ~1
HEIGHT_SCALE = 3.0  # m

# Salts so the three token types get independent projection matrices from one seed.
_AGENT_SALT, _MAP_SALT, _SCENE_SALT = 1, 2, 3


def fourier_features(values: torch.Tensor, bands: int) -> torch.Tensor:
    """(N, C) values of order 1 -> (N, C * (1 + 2 * bands)): the values plus sin/cos at 2^k * pi."""
    freqs = math.pi * (2.0 ** torch.arange(bands, dtype=torch.float32))
    angles = values[..., None] * freqs  # (N, C, bands)
    return torch.cat([values, angles.sin().flatten(1), angles.cos().flatten(1)], dim=1)


@functools.lru_cache(maxsize=32)
def _projection(seed: int, salt: int, in_dim: int, out_dim: int) -> torch.Tensor:
    # Gaussian / sqrt(in_dim) keeps token entries of order 1 whatever the feature count.
    generator = torch.Generator().manual_seed(seed * 1000 + salt)
    return torch.randn(in_dim, out_dim, generator=generator) / math.sqrt(in_dim)


def _project(features: torch.Tensor, cfg: PerceptionConfig, salt: int) -> torch.Tensor:
    matrix = _projection(cfg.oracle.seed, salt, features.shape[1], cfg.model.token_dim)
    return features @ matrix


def agent_features(targets: FrameTargets, grid: GridConfig) -> torch.Tensor:
    """(A, 10) normalised box + velocity values: x, y, z, log w, l, h, sin yaw, cos yaw, vx, vy."""
    b = torch.from_numpy(targets.boxes).float().reshape(-1, 7)
    v = torch.from_numpy(targets.velocities).float().reshape(-1, 2)
    return torch.cat([
        b[:, 0:1] / grid.x_half, b[:, 1:2] / grid.y_half, b[:, 2:3] / HEIGHT_SCALE,
        b[:, 3:6].clamp(min=1e-2).log() / SIZE_LOG_SCALE, b[:, 6:7].sin(), b[:, 6:7].cos(), v / SPEED_SCALE,
    ], dim=1)


def agent_tokens(targets: FrameTargets, cfg: PerceptionConfig) -> torch.Tensor:
    one_hot = F.one_hot(torch.from_numpy(targets.classes).long(), len(DETECTION_CLASSES)).float()
    features = torch.cat([fourier_features(agent_features(targets, cfg.grid), cfg.oracle.fourier_bands), one_hot], 1)
    return _project(features, cfg, _AGENT_SALT)


def map_tokens(targets: FrameTargets, cfg: PerceptionConfig) -> torch.Tensor:
    points = torch.from_numpy(targets.map_points).float()
    scale = torch.tensor([cfg.grid.x_half, cfg.grid.y_half])
    normalised = (points / scale).flatten(1)  # (M, 2P)
    one_hot = F.one_hot(torch.from_numpy(targets.map_types).long(), len(MAP_CLASSES)).float()
    features = torch.cat([fourier_features(normalised, cfg.oracle.fourier_bands), one_hot], 1)
    return _project(features, cfg, _MAP_SALT)


def _to_pixels(xy: np.ndarray, grid: GridConfig, cells: int) -> np.ndarray:
    """LiDAR metres (N, 2) -> raster (col, row) pixels; row 0 is the far front (+y), col 0 is left (-x)."""
    col = (xy[:, 0] + grid.x_half) / (2 * grid.x_half) * cells
    row = (grid.y_half - xy[:, 1]) / (2 * grid.y_half) * cells
    return np.stack([col, row], 1)


def gt_raster(targets: FrameTargets, grid: GridConfig, cells: int) -> np.ndarray:
    """(4, cells, cells) float32 raster: one channel per MAP_CLASSES entry + agent footprints."""
    raster = np.zeros((len(MAP_CLASSES) + 1, cells, cells), np.uint8)
    for kind, points in zip(targets.map_types, targets.map_points):
        pixels = np.round(_to_pixels(points, grid, cells)).astype(np.int32)
        layer = np.ascontiguousarray(raster[kind])
        cv2.polylines(layer, [pixels], isClosed=False, color=1, thickness=1)
        raster[kind] = layer
    for x, y, _, w, l, _, yaw in targets.boxes:
        # cv2 angles are clockwise in image space; image rows point backwards (-y), so the
        # CCW LiDAR yaw of the long (length) side becomes -yaw in degrees.
        corners = cv2.boxPoints(((0.0, 0.0), (float(l), float(w)), -math.degrees(float(yaw)))) + np.array([x, y])
        layer = np.ascontiguousarray(raster[-1])
        cv2.fillPoly(layer, [np.round(_to_pixels(corners, grid, cells)).astype(np.int32)], color=1)
        raster[-1] = layer
    return raster.astype(np.float32)


def scene_tokens(targets: FrameTargets, cfg: PerceptionConfig) -> torch.Tensor:
    """(6 * rows * cols, D): the GT raster pooled to a (2 * rows, 3 * cols) grid, row-major."""
    rows, cols = cfg.model.scene_pool
    out_h, out_w = 2 * rows, (len(CAMERAS) // 2) * cols
    raster = torch.from_numpy(gt_raster(targets, cfg.grid, cfg.oracle.raster_cells))
    pooled = F.adaptive_avg_pool2d(raster[None], (out_h, out_w))[0].flatten(1).T  # (S, 4)
    ys = torch.linspace(1, -1, out_h)  # row 0 is the front (+y), as in the raster
    xs = torch.linspace(-1, 1, out_w)
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    features = torch.cat([pooled, fourier_features(centres, cfg.oracle.fourier_bands)], 1)
    return _project(features, cfg, _SCENE_SALT)


def oracle_tokens(record: SampleRecord, cfg: PerceptionConfig) -> PerceptionTokens:
    """Tokens of one keyframe from its ground truth (deterministic; see module doc)."""
    targets = frame_targets(record, cfg.grid, cfg.model.map_points)
    return PerceptionTokens(
        scene=scene_tokens(targets, cfg),
        agents=agent_tokens(targets, cfg),
        map=map_tokens(targets, cfg),
        agent_boxes=torch.from_numpy(targets.boxes).float(),
        agent_classes=torch.from_numpy(targets.classes).long(),
        agent_track_ids=torch.from_numpy(targets.track_ids).long(),
        map_types=torch.from_numpy(targets.map_types).long(),
        map_points=torch.from_numpy(targets.map_points).float(),
        agent_velocities=torch.from_numpy(targets.velocities).float(),
    )
