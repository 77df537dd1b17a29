"""Writes a `RoadNetwork` as a nuScenes map-expansion JSON (v1.3) plus the basemap PNG.

The output is what `nuscenes.map_expansion.map_api.NuScenesMap(dataroot, location)` reads:
geometric layers (node/line/polygon), every semantic layer (drivable_area, road_segment,
road_block, lane, lane_connector, ped_crossing, walkway, stop_line, carpark_area,
road_divider, lane_divider, traffic_light) and the lane graph (`arcline_path_3`,
`connectivity`). Coordinates: the location's global map frame, metres.

Records share their nodes the way the real maps do, because the devkit's lane-graph helpers compare
node *tokens*, not coordinates (`NuScenesMap.get_next_roads` keeps a record only if all nodes of the
current lane's `to_edge_line` are in its exterior): one node per distinct point (millimetre), and every
polygon carries the lane end corners that lie on its edge (a junction's square gains the lane corners
along its stop lines), so adjacent lanes, their connectors, road blocks and junctions meet in shared nodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import MultiPoint, Polygon
from shapely.ops import snap

from .road_network import (
    ARM_VECTORS,
    JUNCTION_HALF,
    LANE_WIDTH,
    ROAD_HALF_WIDTH,
    Lane,
    RoadNetwork,
    junction_shape,
    lane_offset,
    left_normal,
    strip_polygon,
)
from .tokens import TokenFactory

MAP_VERSION = "1.3"
BASEMAP_RESOLUTION = 0.1  # metres per pixel, what nuscenes.utils.map_mask.MapMask assumes
NODE_DECIMALS = 3  # points closer than a millimetre are one node
SNAP_TOLERANCE = 1e-3  # metres; a lane corner this close to a polygon edge becomes a vertex of it
# The devkit's `BitMap(..., "semantic_prior")` looks the drivable mask up under these fixed names (real nuScenes
# map.json filenames, hard-coded in nuscenes/map_expansion/bitmap.py), so our masks carry them too.
SEMANTIC_PRIOR_HASHES = {
    "singapore-onenorth": "53992ee3023e5494b90c316c183be829",
    "singapore-hollandvillage": "37819e65e09e5547b8a3ceaefba56bb2",
    "singapore-queenstown": "93406b464a165eaba6d9de76ca09f5da",
    "boston-seaport": "36092f0b03a857c6a3403e25b4b7aab3",
}
LAYERS = ("polygon", "line", "node", "drivable_area", "road_segment", "road_block", "lane", "ped_crossing",
          "walkway", "stop_line", "carpark_area", "road_divider", "lane_divider", "traffic_light", "lane_connector")


def lane_token(location: str, lane_index: int) -> str:
    """Token of lane/connector `lane_index` in the expansion of `location` (shared with the simulator)."""
    return TokenFactory(f"map/{location}").make("lane", lane_index)


class _Geometry:
    """Accumulates node/line/polygon records and hands back their tokens; equal points share one node."""

    def __init__(self, tokens: TokenFactory, anchors: MultiPoint) -> None:
        self.tokens = tokens
        self.anchors = anchors  # points every polygon edge through them must have as a vertex
        self.layers: dict[str, list] = {name: [] for name in LAYERS}
        self._node_at: dict[tuple[float, float], str] = {}

    def _nodes(self, coords) -> list[str]:
        out = []
        for x, y in coords:
            key = (round(float(x), NODE_DECIMALS), round(float(y), NODE_DECIMALS))
            if key not in self._node_at:
                token = self.tokens.make("node", len(self.layers["node"]))
                self.layers["node"].append({"token": token, "x": round(float(x), 4), "y": round(float(y), 4)})
                self._node_at[key] = token
            out.append(self._node_at[key])
        return out

    def line(self, coords) -> str:
        token = self.tokens.make("line", len(self.layers["line"]))
        self.layers["line"].append({"token": token, "node_tokens": self._nodes(coords)})
        return token

    def polygon(self, shape: Polygon) -> str:
        token = self.tokens.make("polygon", len(self.layers["polygon"]))
        shape = snap(shape, self.anchors, SNAP_TOLERANCE)
        exterior = self._nodes(list(shape.exterior.coords)[:-1])  # the devkit closes rings itself
        holes = [{"node_tokens": self._nodes(list(h.coords)[:-1])} for h in shape.interiors]
        self.layers["polygon"].append({"token": token, "exterior_node_tokens": exterior, "holes": holes})
        return token

    def record(self, layer: str, **fields) -> str:
        token = self.tokens.make(layer, len(self.layers[layer]))
        self.layers[layer].append({"token": token, **fields})
        return token


def build_map_expansion(net: RoadNetwork) -> dict:
    """The full expansion JSON for `net` as a dict."""
    geo = _Geometry(TokenFactory(f"map/{net.location}"), MultiPoint(lane_corners(net)))
    drivable = net.drivable_area()
    parts = list(getattr(drivable, "geoms", [drivable]))
    drivable_token = geo.record("drivable_area", polygon_tokens=[geo.polygon(p) for p in parts])
    junction_segments = _add_junctions(geo, net, drivable_token)
    road_blocks = _add_roads(geo, net, drivable_token)
    _add_lanes(geo, net, road_blocks)
    _add_crossings_and_signals(geo, net, junction_segments, road_blocks)
    for walk in net.sidewalks():
        geo.record("walkway", polygon_token=geo.polygon(walk))
    arcs = {lane_token(net.location, ln.index): ln.arcs for ln in net.lanes}
    connectivity = {lane_token(net.location, ln.index): {
        "incoming": [lane_token(net.location, i) for i in ln.predecessors],
        "outgoing": [lane_token(net.location, i) for i in ln.successors]} for ln in net.lanes}
    return {"version": MAP_VERSION, "canvas_edge": [float(net.canvas[0]), float(net.canvas[1])],
            **geo.layers, "arcline_path_3": arcs, "connectivity": connectivity}


def lane_corners(net: RoadNetwork) -> list[np.ndarray]:
    """Both edge points of both ends of every road lane: where lanes, connectors and junctions meet."""
    corners = []
    for ln in net.lanes:
        if ln.kind == "road":
            d = (ln.points[-1] - ln.points[0]) / np.linalg.norm(ln.points[-1] - ln.points[0])
            n = left_normal(d) * LANE_WIDTH / 2
            corners += [ln.points[0] + n, ln.points[0] - n, ln.points[-1] + n, ln.points[-1] - n]
    return corners


def _add_junctions(geo: _Geometry, net: RoadNetwork, drivable_token: str) -> dict[int, str]:
    return {jn.index: geo.record("road_segment", polygon_token=geo.polygon(junction_shape(jn)), is_intersection=True,
                                 drivable_area_token=drivable_token) for jn in net.junctions}


def _add_roads(geo: _Geometry, net: RoadNetwork, drivable_token: str) -> dict[tuple[int, int], str]:
    """Road segments, their centre-line road dividers and one road block per direction.

    Returns {(road index, 0 for a->b | 1 for b->a): road block token}."""
    blocks = {}
    for road in net.roads:
        segment = geo.record("road_segment", polygon_token=geo.polygon(road.rectangle()), is_intersection=False,
                             drivable_area_token=drivable_token)
        geo.record("road_divider", line_token=geo.line([road.start, road.end]), road_segment_token=segment)
        for backwards, (start, end) in enumerate([(road.start, road.end), (road.end, road.start)]):
            lo, hi = (0.0, ROAD_HALF_WIDTH) if net.keep_left else (-ROAD_HALF_WIDTH, 0.0)
            n = left_normal((end - start) / np.linalg.norm(end - start))
            edge_from = geo.line([start + n * lo, start + n * hi])
            edge_to = geo.line([end + n * lo, end + n * hi])
            blocks[(road.index, backwards)] = geo.record(
                "road_block", polygon_token=geo.polygon(strip_polygon(start, end, lo, hi)), from_edge_line_token=edge_from,
                to_edge_line_token=edge_to, road_segment_token=segment)
            divider = lane_offset(0, net.keep_left) * 2  # between the inner and the kerb lane
            geo.record("lane_divider", line_token=geo.line([start + n * divider, end + n * divider]),
                       lane_divider_segments=[])
            nodes = geo.layers["line"][-1]["node_tokens"]
            geo.layers["lane_divider"][-1]["lane_divider_segments"] = [
                {"node_token": t, "segment_type": "DOUBLE_DASHED_WHITE"} for t in nodes]
    return blocks


def _add_lanes(geo: _Geometry, net: RoadNetwork, road_blocks: dict) -> None:
    for ln in net.lanes:
        shape = lane_polygon(ln)
        token = lane_token(net.location, ln.index)
        if ln.kind == "connector":
            geo.layers["lane_connector"].append({"token": token, "polygon_token": geo.polygon(shape)})
            continue
        d = (ln.points[-1] - ln.points[0]) / np.linalg.norm(ln.points[-1] - ln.points[0])
        n = left_normal(d) * LANE_WIDTH / 2
        geo.line([ln.points[0] + n, ln.points[-1] + n])
        geo.line([ln.points[0] - n, ln.points[-1] - n])
        segments = {side: [{"node_token": t, "segment_type": "DOUBLE_DASHED_WHITE"}
                           for t in geo.layers["line"][-2 + i]["node_tokens"]] for i, side in enumerate(("left", "right"))}
        geo.layers["lane"].append({
            "token": token, "polygon_token": geo.polygon(shape), "lane_type": "CAR",
            "from_edge_line_token": geo.line([ln.points[0] - n, ln.points[0] + n]),
            "to_edge_line_token": geo.line([ln.points[-1] - n, ln.points[-1] + n]),
            "left_lane_divider_segments": segments["left"], "right_lane_divider_segments": segments["right"]})


def lane_polygon(ln: Lane) -> Polygon:
    """The lane's strip, its ends square to the exact start and end headings.

    A buffer of the sampled centre line would square the ends to the first chord, a few centimetres
    off on a curve, and the connector's corners would miss the lane's end nodes they must share."""
    tangents = np.gradient(ln.points, axis=0)
    tangents[0] = _heading(ln.arcs[0]["start_pose"][2])
    tangents[-1] = _heading(ln.arcs[-1]["end_pose"][2])
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    normals = np.stack([-tangents[:, 1], tangents[:, 0]], axis=1) * LANE_WIDTH / 2
    return Polygon(np.concatenate([ln.points - normals, (ln.points + normals)[::-1]]))


def _heading(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw), np.sin(yaw)])


def _add_crossings_and_signals(geo: _Geometry, net: RoadNetwork, junction_segments: dict, road_blocks: dict) -> None:
    """Crosswalks, and per junction arm a traffic light and the stop line it governs."""
    for cw in net.crosswalks:
        geo.record("ped_crossing", polygon_token=geo.polygon(cw.polygon), road_segment_token=junction_segments[cw.junction])
    for road in net.roads:
        for backwards, junction in ((0, road.b), (1, road.a)):
            jn = net.junctions[junction]
            arm = (road.arm_at_a + 2) % 4 if backwards == 0 else road.arm_at_a
            d = ARM_VECTORS[arm]
            incoming_side = -np.sign(lane_offset(0, net.keep_left))  # incoming lanes travel along -d
            lo, hi = (0.0, ROAD_HALF_WIDTH) if incoming_side > 0 else (-ROAD_HALF_WIDTH, 0.0)
            stop_near = jn.center + d * JUNCTION_HALF
            stop_far = jn.center + d * (JUNCTION_HALF + 0.6)
            block = road_blocks[(road.index, backwards)]
            corner = stop_near + left_normal(-d) * (ROAD_HALF_WIDTH + 1.0) * (1 if net.keep_left else -1)
            light = geo.record("traffic_light", line_token=geo.line([corner, corner + d * 0.5]),
                               traffic_light_type="VERTICAL", from_road_block_token=block, items=[],
                               pose={"tx": float(corner[0]), "ty": float(corner[1]), "tz": 3.0,
                                     "rx": 0.0, "ry": 0.0, "rz": float(np.arctan2(d[1], d[0]))})
            geo.record("stop_line", polygon_token=geo.polygon(strip_polygon(stop_near, stop_far, lo, hi)),
                       stop_line_type="TRAFFIC_LIGHT", ped_crossing_tokens=[], traffic_light_tokens=[light],
                       road_block_token=block)


def write_map_expansion(net: RoadNetwork, dataroot: Path) -> Path:
    path = Path(dataroot) / "maps" / "expansion" / f"{net.location}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_map_expansion(net), separators=(",", ":")))
    return path


def write_basemap(net: RoadNetwork, path: Path) -> None:
    """Drivable-area mask PNG (255 = drivable) at 0.1 m/px, row 0 at the top (max y), as MapMask expects."""
    width = round(net.canvas[0] / BASEMAP_RESOLUTION)
    height = round(net.canvas[1] / BASEMAP_RESOLUTION)
    mask = np.zeros((height, width), np.uint8)
    drivable = net.drivable_area()
    for part in getattr(drivable, "geoms", [drivable]):
        cv2.fillPoly(mask, [_to_pixels(part.exterior.coords, height)], 255)
        for hole in part.interiors:
            cv2.fillPoly(mask, [_to_pixels(hole.coords, height)], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), mask, [cv2.IMWRITE_PNG_COMPRESSION, 3])


def write_intensity_basemap(intensity: np.ndarray, path: Path) -> None:
    """`maps/basemap/<location>.png`: like the real lidar basemap, ground intensity as grey (stretched to 0..255).

    The devkit's `BitMap(..., "basemap")` stretches any size over the map canvas, so the texture's own
    resolution is kept."""
    grey = (intensity.astype(np.float32) * (255.0 / max(1, int(intensity.max())))).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grey, [cv2.IMWRITE_PNG_COMPRESSION, 3])


def _to_pixels(coords, height: int) -> np.ndarray:
    xy = np.asarray(coords, dtype=np.float64) / BASEMAP_RESOLUTION
    return np.stack([xy[:, 0], height - xy[:, 1]], axis=1).round().astype(np.int32)
