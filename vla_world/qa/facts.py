"""Ground-truth facts about one keyframe that every stage's text is written from.

A `SampleRecord` holds arrays; captions and QA need named facts ("a car 12 m ahead, moving at
5 m/s, turning left"). Computing them once here keeps the templates in `captions.py` and
`driving_qa.py` free of geometry, and keeps the same fact phrased the same way in every stage.

Frames: everything is in the record's current LiDAR_TOP frame (x right, y forward, metres) except
`own_frame_future`, which uses the agent's own frame (origin at its current centre, its heading is
+y, +x to its right; metres).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon, box

from vla_world.data.geometry import wrap_angle
from vla_world.data.records import (
    DETECTION_CLASSES,
    MAP_CLASSES,
    STEP_SECONDS,
    SampleRecord,
)

MOVING_SPEED = 0.5  # m/s; nuScenes' own moving/stopped attribute split is about this speed
VEHICLES = frozenset({"car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle", "bicycle"})
EGO_HEADING = np.pi / 2  # the ego looks along +y in its LiDAR frame


@dataclass(frozen=True)
class AgentFact:
    """One annotated agent at the current keyframe."""

    index: int  # row in the record's agent arrays
    track_id: int
    cls: str  # a DETECTION_CLASSES name
    x: float  # m, LiDAR frame (right)
    y: float  # m, LiDAR frame (forward)
    yaw: float  # rad, CCW from +x (LiDAR frame)
    width: float  # m
    length: float  # m
    speed: float  # m/s (0 where nuScenes leaves the velocity nan)
    along: float  # m/s, velocity along the ego's heading (+y); negative = towards the ego

    @property
    def distance(self) -> float:
        return float(np.hypot(self.x, self.y))

    @property
    def moving(self) -> bool:
        return self.speed >= MOVING_SPEED

    @property
    def heading_rel_deg(self) -> float:
        """Agent heading minus the ego's, degrees in (-180, 180], positive = towards the ego's left."""
        return float(np.degrees(wrap_angle(self.yaw - EGO_HEADING)))


@dataclass(frozen=True)
class MapFacts:
    """The road layout around the ego, from the record's map polylines."""

    counts: dict[str, int]  # MAP_CLASSES name -> number of polylines
    dividers_left: int  # lane dividers crossing the ego's lateral line (y = 0) on its left
    dividers_right: int
    boundary_left_m: float | None  # lateral distance to the nearest road boundary on the left, m
    boundary_right_m: float | None
    crossing_ahead_m: float | None  # distance along +y to the nearest ped crossing in the ego's lane


def agent_facts(record: SampleRecord, max_range_m: float) -> list[AgentFact]:
    """Agents of known class within `max_range_m` (along x and y), nearest first."""
    facts = []
    for i in range(record.num_agents):
        cls_index = int(record.agent_class[i])
        x, y, _, w, length, _, yaw = (float(v) for v in record.agent_box[i])
        if cls_index < 0 or max(abs(x), abs(y)) > max_range_m:
            continue
        velocity = np.nan_to_num(record.agent_velocity[i].astype(np.float64))  # nuScenes leaves it nan for boxes without neighbours
        facts.append(AgentFact(i, int(record.agent_track_id[i]), DETECTION_CLASSES[cls_index], x, y, yaw, w, length,
                               float(np.hypot(*velocity)), float(velocity[1])))
    return sorted(facts, key=lambda f: (f.distance, f.track_id))


def own_frame_future(record: SampleRecord, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(6, 2) future centres of agent `index` in its own frame (x right, y = its heading), and the mask."""
    x, y, yaw = (float(record.agent_box[index, k]) for k in (0, 1, 6))
    delta = record.agent_future[index].astype(np.float64) - (x, y)
    forward = np.array([np.cos(yaw), np.sin(yaw)])
    right = np.array([np.sin(yaw), -np.cos(yaw)])
    own = np.stack([delta @ right, delta @ forward], axis=1)
    mask = record.agent_future_mask[index].astype(bool)
    return np.where(mask[:, None], own, 0.0), mask


def valid_prefix(mask: np.ndarray) -> int:
    """Number of leading True steps: futures stop at the scene end and never resume."""
    return int(np.argmin(mask)) if not mask.all() else int(mask.size)


def end_speed(points: np.ndarray, start: tuple[float, float] = (0.0, 0.0)) -> float:
    """Speed over the last half-second step of a (n, 2) path that starts at `start`, m/s."""
    path = np.vstack([np.asarray(start, dtype=np.float64)[None], points])
    return float(np.linalg.norm(path[-1] - path[-2]) / STEP_SECONDS)


def footprints(centres: np.ndarray, yaws: np.ndarray, width: float, length: float) -> np.ndarray:
    """Box outlines (shapely Polygons) of one agent at (n, 2) centres and (n,) yaws, LiDAR frame.

    Built in one vectorised shapely call: per-box Polygon construction dominated the QA build time.
    """
    half = np.array([[length, width], [-length, width], [-length, -width], [length, -width]]) / 2  # (4, 2), heading = +x
    cos, sin = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    x = centres[:, None, 0] + half[None, :, 0] * cos - half[None, :, 1] * sin
    y = centres[:, None, 1] + half[None, :, 0] * sin + half[None, :, 1] * cos
    return shapely.polygons(np.stack([x, y], axis=-1))


def map_facts(record: SampleRecord, max_range_m: float, lane_half_width_m: float = 1.75) -> MapFacts:
    """Count the polylines and locate boundaries, dividers and the crossing ahead of the ego."""
    lateral_line = LineString([(-max_range_m, 0.0), (max_range_m, 0.0)])
    ego_lane = box(-lane_half_width_m, 0.0, lane_half_width_m, max_range_m)
    counts = {name: 0 for name in MAP_CLASSES}
    left: dict[str, list[float]] = {name: [] for name in MAP_CLASSES}
    right: dict[str, list[float]] = {name: [] for name in MAP_CLASSES}
    crossings: list[float] = []
    for type_index, points in zip(record.map_type, record.map_polylines):
        name = MAP_CLASSES[int(type_index)]
        counts[name] += 1
        if len(points) < 2:
            continue
        line = LineString(np.asarray(points, dtype=np.float64))
        if name == "ped_crossing":
            hit = line.intersection(ego_lane)
            if not hit.is_empty:
                crossings.append(max(0.0, hit.bounds[1]))
            continue
        for px in _crossing_xs(line.intersection(lateral_line)):
            (left if px < 0 else right)[name].append(abs(px))
    return MapFacts(
        counts=counts,
        dividers_left=len(left["lane_divider"]),
        dividers_right=len(right["lane_divider"]),
        boundary_left_m=min(left["road_boundary"], default=None),
        boundary_right_m=min(right["road_boundary"], default=None),
        crossing_ahead_m=min(crossings, default=None),
    )


def crosswalk_areas(record: SampleRecord) -> list[Polygon]:
    """The record's pedestrian crossings as areas, LiDAR frame.

    Their polylines are closed outlines (nuScenes polygons, `vla_world.data.map_polylines`); an
    open or degenerate one is widened by half a metre each side so it still has an area.
    """
    areas = []
    for type_index, points in zip(record.map_type, record.map_polylines):
        if MAP_CLASSES[int(type_index)] != "ped_crossing" or len(points) < 2:
            continue
        points = np.asarray(points, dtype=np.float64)
        closed = len(points) >= 4 and np.allclose(points[0], points[-1])
        area = Polygon(points) if closed else LineString(points).buffer(0.5)
        areas.append(area if area.is_valid and area.area > 0 else LineString(points).buffer(0.5))
    return areas


def _crossing_xs(geometry) -> list[float]:
    """x of every point where a polyline crosses the lateral line (a point or several)."""
    if geometry.is_empty:
        return []
    parts = getattr(geometry, "geoms", [geometry])
    return [float(p.x) for p in parts if p.geom_type == "Point"]
