"""A top-down colour and lidar-intensity raster of a location: asphalt, kerbs, markings, grass.

Cameras look the colour up where each pixel's ray meets the ground and the lidar reads
intensity from it, so lane markings, crosswalk stripes and stop lines appear in both sensors
exactly where the map expansion says they are. Global map frame, `resolution` metres/pixel,
row 0 at the top (max y) like the basemap.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from shapely.geometry import Polygon

from .road_network import (
    ARM_VECTORS,
    CROSSWALK_FAR,
    CROSSWALK_NEAR,
    JUNCTION_HALF,
    LANE_WIDTH,
    ROAD_HALF_WIDTH,
    SIDEWALK_WIDTH,
    RoadNetwork,
    lane_offset,
    left_normal,
)

RESOLUTION = 0.15  # metres per pixel
GRASS, SIDEWALK, ASPHALT = (86, 112, 66), (168, 164, 156), (72, 73, 77)
WHITE, YELLOW = (235, 235, 228), (225, 185, 40)
# Lidar return intensity per surface (0..255 like nuScenes), markings are retro-reflective.
INTENSITY = {GRASS: 12, SIDEWALK: 22, ASPHALT: 6, WHITE: 70, YELLOW: 60}


@dataclass
class GroundTexture:
    rgb: np.ndarray  # (H, W, 3) uint8
    intensity: np.ndarray  # (H, W) uint8
    resolution: float

    def _pixels(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.intensity.shape
        col = np.clip((xy[:, 0] / self.resolution).astype(np.int64), 0, w - 1)
        row = np.clip((h - xy[:, 1] / self.resolution).astype(np.int64), 0, h - 1)
        return row, col

    def colour(self, xy: np.ndarray) -> np.ndarray:
        """(N, 3) uint8 colours at global points (N, 2)."""
        return self.rgb[self._pixels(xy)]

    def reflectance(self, xy: np.ndarray) -> np.ndarray:
        return self.intensity[self._pixels(xy)].astype(np.float64)


class _Canvas:
    def __init__(self, net: RoadNetwork, resolution: float) -> None:
        self.res = resolution
        self.h = round(net.canvas[1] / resolution)
        self.w = round(net.canvas[0] / resolution)
        self.rgb = np.empty((self.h, self.w, 3), np.uint8)
        self.rgb[:] = GRASS
        self.intensity = np.full((self.h, self.w), INTENSITY[GRASS], np.uint8)

    def px(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return (np.stack([p[:, 0] / self.res, self.h - p[:, 1] / self.res], axis=1) * 16).round().astype(np.int32)

    def polygon(self, shape, colour) -> None:
        self.fill(shape.exterior.coords, colour)
        for hole in shape.interiors:
            self.fill(hole.coords, GRASS)

    def fill(self, ring, colour) -> None:
        cv2.fillPoly(self.rgb, [self.px(ring)], colour, cv2.LINE_AA, 4)
        cv2.fillPoly(self.intensity, [self.px(ring)], INTENSITY[colour], cv2.LINE_8, 4)

    def line(self, a, b, colour, width_m: float) -> None:
        thickness = max(1, round(width_m / self.res))
        pa, pb = self.px([a, b])
        cv2.line(self.rgb, tuple(map(int, pa)), tuple(map(int, pb)), colour, thickness, cv2.LINE_AA, 4)
        cv2.line(self.intensity, tuple(map(int, pa)), tuple(map(int, pb)), INTENSITY[colour], thickness, cv2.LINE_8, 4)

    def dashed(self, a, b, colour, width_m: float, dash: float, gap: float) -> None:
        length = float(np.linalg.norm(b - a))
        d = (b - a) / length
        for s in np.arange(0.0, length - dash, dash + gap):
            self.line(a + d * s, a + d * (s + dash), colour, width_m)


def build_ground_texture(net: RoadNetwork, resolution: float = RESOLUTION) -> GroundTexture:
    canvas = _Canvas(net, resolution)
    drivable = net.drivable_area()
    canvas.polygon(drivable.buffer(SIDEWALK_WIDTH, join_style=2), SIDEWALK)
    for part in getattr(drivable, "geoms", [drivable]):
        canvas.fill(part.exterior.coords, ASPHALT)
        for hole in part.interiors:  # city blocks: a sidewalk ring around grass
            canvas.fill(hole.coords, SIDEWALK)
            inner = Polygon(hole).buffer(-SIDEWALK_WIDTH, join_style=2)
            for block in getattr(inner, "geoms", [inner]):
                canvas.fill(block.exterior.coords, GRASS)
    for road in net.roads:
        _road_markings(canvas, net, road)
    for jn in net.junctions:
        for arm in jn.arms:
            _junction_arm_markings(canvas, net, jn.center, arm)
    return GroundTexture(canvas.rgb, canvas.intensity, resolution)


def _road_markings(canvas: _Canvas, net: RoadNetwork, road) -> None:
    d = road.direction
    n = left_normal(d)
    centre = YELLOW if not net.keep_left else WHITE
    for side in (-0.15, 0.15):
        canvas.line(road.start + n * side, road.end + n * side, centre, 0.12)
    for sign in (-1.0, 1.0):
        divider = n * sign * LANE_WIDTH
        canvas.dashed(road.start + divider, road.end + divider, WHITE, 0.15, 3.0, 6.0)
        edge = n * sign * (ROAD_HALF_WIDTH - 0.3)
        canvas.line(road.start + edge, road.end + edge, WHITE, 0.15)


def _junction_arm_markings(canvas: _Canvas, net: RoadNetwork, center: np.ndarray, arm: int) -> None:
    """Zebra crosswalk across the arm and a stop line across its incoming lanes."""
    d = ARM_VECTORS[arm]
    n = left_normal(d)
    for lateral in np.arange(-ROAD_HALF_WIDTH + 0.3, ROAD_HALF_WIDTH, 1.0):
        a = center + d * CROSSWALK_NEAR + n * lateral
        canvas.line(a, a + d * (CROSSWALK_FAR - CROSSWALK_NEAR), WHITE, 0.5)
    incoming_side = -np.sign(lane_offset(0, net.keep_left))  # incoming lanes travel along -d
    stop_a = center + d * (JUNCTION_HALF + 0.3)
    canvas.line(stop_a, stop_a + n * incoming_side * ROAD_HALF_WIDTH, WHITE, 0.4)
