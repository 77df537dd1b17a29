"""A procedurally generated road network: a grid of signalised 4-way junctions.

Why a grid: it gives every turn type (left, right, straight) at real 90-degree junctions with
a handful of parameters, which is what the planner's command labels need. Each road carries
two lanes per direction; Singapore maps drive on the left, Boston on the right.

Frame and units: nuScenes global map frame of the location, metres, x east, y north, yaw in
radians CCW from +x. Everything here is pure geometry (numpy + shapely); the map-expansion
writer turns it into devkit records and the traffic simulator drives on `Lane.points`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import LineString, Point, Polygon, box
from shapely.ops import unary_union

LANE_WIDTH = 3.5  # metres
LANES_PER_DIRECTION = 2
ROAD_HALF_WIDTH = LANE_WIDTH * LANES_PER_DIRECTION  # kerb to road centre line
JUNCTION_HALF = 14.0  # stop lines sit this far from the junction centre
KERB_RADIUS = JUNCTION_HALF - ROAD_HALF_WIDTH  # corner fillet, tangent to both kerbs
SIDEWALK_WIDTH = 3.0
CROSSWALK_NEAR, CROSSWALK_FAR = 10.0, 13.5  # crosswalk band, distance from junction centre
MARGIN = 60.0  # map border around the outer junctions
POINT_SPACING = 0.5  # centre-line sampling, metres (the devkit's discretisation default)

# Arm directions: index d points along angle d * 90 degrees (0 east, 1 north, 2 west, 3 south).
ARM_VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])

LOCATIONS: tuple[str, ...] = (
    "singapore-onenorth",
    "boston-seaport",
    "singapore-queenstown",
    "singapore-hollandvillage",
)


def drives_on_left(location: str) -> bool:
    """Singapore keeps left, Boston keeps right."""
    return location.startswith("singapore")


@dataclass
class Lane:
    """A directed lane: a road lane between two junctions or a connector inside one."""

    index: int
    kind: str  # "road" | "connector"
    points: np.ndarray  # (N, 2) centre line, metres, spaced ~POINT_SPACING
    arcs: list[dict]  # arcline_path_3 records: start/end pose, shape, radius, segment lengths
    successors: list[int] = field(default_factory=list)
    predecessors: list[int] = field(default_factory=list)
    junction: int | None = None  # connector: its junction; road lane: the junction it ends at
    arm: int | None = None  # road lane: arm of `junction` it enters by; connector: entry arm
    turn: str = "straight"  # connector: "straight" | "left" | "right"
    radius: float = math.inf  # connector curvature radius (inf when straight)
    road: int | None = None  # road lanes: index into RoadNetwork.roads
    slot: int = 0  # 0 = next to the centre line, 1 = next to the kerb

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


@dataclass
class Junction:
    index: int
    center: np.ndarray  # (2,)
    arms: list[int]  # arm directions that have a road

    def phase_order(self) -> list[int]:
        return sorted(self.arms)


@dataclass
class Road:
    """A two-way road between junctions `a` and `b` (b lies along arm `arm_at_a` of a)."""

    index: int
    a: int
    b: int
    arm_at_a: int
    start: np.ndarray  # (2,) road centre line at a's stop line
    end: np.ndarray  # (2,) at b's stop line

    @property
    def direction(self) -> np.ndarray:
        return ARM_VECTORS[self.arm_at_a]

    def rectangle(self) -> Polygon:
        return strip_polygon(self.start, self.end, -ROAD_HALF_WIDTH, ROAD_HALF_WIDTH)


@dataclass
class Crosswalk:
    junction: int
    arm: int
    polygon: Polygon
    ends: np.ndarray  # (2, 2) pedestrian path endpoints on the sidewalks


@dataclass
class RoadNetwork:
    location: str
    keep_left: bool
    canvas: tuple[float, float]  # (width, height) metres
    junctions: list[Junction]
    roads: list[Road]
    lanes: list[Lane]
    crosswalks: list[Crosswalk]

    def drivable_area(self) -> Polygon:
        return unary_union([r.rectangle() for r in self.roads] + [junction_shape(j) for j in self.junctions])

    def sidewalks(self) -> list[Polygon]:
        drivable = self.drivable_area()
        ring = drivable.buffer(SIDEWALK_WIDTH, join_style=2).difference(drivable)
        return list(getattr(ring, "geoms", [ring]))

    def incoming_lanes(self, junction: int, arm: int) -> list[Lane]:
        return [ln for ln in self.lanes if ln.kind == "road" and ln.junction == junction and ln.arm == arm]


def left_normal(direction: np.ndarray) -> np.ndarray:
    return np.array([-direction[1], direction[0]])


def strip_polygon(start: np.ndarray, end: np.ndarray, lateral_lo: float, lateral_hi: float) -> Polygon:
    """Rectangle along start->end spanning [lateral_lo, lateral_hi] to the left of it."""
    d = (end - start) / np.linalg.norm(end - start)
    n = left_normal(d)
    return Polygon([start + n * lateral_lo, end + n * lateral_lo, end + n * lateral_hi, start + n * lateral_hi])


def junction_shape(junction: Junction) -> Polygon:
    """Square between the stop lines with the kerb corners rounded off."""
    cx, cy = junction.center
    square = box(cx - JUNCTION_HALF, cy - JUNCTION_HALF, cx + JUNCTION_HALF, cy + JUNCTION_HALF)
    corners = [Point(cx + sx * JUNCTION_HALF, cy + sy * JUNCTION_HALF).buffer(KERB_RADIUS, 32)
               for sx in (-1, 1) for sy in (-1, 1)]
    return square.difference(unary_union(corners))


def lane_offset(slot: int, keep_left: bool) -> float:
    """Signed lateral offset (positive = left of travel direction) of a lane's centre line."""
    magnitude = (slot + 0.5) * LANE_WIDTH
    return magnitude if keep_left else -magnitude


def _straight_arc(start: np.ndarray, end: np.ndarray) -> dict:
    yaw = math.atan2(*(end - start)[::-1])
    length = float(np.linalg.norm(end - start))
    return {"start_pose": [float(start[0]), float(start[1]), yaw], "end_pose": [float(end[0]), float(end[1]), yaw],
            "shape": "LSL", "radius": 999.999, "segment_length": [0.0, length, 0.0]}


def _straight_points(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    n = max(2, math.ceil(np.linalg.norm(end - start) / POINT_SPACING) + 1)
    return start + np.linspace(0.0, 1.0, n)[:, None] * (end - start)


def _quarter_turn(start: np.ndarray, heading: np.ndarray, end: np.ndarray, left: bool) -> tuple[np.ndarray, dict, float]:
    """Quarter circle from `start` (travelling along `heading`) to `end`; returns points, arc record, radius."""
    radius = float(np.linalg.norm(end - start)) / math.sqrt(2.0)
    normal = left_normal(heading) * (1.0 if left else -1.0)
    center = start + normal * radius
    a0 = math.atan2(*(start - center)[::-1])
    sweep = math.pi / 2 if left else -math.pi / 2
    n = max(3, math.ceil(radius * math.pi / 2 / POINT_SPACING) + 1)
    angles = a0 + np.linspace(0.0, sweep, n)
    points = center + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    yaw0 = math.atan2(heading[1], heading[0])
    yaw1 = yaw0 + sweep
    arc = {"start_pose": [float(start[0]), float(start[1]), yaw0],
           "end_pose": [float(end[0]), float(end[1]), math.atan2(math.sin(yaw1), math.cos(yaw1))],
           "shape": "LSL" if left else "RSR", "radius": radius,
           "segment_length": [radius * math.pi / 2, 0.0, 0.0]}
    return points, arc, radius


def build_road_network(location: str, rng: np.random.Generator, grid: tuple[int, int] = (3, 3)) -> RoadNetwork:
    """Grid of `grid` junctions with a random block spacing, all lanes and connectors wired up."""
    spacing = float(rng.uniform(110.0, 140.0))
    nx, ny = grid
    keep_left = drives_on_left(location)
    junctions = []
    for j in range(ny):
        for i in range(nx):
            arms = [d for d, (di, dj) in enumerate([(1, 0), (0, 1), (-1, 0), (0, -1)])
                    if 0 <= i + di < nx and 0 <= j + dj < ny]
            center = np.array([MARGIN + i * spacing, MARGIN + j * spacing])
            junctions.append(Junction(len(junctions), center, arms))
    roads = _build_roads(junctions, nx, ny)
    lanes = _build_road_lanes(roads, keep_left)
    lanes += _build_connectors(junctions, lanes, keep_left)
    _wire(lanes)
    canvas = (2 * MARGIN + (nx - 1) * spacing, 2 * MARGIN + (ny - 1) * spacing)
    return RoadNetwork(location, keep_left, canvas, junctions, roads, lanes, _build_crosswalks(junctions))


def _build_roads(junctions: list[Junction], nx: int, ny: int) -> list[Road]:
    roads = []
    for jn in junctions:
        for arm in (0, 1):  # east and north neighbours only, so each road is made once
            if arm not in jn.arms:
                continue
            other = jn.index + (1 if arm == 0 else nx)
            d = ARM_VECTORS[arm]
            start = jn.center + d * JUNCTION_HALF
            end = junctions[other].center - d * JUNCTION_HALF
            roads.append(Road(len(roads), jn.index, other, arm, start, end))
    return roads


def _build_road_lanes(roads: list[Road], keep_left: bool) -> list[Lane]:
    lanes = []
    for road in roads:
        for forward in (True, False):
            start, end = (road.start, road.end) if forward else (road.end, road.start)
            d = (end - start) / np.linalg.norm(end - start)
            target, entry_arm = (road.b, (road.arm_at_a + 2) % 4) if forward else (road.a, road.arm_at_a)
            for slot in range(LANES_PER_DIRECTION):
                shift = left_normal(d) * lane_offset(slot, keep_left)
                p0, p1 = start + shift, end + shift
                lanes.append(Lane(len(lanes), "road", _straight_points(p0, p1), [_straight_arc(p0, p1)],
                                  junction=target, arm=entry_arm, road=road.index, slot=slot))
    return lanes


def _turn_of(entry_arm: int, exit_arm: int) -> str | None:
    delta = (exit_arm - (entry_arm + 2)) % 4  # heading change in quarter turns, CCW positive
    return {0: "straight", 1: "left", 3: "right"}.get(delta)


def _build_connectors(junctions: list[Junction], road_lanes: list[Lane], keep_left: bool) -> list[Lane]:
    """Connectors: straight lane-to-lane, near-side turns from the kerb lane, far-side from the inner lane."""
    by_start = {}
    for ln in road_lanes:
        by_start[(tuple(np.round(ln.points[0], 6)))] = ln
    near_side = "left" if keep_left else "right"
    connectors: list[Lane] = []
    base = len(road_lanes)
    for jn in junctions:
        for entry in jn.arms:
            heading = -ARM_VECTORS[entry]
            # without a straight exit (corner or T stem) every lane must turn, or it dead-ends
            has_straight = any(_turn_of(entry, a) == "straight" for a in jn.arms)
            for exit_arm in jn.arms:
                turn = _turn_of(entry, exit_arm)
                if turn is None:
                    continue
                slots = range(LANES_PER_DIRECTION) if turn == "straight" or not has_straight else (
                    [LANES_PER_DIRECTION - 1] if turn == near_side else [0])
                for slot in slots:
                    offset = left_normal(heading) * lane_offset(slot, keep_left)
                    start = jn.center + ARM_VECTORS[entry] * JUNCTION_HALF + offset
                    out_dir = ARM_VECTORS[exit_arm]
                    end = jn.center + out_dir * JUNCTION_HALF + left_normal(out_dir) * lane_offset(slot, keep_left)
                    if turn == "straight":
                        points, arcs, radius = _straight_points(start, end), [_straight_arc(start, end)], math.inf
                    else:
                        points, arc, radius = _quarter_turn(start, heading, end, left=turn == "left")
                        arcs = [arc]
                    connectors.append(Lane(base + len(connectors), "connector", points, arcs, junction=jn.index,
                                           arm=entry, turn=turn, radius=radius, slot=slot))
    return connectors


def _wire(lanes: list[Lane]) -> None:
    """Successor links: a lane's end coincides with the next lane's start."""
    starts: dict[tuple, list[int]] = {}
    for ln in lanes:
        starts.setdefault(tuple(np.round(ln.points[0], 3)), []).append(ln.index)
    for ln in lanes:
        for nxt in starts.get(tuple(np.round(ln.points[-1], 3)), []):
            if lanes[nxt].kind != ln.kind:
                ln.successors.append(nxt)
                lanes[nxt].predecessors.append(ln.index)


def _build_crosswalks(junctions: list[Junction]) -> list[Crosswalk]:
    crosswalks = []
    half_span = ROAD_HALF_WIDTH + 0.5
    walk_lateral = ROAD_HALF_WIDTH + SIDEWALK_WIDTH / 2
    for jn in junctions:
        for arm in jn.arms:
            d = ARM_VECTORS[arm]
            n = left_normal(d)
            near, far = jn.center + d * CROSSWALK_NEAR, jn.center + d * CROSSWALK_FAR
            polygon = strip_polygon(near, far, -half_span, half_span)
            mid = jn.center + d * (CROSSWALK_NEAR + CROSSWALK_FAR) / 2
            ends = np.stack([mid - n * walk_lateral, mid + n * walk_lateral])
            crosswalks.append(Crosswalk(jn.index, arm, polygon, ends))
    return crosswalks


def centerline_length(points: np.ndarray) -> np.ndarray:
    """Cumulative arc length (N,) along a polyline (N, 2)."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def polyline(points: np.ndarray) -> LineString:
    return LineString(points)
