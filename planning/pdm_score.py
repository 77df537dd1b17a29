"""A NAVSIM-style pseudo-simulation score (PDMS) for open-loop plans on nuScenes-format keyframes.

Why: open-loop L2 rewards copying the ego's own motion; NAVSIM's PDM score asks instead whether
the plan, *driven* by a controller, stays safe, legal, useful and comfortable. Each plan is
tracked for its horizon by `planning.tracking` (kinematic bicycle, 10 Hz) against the other
agents' recorded futures (non-reactive), and scored:

  NC   no at-fault collision: 1, or 0.5 when the only at-fault collision is with a static object
       (barrier, traffic cone), else 0;
  DAC  drivable-area compliance: 1 when every corner of the ego box stays inside the map's
       drivable area at every step, else 0;
  EP   ego progress: the tracked plan's progress along the logged ego path divided by the
       progress of the logged path itself driven by the same controller (clipped to [0, 1]);
       1 when that reference progress is under `MIN_PROGRESS_M`;
  TTC  time to collision: 0 when, at some step with the ego moving, the ego and an agent ahead
       projected at constant velocity overlap within `TTC_HORIZON_S`, else 1;
  C    comfort: 1 when the tracked motion stays within nuPlan's bounds (acceleration, jerk, yaw
       rate, yaw acceleration), else 0.

  PDMS = NC x DAC x (5 TTC + 5 EP + 2 C) / 12            (NAVSIM v1's weighting)

Where this differs from NAVSIM (documented in docs/evaluation.md): a 3 s horizon (nuScenes plans)
instead of 4 s; agents are nuScenes annotation boxes at 2 Hz, interpolated linearly to 10 Hz,
present only between their first and last annotation; the progress reference is the logged
(expert) path driven by our controller, not PDM-Closed's best safe proposal; no driving-direction
term. At-fault rules: a collision does not count while the ego is stopped (< `STOPPED_SPEED`), when
the agent is behind the ego's rear axle (it ran into us), or with an agent the logged ego box also
overlaps at that moment (annotation overlap, as the L2 tables' GT-collision exclusion). A failed
answer scores 0 on every term.

Frame and units: the current LiDAR frame (x right, y forward, metres), yaw rad CCW from +x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.signal import savgol_filter
from shapely.geometry.base import BaseGeometry

from planning.metrics import EGO_FORWARD_SHIFT, EGO_LENGTH, EGO_WIDTH
from planning.tracking import DT, EgoState, PlanReference, Rollout, track
from vla_world.data.records import DETECTION_CLASSES, NUM_FUTURE
from vla_world.data.targets import PlanningTargets

SUBSCORES: tuple[str, ...] = ("NC", "DAC", "EP", "TTC", "C")
MIN_PROGRESS_M = 5.0  # NAVSIM: below this reference progress every plan gets EP = 1
STOPPED_SPEED = 0.5  # m/s: a collision while the ego is (nearly) stopped is not its fault
TTC_HORIZON_S = 1.0  # NAVSIM's bound
TTC_PROBES_S = (0.3, 0.6, 0.9)
STATIC_NC = 0.5  # NC when the only at-fault collision is with a static object
STATIC_CLASSES = {"barrier", "traffic_cone"}
# nuPlan's comfort bounds (ego_is_comfortable), m/s^2, m/s^3, rad/s, rad/s^2
LON_ACCEL_BOUNDS = (-4.05, 2.40)
MAX_LAT_ACCEL = 4.89
MAX_LON_JERK = 4.13
MAX_YAW_RATE = 0.95
MAX_YAW_ACCEL = 1.93
SMOOTH_WINDOW = 7  # samples (0.7 s) of the Savitzky-Golay derivative filter


@dataclass(frozen=True)
class PdmResult:
    """The five terms and the PDMS of one plan (all in [0, 1])."""

    NC: float
    DAC: float
    EP: float
    TTC: float
    C: float

    @property
    def score(self) -> float:
        return self.NC * self.DAC * (5 * self.TTC + 5 * self.EP + 2 * self.C) / 12

    def as_dict(self) -> dict[str, float]:
        return {**{k: getattr(self, k) for k in SUBSCORES}, "PDMS": self.score}


FAILED = PdmResult(0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class AgentTracks:
    """Every annotated agent at each simulation step: boxes as polygons, velocities, static flags."""

    polygons: np.ndarray  # (T+1, N) shapely polygons, None where the agent is not present
    corners: np.ndarray  # (T+1, N, 4, 2), NaN where the agent is not present
    centres: np.ndarray  # (T+1, N, 2)
    velocity: np.ndarray  # (T+1, N, 2) m/s
    static: np.ndarray  # (N,) bool


@dataclass(frozen=True)
class SceneContext:
    """What every plan of one sample is scored against, computed once per sample."""

    agents: AgentTracks
    logged: np.ndarray  # (T+1,) the logged ego's boxes (annotation-overlap exclusion)
    path: shapely.LineString  # the logged ego path from the origin
    reference_progress: float  # progress along `path` of the logged path driven by the controller


def scene_context(targets: PlanningTargets, start: EgoState) -> SceneContext:
    path = shapely.LineString(np.vstack([np.zeros((1, 2)), targets.ego_future]))
    reached = track(targets.ego_future, start).xy[-1]
    progress = float(path.project(shapely.Point(reached))) if path.length >= MIN_PROGRESS_M else 0.0
    return SceneContext(agent_tracks(targets), _logged_boxes(targets), path, progress)


def score_plan(plan: np.ndarray, start: EgoState, targets: PlanningTargets, drivable: BaseGeometry,
               context: SceneContext | None = None) -> PdmResult:
    """PDMS terms of one (6, 2) plan from `start` (full-future samples only: see `scorable`)."""
    context = context if context is not None else scene_context(targets, start)
    rollout = track(plan, start)
    return PdmResult(NC=_no_collision(rollout, context.agents, context.logged), DAC=_drivable(rollout, drivable),
                     EP=_progress(rollout, context), TTC=_time_to_collision(rollout, context.agents),
                     C=_comfort(rollout))


def scorable(targets: PlanningTargets) -> bool:
    """A sample is scored when its logged future is complete (the progress reference needs it)."""
    return bool(np.all(targets.ego_future_mask))


def ego_polygons(xy: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Ego boxes (EGO_LENGTH x EGO_WIDTH, centre EGO_FORWARD_SHIFT ahead of the tracked point)."""
    return shapely.polygons(ego_corners(xy, yaw))


def ego_corners(xy: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    heading = np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
    return box_corners(xy + EGO_FORWARD_SHIFT * heading, yaw, EGO_LENGTH, EGO_WIDTH)


def box_corners(centre: np.ndarray, yaw: np.ndarray, length, width) -> np.ndarray:
    """(..., 4, 2) corners of oriented rectangles (length along yaw)."""
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=np.float64)
    half = np.stack(np.broadcast_arrays(np.asarray(length) / 2, np.asarray(width) / 2), axis=-1)[..., None, :]
    local = signs * half
    world = np.stack([local[..., 0] * c - local[..., 1] * s, local[..., 0] * s + local[..., 1] * c], axis=-1)
    return world + centre[..., None, :]


def polygons_of(corners: np.ndarray) -> np.ndarray:
    """Shapely polygons of (..., 4, 2) corners; None where a corner is NaN (an absent agent)."""
    out = np.full(corners.shape[:-2], None, dtype=object)
    present = np.isfinite(corners[..., 0, 0])
    out[present] = shapely.polygons(corners[present])
    return out


def agent_tracks(targets: PlanningTargets) -> AgentTracks:
    """Agents of now and of the future keyframes, interpolated linearly to the 10 Hz simulation steps."""
    key_times = np.arange(NUM_FUTURE + 1) * 0.5
    ids = np.union1d(targets.agent_track_id, targets.future_box_track_id).astype(np.int64)
    boxes = np.full((len(key_times), len(ids), 7), np.nan)
    index = {int(t): i for i, t in enumerate(ids)}
    for tid, b in zip(targets.agent_track_id, targets.agent_box):
        boxes[0, index[int(tid)]] = b
    for step, tid, b in zip(targets.future_box_step, targets.future_box_track_id, targets.future_box):
        boxes[int(step) + 1, index[int(tid)]] = b
    sim_times = np.arange(round(key_times[-1] / DT) + 1) * DT
    sim = np.stack([_interpolate_track(key_times, boxes[:, n], sim_times) for n in range(len(ids))], axis=1) \
        if len(ids) else np.full((len(sim_times), 0, 7), np.nan)
    velocity = np.gradient(sim[..., :2], DT, axis=0) if len(sim_times) > 1 else np.zeros_like(sim[..., :2])
    corners = box_corners(sim[..., :2], sim[..., 6], sim[..., 4], sim[..., 3])
    return AgentTracks(polygons_of(corners), corners, sim[..., :2], np.nan_to_num(velocity), _static_flags(targets, ids))


def _interpolate_track(key_times: np.ndarray, boxes: np.ndarray, sim_times: np.ndarray) -> np.ndarray:
    """(T+1, 7) boxes of one agent between its first and last annotation (NaN outside)."""
    known = np.isfinite(boxes[:, 0])
    out = np.full((len(sim_times), 7), np.nan)
    if not known.any():
        return out
    t = key_times[known]
    inside = (sim_times >= t[0] - 1e-9) & (sim_times <= t[-1] + 1e-9)
    yaw = np.unwrap(boxes[known, 6])
    for k in range(6):
        out[inside, k] = np.interp(sim_times[inside], t, boxes[known, k])
    out[inside, 6] = np.interp(sim_times[inside], t, yaw)
    return out


def _static_flags(targets: PlanningTargets, ids: np.ndarray) -> np.ndarray:
    static = {int(t) for t, c in zip(targets.agent_track_id, targets.agent_class)
              if 0 <= c < len(DETECTION_CLASSES) and DETECTION_CLASSES[c] in STATIC_CLASSES}
    static |= {int(t) for t, c in zip(targets.future_box_track_id, targets.future_box_category)
               if str(c).startswith(("movable_object", "static_object"))}
    return np.array([int(t) in static for t in ids], dtype=bool)


def _logged_boxes(targets: PlanningTargets) -> np.ndarray:
    """The logged ego's boxes at the simulation steps (for the annotation-overlap exclusion)."""
    ref = PlanReference(targets.ego_future)
    times = np.arange(round(ref.end / DT) + 1) * DT
    xy = ref.spline(times)
    vel = ref.spline(np.minimum(times, ref.end - DT), 1)
    yaw = np.where(np.linalg.norm(vel, axis=1) > 0.1, np.arctan2(vel[:, 1], vel[:, 0]), np.pi / 2)
    return ego_polygons(xy, yaw)


def _no_collision(rollout: Rollout, agents: AgentTracks, logged: np.ndarray) -> float:
    hits = _at_fault(ego_polygons(rollout.xy, rollout.yaw), rollout, agents.polygons, agents.centres)
    hits &= ~shapely.intersects(logged[:, None], agents.polygons)  # the logged ego overlaps it too
    if not hits.any():
        return 1.0
    return STATIC_NC if agents.static[hits.any(axis=0)].all() else 0.0


def _at_fault(ego: np.ndarray, rollout: Rollout, polygons: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(T+1, N) overlaps of the ego boxes `ego` (T+1,) with agents that count against the ego: the
    ego moves (at least STOPPED_SPEED, after t = 0) and the agent is not behind its rear axle."""
    hits = shapely.intersects(ego[:, None], polygons)
    heading = np.stack([np.cos(rollout.yaw), np.sin(rollout.yaw)], axis=-1)
    ahead = np.einsum("tnk,tk->tn", centres - rollout.xy[:, None], heading) > 0.0
    moving = (rollout.speed >= STOPPED_SPEED)[:, None]
    moving[0] = False
    return hits & np.nan_to_num(ahead, nan=0.0).astype(bool) & moving


def _drivable(rollout: Rollout, drivable: BaseGeometry) -> float:
    ego = ego_polygons(rollout.xy, rollout.yaw)
    return float(bool(np.all(shapely.covers(drivable, ego))))


def _progress(rollout: Rollout, context: SceneContext) -> float:
    if context.reference_progress < MIN_PROGRESS_M:
        return 1.0
    reached = context.path.project(shapely.Point(rollout.xy[-1]))
    return float(np.clip(reached / context.reference_progress, 0.0, 1.0))


def _time_to_collision(rollout: Rollout, agents: AgentTracks) -> float:
    """0 when a new at-fault overlap appears with ego and agents projected ahead at constant velocity."""
    already = _at_fault(ego_polygons(rollout.xy, rollout.yaw), rollout, agents.polygons, agents.centres)
    heading = np.stack([np.cos(rollout.yaw), np.sin(rollout.yaw)], axis=-1)
    for dt in TTC_PROBES_S:
        shift = agents.velocity * dt
        xy = rollout.xy + heading * (rollout.speed * dt)[:, None]
        ego = shapely.polygons(ego_corners(xy, rollout.yaw))
        moved = polygons_of(agents.corners + shift[:, :, None, :])
        projected = Rollout(xy, rollout.yaw, rollout.speed, rollout.accel, rollout.steer)
        if (_at_fault(ego, projected, moved, agents.centres + shift) & ~already).any():
            return 0.0
    return 1.0


def _comfort(rollout: Rollout) -> float:
    window = min(SMOOTH_WINDOW, len(rollout.speed) - (1 - len(rollout.speed) % 2))
    lon_accel = savgol_filter(rollout.speed, window, 2, deriv=1, delta=DT)
    lon_jerk = savgol_filter(rollout.speed, window, 3, deriv=2, delta=DT)
    yaw = np.unwrap(rollout.yaw)
    yaw_rate = savgol_filter(yaw, window, 2, deriv=1, delta=DT)
    yaw_accel = savgol_filter(yaw, window, 3, deriv=2, delta=DT)
    lat_accel = rollout.speed * yaw_rate
    ok = (LON_ACCEL_BOUNDS[0] <= lon_accel.min() and lon_accel.max() <= LON_ACCEL_BOUNDS[1]
          and np.abs(lat_accel).max() <= MAX_LAT_ACCEL and np.abs(lon_jerk).max() <= MAX_LON_JERK
          and np.abs(yaw_rate).max() <= MAX_YAW_RATE and np.abs(yaw_accel).max() <= MAX_YAW_ACCEL)
    return float(ok)
