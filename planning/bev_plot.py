"""Bird's-eye-view drawing functions for one `SampleRecord`, composable like navsim's `bev.py`.

Why: every picture in the project (tools/visualize.py, tools/show_sample.py, the demo, the docs)
is built from these few `Axes -> artists` functions, so a map, an agent box or a trajectory looks
the same everywhere and each piece can be tested on its own.

Frame and units: everything is drawn in the **current LiDAR_TOP frame** of the record, x to the
right (horizontal axis), y forward (vertical axis), metres; yaw CCW from +x, so the ego heads up
the page. The functions never change their inputs. Drawing reads the record (GT agents, map);
what is scored (the collision crosses) goes through `PlanningTargets`, as the evaluator does.

Example:
    fig, ax = make_bev_axes()
    draw_map(ax, record); draw_agents(ax, record)
    draw_trajectory(ax, record.ego_future, GT_STYLE)
    fig.savefig("bev.png")
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

# The nuScenes ego footprint of every collision metric, taken from the metric so they cannot drift.
from planning.metrics import EGO_FORWARD_SHIFT as EGO_FORWARD_SHIFT_M
from planning.metrics import EGO_LENGTH as EGO_LENGTH_M
from planning.metrics import EGO_WIDTH as EGO_WIDTH_M
from planning.metrics import box_collisions
from planning.occupancy import rasterize_targets
from vla_world.data.records import DETECTION_CLASSES, MAP_CLASSES, SampleRecord
from vla_world.data.targets import PlanningTargets, planning_targets

# Colour-blind-safe class colours (Okabe-Ito / Tol hues), one family per kind of road user.
CLASS_COLOURS: dict[str, str] = {
    "car": "#0072B2",
    "truck": "#56B4E9",
    "bus": "#332288",
    "trailer": "#88CCEE",
    "construction_vehicle": "#44AA99",
    "pedestrian": "#E69F00",
    "motorcycle": "#CC79A7",
    "bicycle": "#AA4499",
    "traffic_cone": "#999933",
    "barrier": "#777777",
    "other": "#BBBBBB",
}

# Map layers sit under everything else: neutral greys so the boxes and trajectories stand out.
MAP_STYLES: dict[str, dict] = {
    "lane_divider": {"color": "#9E9E9E", "linewidth": 1.0, "linestyle": (0, (6, 4))},
    "road_boundary": {"color": "#424242", "linewidth": 1.6, "linestyle": "-"},
    "ped_crossing": {"color": "#B0BEC5", "linewidth": 0.8, "linestyle": "-"},
}

COLLISION_COLOUR = "#D50000"
CONVENTION_NAMES = {"uniad": "UniAD", "stp3": "ST-P3", "stp3_original": "ST-P3 original", "vad": "VAD"}
EGO_COLOUR = "#000000"
EGO_PAST_COLOUR = "#757575"


@dataclass(frozen=True)
class TrajectoryStyle:
    """How one ego trajectory is drawn (line, step markers and per-step ego boxes)."""

    label: str
    colour: str
    marker: str = "o"
    linestyle: str = "-"
    draw_boxes: bool = True  # outline the ego footprint at every step


GT_STYLE = TrajectoryStyle("GT ego future", "#009E73", marker="o")
PRED_STYLE = TrajectoryStyle("prediction", "#D55E00", marker="s")
PRED2_STYLE = TrajectoryStyle("prediction 2", "#7B1FA2", marker="^", linestyle="--")

# Extent (x_min, x_max, y_min, y_max) in metres: 3 s at highway speed (~45 m) fits ahead.
DEFAULT_EXTENT = (-25.0, 25.0, -15.0, 50.0)


# ----------------------------------------------------------------------------- geometry


def box_corners(x: float, y: float, width: float, length: float, yaw: float) -> np.ndarray:
    """(4, 2) corners of an oriented box, metres, same frame as (x, y), counter-clockwise.

    Order: front-left, rear-left, rear-right, front-right, where "front" is along `yaw`.
    Hand-written (one rotation) because the devkit's `Box` wants a quaternion per box.
    """
    half = np.array([[length, width], [-length, width], [-length, -width], [length, -width]]) / 2
    c, s = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[c, -s], [s, c]])
    return half @ rotation.T + np.array([x, y])


def headings_from_waypoints(xy: np.ndarray, start_yaw: float = np.pi / 2) -> np.ndarray:
    """(T,) heading of each waypoint from the direction it was reached from (origin first).

    Predictions carry no yaw, so the footprint follows the path; when the ego barely moves
    (< 0.2 m) the previous heading is kept, because atan2 of a tiny step is noise.
    """
    headings = np.empty(len(xy))
    previous_point, previous_yaw = np.zeros(2), start_yaw
    for i, point in enumerate(np.asarray(xy, dtype=float)):
        step = point - previous_point
        if np.hypot(*step) > 0.2:
            previous_yaw = float(np.arctan2(step[1], step[0]))
            previous_point = point
        headings[i] = previous_yaw
    return headings


def class_name(class_index: int) -> str:
    """DETECTION_CLASSES name, or "other" for -1 (categories outside the detection set)."""
    return DETECTION_CLASSES[class_index] if 0 <= class_index < len(DETECTION_CLASSES) else "other"


# ----------------------------------------------------------------------------- axes


def make_bev_axes(extent: tuple[float, float, float, float] = DEFAULT_EXTENT, ax: Axes | None = None,
                  size_inches: float = 6.0) -> tuple[Figure, Axes]:
    """A BEV axes with equal metric scale, labelled with the LiDAR_TOP frame and its units."""
    if ax is None:
        width = size_inches * (extent[1] - extent[0]) / (extent[3] - extent[2])
        fig = Figure(figsize=(width, size_inches), dpi=120, layout="constrained")
        ax = fig.add_subplot()
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, right) — LiDAR_TOP frame")
    ax.set_ylabel("y (m, forward)")
    ax.grid(True, color="#EEEEEE", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    return ax.figure, ax


# ----------------------------------------------------------------------------- layers


def draw_map(ax: Axes, record: SampleRecord) -> list:
    """Map polylines (lane dividers dashed, road boundaries solid, crossings filled)."""
    artists = []
    for type_index, polyline in zip(record.map_type, record.map_polylines):
        name = MAP_CLASSES[int(type_index)]
        style = MAP_STYLES[name]
        if name == "ped_crossing" and len(polyline) >= 3:
            patch = Polygon(polyline, closed=True, facecolor=style["color"], alpha=0.35,
                            edgecolor=style["color"], linewidth=style["linewidth"], zorder=1)
            artists.append(ax.add_patch(patch))
        else:
            artists += ax.plot(polyline[:, 0], polyline[:, 1], zorder=1, **style)
    return artists


def draw_agents(ax: Axes, record: SampleRecord, with_futures: bool = True) -> list:
    """Agent boxes at t = 0 (class colours, a tick towards the heading) and their GT futures."""
    artists = []
    for i in range(record.num_agents):
        x, y, _, w, l, _, yaw = record.agent_box[i]
        colour = CLASS_COLOURS[class_name(int(record.agent_class[i]))]
        corners = box_corners(x, y, w, l, yaw)
        artists.append(ax.add_patch(Polygon(corners, closed=True, facecolor=colour, alpha=0.55,
                                            edgecolor=colour, linewidth=1.0, zorder=3)))
        front_mid = corners[[0, 3]].mean(axis=0)
        artists += ax.plot([x, front_mid[0]], [y, front_mid[1]], color="white", linewidth=0.9, zorder=4)
        if with_futures:
            artists += _draw_agent_future(ax, record, i, colour)
    return artists


def _draw_agent_future(ax: Axes, record: SampleRecord, agent: int, colour: str) -> list:
    valid = record.agent_future_mask[agent]
    if not valid.any():
        return []
    path = np.vstack([record.agent_box[agent, :2], record.agent_future[agent][valid]])
    return ax.plot(path[:, 0], path[:, 1], color=colour, linestyle=":", linewidth=1.2,
                   marker=".", markersize=3, zorder=2)


def draw_ego_box(ax: Axes, xy: np.ndarray, yaw: float, colour: str = EGO_COLOUR, filled: bool = True,
                 alpha: float = 1.0, linestyle: str = "-") -> Polygon:
    """The ego footprint (4.084 x 1.85 m) of the LiDAR at `xy` heading `yaw`, as one Polygon.

    Its centre sits `EGO_FORWARD_SHIFT_M` (0.5 m) ahead of `xy` along the heading, as in the
    collision metrics, so the box drawn is the box that is tested (up to the metric's grid).
    """
    centre = np.asarray(xy, dtype=float) + EGO_FORWARD_SHIFT_M * np.array([np.cos(yaw), np.sin(yaw)])
    corners = box_corners(centre[0], centre[1], EGO_WIDTH_M, EGO_LENGTH_M, yaw)
    patch = Polygon(corners, closed=True, facecolor=colour if filled else "none", edgecolor=colour,
                    linewidth=1.0, alpha=alpha, linestyle=linestyle, zorder=6)
    return ax.add_patch(patch)


def draw_trajectory(ax: Axes, xy: np.ndarray, style: TrajectoryStyle, yaws: np.ndarray | None = None,
                    mask: np.ndarray | None = None) -> list:
    """An ego trajectory from the origin through the valid waypoints, with the footprint per step.

    `xy` (T, 2) metres in the LiDAR frame; `yaws` (T,) rad or None (derived from the path);
    `mask` (T,) bool, False steps are not drawn (GT past the scene end).
    """
    xy = np.asarray(xy, dtype=float)
    mask = np.ones(len(xy), bool) if mask is None else np.asarray(mask, bool)
    yaws = headings_from_waypoints(xy) if yaws is None else np.asarray(yaws, dtype=float)
    path = np.vstack([np.zeros((1, 2)), xy[mask]])
    artists = ax.plot(path[:, 0], path[:, 1], color=style.colour, linestyle=style.linestyle,
                      linewidth=2.0, marker=style.marker, markersize=4, markevery=slice(1, None), zorder=7)
    if style.draw_boxes:
        for point, yaw in zip(xy[mask], yaws[mask]):
            artists.append(draw_ego_box(ax, point, yaw, colour=style.colour, filled=False, alpha=0.45,
                                        linestyle=style.linestyle))
    return artists


def draw_ego_past(ax: Axes, record: SampleRecord) -> list:
    """The ego's driven path over the last 2 s (grey, thin), ending at the origin."""
    past = record.ego_past[np.asarray(record.ego_past_mask, bool)]
    if len(past) == 0:
        return []
    path = np.vstack([past, np.zeros((1, 2))])
    return ax.plot(path[:, 0], path[:, 1], color=EGO_PAST_COLOUR, linewidth=1.6, marker=".", markersize=4,
                   markevery=slice(0, -1), zorder=5)


def draw_collisions(ax: Axes, xy: np.ndarray, collided: np.ndarray) -> list:
    """A red cross on every waypoint whose ego box overlaps an agent box (see `collision_steps`)."""
    hits = np.asarray(xy, dtype=float)[np.asarray(collided, bool)]
    if len(hits) == 0:
        return []
    return [ax.scatter(hits[:, 0], hits[:, 1], marker="X", s=90, color=COLLISION_COLOUR,
                       edgecolors="white", linewidths=0.8, zorder=9)]


# ----------------------------------------------------------------------------- per-sample numbers


def collision_steps(targets: PlanningTargets, xy: np.ndarray, convention: str = "uniad",
                    occupancy: np.ndarray | None = None) -> np.ndarray:
    """(T,) bool: the metric's per-step box collision of the ego at `xy` (T, 2) m, LiDAR frame.

    Uses `planning.metrics.box_collisions` on this sample's GT occupancy (from `targets`,
    `vla_world.data.targets.planning_targets(record)`), so the crosses agree with the reported
    collision rate (axis-aligned 4.084 x 1.85 m box, 0.5 m ahead, 0.5 m cells), not with the
    exact rotated boxes drawn; the two differ near box edges and on curves. Steps past the scene
    end have no occupancy: always False. `occupancy`: this sample's (6, 200, 200) raster
    (`planning.occupancy.rasterize_targets`) when the caller already has it.
    """
    xy = np.asarray(xy, dtype=float)
    occupancy = rasterize_targets(targets, convention) if occupancy is None else occupancy
    return box_collisions(xy[None], occupancy[None], convention)[0] & np.asarray(targets.ego_future_mask, bool)


def l2_at_seconds(pred: np.ndarray, gt: np.ndarray, gt_mask: np.ndarray) -> dict[str, float]:
    """UniAD-style L2 (m) at 1, 2 and 3 s for one sample; NaN where the GT step is missing."""
    errors = np.linalg.norm(np.asarray(pred, float) - np.asarray(gt, float), axis=-1)
    return {f"{k}s": float(errors[2 * k - 1]) if gt_mask[2 * k - 1] else float("nan") for k in (1, 2, 3)}


def legend_handles(record: SampleRecord, styles: list[TrajectoryStyle], convention: str | None = "uniad") -> list:
    """Legend entries for what a BEV of `record` shows: classes and map types present, trajectories."""
    handles = [Polygon(np.zeros((3, 2)), facecolor=EGO_COLOUR, edgecolor=EGO_COLOUR,
                       label=f"ego now ({EGO_LENGTH_M} x {EGO_WIDTH_M} m)")]
    handles.append(Line2D([], [], color=EGO_PAST_COLOUR, marker=".", linewidth=1.6, label="ego past 2 s"))
    handles += [Line2D([], [], color=s.colour, marker=s.marker, linestyle=s.linestyle, linewidth=2, label=s.label)
                for s in styles]
    for name in sorted({class_name(int(c)) for c in record.agent_class}, key=list(CLASS_COLOURS).index):
        handles.append(Polygon(np.zeros((3, 2)), facecolor=CLASS_COLOURS[name], alpha=0.55, label=name))
    for type_index in sorted({int(t) for t in record.map_type}):
        name = MAP_CLASSES[type_index]
        label, style = name.replace("_", " "), MAP_STYLES[name]
        if name == "ped_crossing":  # drawn as a filled area, so its key is a patch
            handles.append(Polygon(np.zeros((3, 2)), facecolor=style["color"], alpha=0.35, label=label))
        else:
            handles.append(Line2D([], [], label=label, **style))
    if convention:
        handles.append(Line2D([], [], marker="X", color=COLLISION_COLOUR, linestyle="none", markersize=8,
                              label=f"collision ({CONVENTION_NAMES.get(convention, convention)} box test, GT occupancy)"))
    return handles


# ----------------------------------------------------------------------------- composition


@dataclass
class PlannedTrajectory:
    """One ego trajectory to show: (6, 2) waypoints in the LiDAR frame (m) and how to draw it."""

    xy: np.ndarray
    style: TrajectoryStyle
    yaws: np.ndarray | None = None  # (6,) rad; None -> derived from the path
    mask: np.ndarray | None = None  # (6,) bool; None -> all steps valid
    ground_truth: bool = False  # the record's own future (titles give it no L2)


def gt_trajectory(record: SampleRecord, style: TrajectoryStyle = GT_STYLE) -> PlannedTrajectory:
    """The record's GT ego future as a `PlannedTrajectory` (uses the GT headings and mask)."""
    return PlannedTrajectory(record.ego_future, style, yaws=record.ego_future_yaw, mask=record.ego_future_mask,
                             ground_truth=True)


def draw_scene(ax: Axes, record: SampleRecord, trajectories: list[PlannedTrajectory],
               convention: str = "uniad") -> dict[str, np.ndarray]:
    """Map, agents with futures, the ego now, every trajectory and its collisions on one BEV axes.

    Returns {style label: (6,) bool collided steps} so callers can put them in titles.
    """
    draw_map(ax, record)
    draw_agents(ax, record, with_futures=True)
    draw_ego_past(ax, record)
    draw_ego_box(ax, np.zeros(2), np.pi / 2)
    targets = planning_targets(record)  # the crosses are scored like the tables: from labels only
    collided, occupancy = {}, rasterize_targets(targets, convention)
    for plan in trajectories:
        mask = np.ones(len(plan.xy), bool) if plan.mask is None else np.asarray(plan.mask, bool)
        yaws = headings_from_waypoints(plan.xy) if plan.yaws is None else plan.yaws
        draw_trajectory(ax, plan.xy, plan.style, yaws=yaws, mask=mask)
        collided[plan.style.label] = collision_steps(targets, plan.xy, convention, occupancy) & mask
        draw_collisions(ax, plan.xy, collided[plan.style.label])
    return collided
