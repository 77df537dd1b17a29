"""Ground truth of one keyframe as perception sees it: agents and map polylines inside the grid.

Both the training losses and the oracle tokens read these, so "what counts as an agent / a map
element" is decided once. Frame: current LiDAR_TOP (x right, y forward, metres), like the records.

  * agents: annotated boxes with a detection class (`agent_class >= 0`) whose centre lies in the
    grid; futures are not included (perception must not see them).
  * map: each polyline is clipped to the grid rectangle with shapely (a clip may split it into
    several pieces, each becomes one element) and resampled to P points evenly spaced by arc length.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from shapely.geometry import LineString, MultiLineString, box

from perception.centre_head import Z_SCALE
from perception.config import GridConfig
from perception.geometry import cell_index
from vla_world.data.records import MAP_CLASSES, SampleRecord

MIN_POLYLINE_LENGTH = 0.5  # m: shorter clipped pieces are slivers at the grid edge, not elements


@dataclass
class FrameTargets:
    """GT of one keyframe inside the grid; A agents, M map elements of P points."""

    boxes: np.ndarray  # (A, 7) float32 (x, y, z, w, l, h, yaw), LiDAR frame
    velocities: np.ndarray  # (A, 2) float32 m/s
    classes: np.ndarray  # (A,) int64 index into DETECTION_CLASSES
    track_ids: np.ndarray  # (A,) int64 stable GT instance id
    map_types: np.ndarray  # (M,) int64 index into MAP_CLASSES
    map_points: np.ndarray  # (M, P, 2) float32


def in_grid(xy: np.ndarray, grid: GridConfig) -> np.ndarray:
    """Boolean mask of points (N, 2) inside the grid rectangle (edges included)."""
    return (np.abs(xy[:, 0]) <= grid.x_half) & (np.abs(xy[:, 1]) <= grid.y_half)


def resample_polyline(line: LineString, num_points: int) -> np.ndarray:
    """`num_points` points evenly spaced by arc length from start to end, (P, 2) float32."""
    distances = np.linspace(0.0, line.length, num_points)
    return np.array([line.interpolate(d).coords[0][:2] for d in distances], np.float32)


def clip_polyline(points: np.ndarray, grid: GridConfig) -> list[LineString]:
    """Pieces of the polyline (n, 2) inside the grid rectangle, each longer than a sliver."""
    if len(points) < 2:
        return []
    clipped = LineString(points).intersection(box(-grid.x_half, -grid.y_half, grid.x_half, grid.y_half))
    parts = clipped.geoms if isinstance(clipped, MultiLineString) else [clipped]
    return [p for p in parts if isinstance(p, LineString) and p.length >= MIN_POLYLINE_LENGTH]


def frame_targets(record: SampleRecord, grid: GridConfig, num_points: int) -> FrameTargets:
    """The agents and map elements of `record` that perception is asked to find."""
    keep = (record.agent_class >= 0) & in_grid(record.agent_box[:, :2], grid) if record.num_agents else np.zeros(0, bool)
    map_types, map_points = [], []
    for kind, polyline in zip(record.map_type, record.map_polylines):
        for piece in clip_polyline(np.asarray(polyline, np.float64), grid):
            map_types.append(int(kind))
            map_points.append(resample_polyline(piece, num_points))
    return FrameTargets(
        boxes=record.agent_box[keep].astype(np.float32).reshape(-1, 7),
        velocities=record.agent_velocity[keep].astype(np.float32).reshape(-1, 2),
        classes=record.agent_class[keep].astype(np.int64),
        track_ids=record.agent_track_id[keep].astype(np.int64),
        map_types=np.array(map_types, np.int64),
        map_points=np.array(map_points, np.float32).reshape(-1, num_points, 2),
    )


def dense_bev_targets(targets: FrameTargets, grid: GridConfig) -> np.ndarray:
    """(1 + len(MAP_CLASSES), H, W) float32 masks in BEV layout (rows grow forward, columns right):
    channel 0 marks the 3x3 cells around each agent centre, the others the cells each map class crosses."""
    cells = grid.cells
    masks = np.zeros((1 + len(MAP_CLASSES), cells, cells), np.uint8)
    scale = np.array([cells / (2 * grid.x_half), cells / (2 * grid.y_half)])
    offset = np.array([grid.x_half, grid.y_half])
    for x, y in targets.boxes[:, :2]:
        col, row = np.floor((np.array([x, y]) + offset) * scale).astype(int)
        masks[0, max(row - 1, 0):row + 2, max(col - 1, 0):col + 2] = 1
    for kind, points in zip(targets.map_types, targets.map_points):
        layer = np.ascontiguousarray(masks[1 + kind])
        cv2.polylines(layer, [np.floor((points + offset) * scale).astype(np.int32)], isClosed=False, color=1, thickness=1)
        masks[1 + kind] = layer
    return masks.astype(np.float32)


@dataclass
class CentreTargets:
    """Dense targets of the agent centre head (perception/centre_head.py), BEV layout (rows grow forward)."""

    heatmap: np.ndarray  # (classes, H, W) float32: Gaussian bumps, exactly 1 at each agent's centre cell
    regression: np.ndarray  # (10, H, W) float32: offset (cells), z / Z_SCALE, log size, sin/cos yaw, velocity m/s
    mask: np.ndarray  # (H, W) bool: cells whose regression is supervised (3x3 around each centre)


def centre_sigma(width: float, length: float, cell: float) -> float:
    """Gaussian sigma (cells) of an agent's heatmap bump: wider for bigger footprints, at least half a cell,
    so that a peak one cell off is only mildly penalised (CenterNet's penalty-reduced focal loss)."""
    return max(0.5, 0.35 * min(width, length) / cell)


def centre_targets(targets: FrameTargets, grid: GridConfig, num_classes: int) -> CentreTargets:
    """Heatmap and regression targets of one keyframe; a cell shared by two agents keeps the nearer one
    (its own centre cell wins over a neighbour's ring)."""
    cells, cell = grid.cells, 2 * grid.x_half / grid.cells
    heatmap = np.zeros((num_classes, cells, cells), np.float32)
    regression = np.zeros((10, cells, cells), np.float32)
    distance = np.full((cells, cells), np.inf)
    rows, cols = np.mgrid[0:cells, 0:cells]
    for agent_box, velocity, kind in zip(targets.boxes, targets.velocities, targets.classes):
        x, y, z, w, l, h, yaw = (float(v) for v in agent_box)
        u, v = (x + grid.x_half) / cell - 0.5, (y + grid.y_half) / (2 * grid.y_half / cells) - 0.5  # continuous (col, row)
        bump = np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * centre_sigma(w, l, cell) ** 2))
        row, col = np.clip(cell_index(agent_box[None, :2], grid)[0], 0, cells - 1)  # same cell as the BEV layout
        bump[row, col] = 1.0
        heatmap[kind] = np.maximum(heatmap[kind], bump)
        for r in range(max(row - 1, 0), min(row + 2, cells)):
            for c in range(max(col - 1, 0), min(col + 2, cells)):
                d = abs(r - v) + abs(c - u)
                if d < distance[r, c]:
                    distance[r, c] = d
                    regression[:, r, c] = [u - c, v - r, z / Z_SCALE, np.log(max(w, 1e-2)), np.log(max(l, 1e-2)),
                                           np.log(max(h, 1e-2)), np.sin(yaw), np.cos(yaw), *velocity]
    return CentreTargets(heatmap, regression, np.isfinite(distance))
