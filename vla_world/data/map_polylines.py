"""Vectorised map elements around the ego (MapTR/VAD style) from the nuScenes map expansion.

Three classes (records.MAP_CLASSES), all returned as polylines in the current LiDAR_TOP frame
(x right, y forward, metres), clipped to a patch (default x in [-30, 30], y in [-60, 60] m):
  * lane_divider  - the `lane_divider` and `road_divider` lines (MapTR's "divider" class);
  * road_boundary - the outline (exterior and holes) of the union of `road_segment` and `lane`
                    polygons, as MapTR and VAD derive it;
  * ped_crossing  - the outline of the union of `ped_crossing` polygons.
Geometry comes from the devkit (`NuScenesMap.extract_line` / `extract_polygon`), read once per
map. The per-sample query uses a shapely STRtree instead of `get_records_in_patch`, which
re-extracts every record of the layer on each call (seconds per sample on real maps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, Polygon, box
from shapely.geometry.base import BaseGeometry

from vla_world.config import ConfigError
from vla_world.data.geometry import invert_pose, transform_points

if TYPE_CHECKING:
    from nuscenes.map_expansion.map_api import NuScenesMap

LANE_DIVIDER, ROAD_BOUNDARY, PED_CROSSING = 0, 1, 2  # indices into records.MAP_CLASSES
# The union is closed morphologically (grow, then shrink, square corners kept) by this much:
# neighbouring lane/road polygons that miss each other by a few centimetres would otherwise
# leave thin sliver rings inside the road boundary.
GAP_CLOSING_M = 0.05


@dataclass(frozen=True)
class MapPatch:
    """The region around the ego whose map elements a record keeps (LiDAR frame, metres)."""

    x_min: float = -30.0  # left edge (x is to the right)
    x_max: float = 30.0  # right edge
    y_min: float = -60.0  # behind the ego
    y_max: float = 60.0  # ahead of the ego

    def validate(self) -> None:
        if not (self.x_min < self.x_max and self.y_min < self.y_max):
            raise ConfigError(f"map_patch: need x_min < x_max and y_min < y_max, got {self}")


class SpatialLayer:
    """Geometries of one source layer (global frame) with a spatial index."""

    def __init__(self, geometries: list[BaseGeometry]):
        self.geometries = np.array([g for g in geometries if not g.is_empty], dtype=object)
        self.tree = shapely.STRtree(self.geometries)

    def near(self, region: Polygon) -> np.ndarray:
        return self.geometries[self.tree.query(region, predicate="intersects")]


class MapPolylineExtractor:
    """Per-location map geometry, queried once per keyframe for the polylines around the ego."""

    def __init__(self, nusc_map: NuScenesMap):
        self.dividers = SpatialLayer([nusc_map.extract_line(r["line_token"]) for name in ("lane_divider", "road_divider")
                                for r in getattr(nusc_map, name)])
        self.roads = SpatialLayer([valid_polygon(nusc_map.extract_polygon(r["polygon_token"])) for name in ("road_segment", "lane")
                             for r in getattr(nusc_map, name)])
        self.crossings = SpatialLayer([valid_polygon(nusc_map.extract_polygon(r["polygon_token"])) for r in nusc_map.ped_crossing])

    def polylines(self, lidar2global: np.ndarray, patch: MapPatch) -> tuple[np.ndarray, list[np.ndarray]]:
        """(P,) int8 class ids and P (n_i, 2) float32 polylines in the LiDAR frame of `lidar2global`."""
        local_patch = box(patch.x_min, patch.y_min, patch.x_max, patch.y_max)
        region = global_region(lidar2global, patch)
        global2lidar = invert_pose(lidar2global)
        types: list[int] = []
        lines: list[np.ndarray] = []
        for kind, geometries in ((LANE_DIVIDER, MultiLineString(list(to_frame(self.dividers.near(region), global2lidar)))),
                                 (ROAD_BOUNDARY, _outline(to_frame(self.roads.near(region), global2lidar))),
                                 (PED_CROSSING, _outline(to_frame(self.crossings.near(region), global2lidar)))):
            for line in _line_parts(shapely.intersection(geometries, local_patch)):
                types.append(kind)
                lines.append(np.asarray(line.coords, dtype=np.float32)[:, :2])
        return np.array(types, dtype=np.int8), lines


def to_frame(geometries: np.ndarray, frame_from_global: np.ndarray) -> np.ndarray:
    """Move 2-D map geometry into the frame (one vectorised call for all of them).

    Map geometry has no height, so the LiDAR's small pitch/roll are dropped: only the top-left
    2x2 block and the x-y translation of the 4x4 are applied.
    """
    rotation, shift = frame_from_global[:2, :2], frame_from_global[:2, 3]
    return shapely.transform(geometries, lambda xy: xy @ rotation.T + shift)


def _outline(polygons: np.ndarray) -> BaseGeometry:
    """Boundary of the union: edges shared by touching polygons vanish (MapTR's boundary rule)."""
    merged = shapely.union_all(polygons)
    merged = merged.buffer(GAP_CLOSING_M, join_style="mitre").buffer(-GAP_CLOSING_M, join_style="mitre")
    return merged.boundary if not merged.is_empty else MultiLineString()


def valid_polygon(polygon: Polygon) -> Polygon:
    """Repair self-touching polygons (some exist in real maps) so unions do not raise."""
    return polygon if polygon.is_valid else shapely.make_valid(polygon).buffer(0)


def global_region(lidar2global: np.ndarray, patch: MapPatch) -> Polygon:
    corners = np.array([[patch.x_min, patch.y_min, 0], [patch.x_max, patch.y_min, 0],
                        [patch.x_max, patch.y_max, 0], [patch.x_min, patch.y_max, 0]])
    return Polygon(transform_points(lidar2global, corners)[:, :2])


def _line_parts(geometry: BaseGeometry) -> list[LineString]:
    """Every non-degenerate LineString inside a (multi/collection) geometry, in order."""
    parts = shapely.get_parts(shapely.line_merge(geometry) if geometry.geom_type == "MultiLineString" else geometry)
    out: list[LineString] = []
    for part in parts:
        if isinstance(part, LineString) and len(part.coords) >= 2 and part.length > 1e-3:
            out.append(part)
        elif part.geom_type in ("MultiLineString", "GeometryCollection"):
            out.extend(_line_parts(part))
    return out
