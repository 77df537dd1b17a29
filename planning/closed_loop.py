"""Closed-loop episodes: a planner drives the mini world's ego, and the traffic reacts.

Every `DECISION_S` the planner gets exactly what it gets in open loop, a `PlannerInput` built
from the simulated past (ego history, velocity, acceleration and yaw rate by the same backward
differences the record builder uses, and the route command), returns six waypoints in the
current LiDAR frame, and the ego follows them with `planning.tracking`'s controller for
`DECISION_S`; the other vehicles and pedestrians react through `InteractiveTraffic`. The expert
row is the simulator's own IDM ego. A run is deterministic for a given episode.

The route command is computed from the route ahead, never from a future: the lateral offset (in
the current LiDAR frame) of the route point `max(5 m, 3 s x speed)` further along the route;
VAD's ±2 m rule turns it into left / right / forward, as in open loop.

Metrics per episode (`EpisodeMetrics`; docs/closed_loop.md): collisions with an agent, at fault
(the PDM score's rules: the ego moves and the agent is not behind its rear axle) or not; off-road
time (ego box not covered by the drivable area); red-light violations (the ego box's front crosses
a stop line of its route while its arm is not green); progress along the route; route completion
(progress / the expert's progress in the same episode, at most 1); comfort (share of steps within
nuPlan's bounds); and a driving score combining them as CARLA's leaderboard does:
  DS = RC x 0.50^(at-fault pedestrian collisions) x 0.60^(vehicle) x 0.65^(static)
          x 0.70^(red-light violations) x (1 - off-road share of the episode).
CARLA has no off-road factor (it cuts route completion instead); ours is the last factor.

Frame and units: global map frame for the simulation (metres, seconds, yaw rad CCW from +x);
planner inputs and plans in the current LiDAR frame (x right, y forward).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import shapely
from scipy.signal import savgol_filter

from planning.pdm_score import (
    LON_ACCEL_BOUNDS,
    MAX_LAT_ACCEL,
    MAX_LON_JERK,
    MAX_YAW_RATE,
    STOPPED_SPEED,
    box_corners,
)
from planning.tracking import EgoState, track
from vla_world.data.geometry import (
    heading_yaws,
    invert_pose,
    transform_points,
    wrap_angle,
)
from vla_world.data.planner_input import PlannerInput
from vla_world.data.records import CAMERAS, CMD_FORWARD, CMD_LEFT, CMD_RIGHT
from vla_world.mini_world.interactive import (
    EGO_LENGTH_M,
    EGO_WIDTH_M,
    EgoPose,
    Episode,
    InteractiveTraffic,
)
from vla_world.mini_world.sensor_rig import SensorBox, SensorRig
from vla_world.mini_world.sensors import LIDAR

DECISION_S = 0.5
WARMUP_S = 2.0  # the IDM ego drives first, so the planner's 2 s history exists
PAST_STEPS = 4  # history poses, t = -2.0 .. -0.5 s
COMMAND_LATERAL_M = 2.0
PENALTIES = {"pedestrian": 0.50, "vehicle": 0.60, "static": 0.65, "red_light": 0.70}
ON_ROUTE_M = 3.0  # a stop line counts only while the ego is this close to its route

Planner = Callable[[PlannerInput], np.ndarray]  # (6, 2) waypoints in the input's LiDAR frame


@dataclass
class Frame:
    """One 0.1 s simulation step, for the metrics and the video."""

    t: float
    ego: EgoPose
    others_xy: np.ndarray
    others_yaw: np.ndarray
    others_size: np.ndarray  # (N, 2) length, width
    plan_global: np.ndarray | None  # the plan in force, global frame (None for the expert)


@dataclass(frozen=True)
class EpisodeMetrics:
    collisions_at_fault: int
    collisions_not_at_fault: int
    offroad_s: float
    red_lights: int
    progress_m: float
    route_completion: float  # in [0, 1]
    comfort: float  # share of steps within the comfort bounds
    driving_score: float  # in [0, 1]

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class EpisodeRun:
    episode: str
    planner: str
    frames: list[Frame] = field(default_factory=list)
    metrics: EpisodeMetrics | None = None
    at_fault_kinds: list[str] = field(default_factory=list)


def lidar2ego() -> np.ndarray:
    return LIDAR.sensor_to_ego()


def ego2global(pose: EgoPose) -> np.ndarray:
    out = np.eye(4)
    c, s = math.cos(pose.yaw), math.sin(pose.yaw)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:2, 3] = pose.xy
    return out


class SensorFeed:
    """Camera images and LiDAR sweeps at the simulated poses, for planners that see (the VLA).

    Files go under `folder` (the planner's dataroot), one sub-folder per episode and planner, in the
    world builder's formats; the input's sensor fields point at them.
    """

    def __init__(self, folder: str | Path, image_size: tuple[int, int] = (256, 144)):
        self.folder, self.image_size = Path(folder), image_size
        self._rigs: dict[str, SensorRig] = {}

    def fill(self, inp: PlannerInput, episode: Episode, traffic: InteractiveTraffic, ego: EgoPose, run: str) -> PlannerInput:
        """`inp` with its cameras and LiDAR rendered at `ego`, the other road users where they are now."""
        if episode.location not in self._rigs:
            self._rigs[episode.location] = SensorRig(episode.net, self.image_size)
        stem = f"{episode.name}/{run}/{inp.frame_index:03d}"
        capture = self._rigs[episode.location].capture(ego2global(ego), _sensor_boxes(episode, traffic), self.folder,
                                                       stem.replace("/", "__"), seed=inp.frame_index)
        lidar_from_ego = invert_pose(lidar2ego())
        return replace(inp, camera_paths=np.array(capture.camera_paths), lidar_path=capture.lidar_path,
                       camera_intrinsics=capture.intrinsics, camera_sensor2lidar=lidar_from_ego @ capture.camera_to_ego,
                       camera_image_size=np.array([capture.image_size] * len(CAMERAS), np.int32))


def _sensor_boxes(episode: Episode, traffic: InteractiveTraffic) -> list[SensorBox]:
    others = traffic.others()
    agents = [*episode.setup.traffic.vehicles[1:], *episode.setup.traffic.pedestrians]
    return [SensorBox(others.xy[n], a.size, float(others.yaw[n]), a.type.category, a.type.kind)
            for n, a in enumerate(agents)]


def run_episode(episode: Episode, planner: Planner | None, name: str, duration_s: float,
                expert_progress_m: float | None = None, sensors: SensorFeed | None = None) -> EpisodeRun:
    """Drive `episode` for `duration_s` after the warm-up; `planner=None` runs the IDM expert; with
    `sensors` the planner's inputs carry cameras and LiDAR rendered at the simulated poses."""
    traffic = InteractiveTraffic(episode.setup.traffic)
    run = EpisodeRun(episode.name, name)
    for _ in range(round(WARMUP_S / traffic.dt)):
        run.frames.append(_frame(traffic, traffic.own_ego(), None))
        traffic.step()
    start = len(run.frames)
    ego, accel, plan_global = traffic.own_ego(), 0.0, None
    per_decision = round(DECISION_S / traffic.dt)
    for step in range(round(duration_s / traffic.dt)):
        if planner is not None and step % per_decision == 0:
            inp = planner_input_at(episode, run.frames, ego, traffic.t, step // per_decision)
            if sensors is not None:
                inp = sensors.fill(inp, episode, traffic, ego, name.replace(" ", "_"))
            plan = np.asarray(planner(inp), dtype=np.float64).reshape(6, 2)
            path = _follow(plan, ego, accel, per_decision)
            plan_global = transform_points(inp.lidar2global, np.c_[plan, np.zeros(6)])[:, :2]
        run.frames.append(_frame(traffic, ego, plan_global))
        if planner is None:
            traffic.step()
            ego = traffic.own_ego()
        else:
            ego, accel = path[step % per_decision]
            traffic.step(ego)
    run.frames.append(_frame(traffic, ego, plan_global))
    run.metrics, run.at_fault_kinds = episode_metrics(episode, run.frames[start:], expert_progress_m)
    return run


def _frame(traffic: InteractiveTraffic, ego: EgoPose, plan_global: np.ndarray | None) -> Frame:
    others = traffic.others()
    return Frame(traffic.t, ego, others.xy.copy(), others.yaw.copy(), np.c_[others.length, others.width], plan_global)


def _follow(plan: np.ndarray, ego: EgoPose, accel: float, steps: int) -> list[tuple[EgoPose, float]]:
    """The ego poses of the next `steps` 0.1 s steps when the controller drives `plan` (LiDAR frame)."""
    rollout = track(plan, EgoState(ego.speed, accel), horizon_s=steps * 0.1)
    l2g = ego2global(ego) @ lidar2ego()
    offset = lidar2ego()[:2, 3]  # the LiDAR origin in the ego frame (x forward)
    out = []
    for k in range(1, steps + 1):
        lidar_xy = transform_points(l2g, np.r_[rollout.xy[k], 0.0][None])[0, :2]
        yaw = ego.yaw + (rollout.yaw[k] - np.pi / 2)
        c, s = math.cos(yaw), math.sin(yaw)
        rear = lidar_xy - np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]])
        out.append((EgoPose(rear, float(yaw), float(rollout.speed[k])), float(rollout.accel[k - 1])))
    return out


def planner_input_at(episode: Episode, frames: list[Frame], ego: EgoPose, t: float, index: int) -> PlannerInput:
    """The open-loop input a planner would get now, built from the simulated past only."""
    l2g = ego2global(ego) @ lidar2ego()
    g2l = invert_pose(l2g)
    every = round(DECISION_S / 0.1)
    past = [frames[len(frames) - every * k].ego for k in range(PAST_STEPS, 0, -1)]
    origins = np.stack([_lidar_origin(p) for p in past])
    ego_past = transform_points(g2l, origins)[:, :2]
    now, prev, prev2 = np.zeros(2), ego_past[-1], ego_past[-2]
    velocity = (now - prev) / DECISION_S
    acceleration = (velocity - (prev - prev2) / DECISION_S) / DECISION_S
    yaws = heading_yaws(g2l, np.stack([ego2global(p)[:3, :3] for p in (ego, past[-1])]))
    yaw_rate = float(wrap_angle(yaws[0] - yaws[1])) / DECISION_S
    empty = np.array([""] * len(CAMERAS))
    return PlannerInput(
        sample_token=f"{episode.name}#{index:03d}", scene_token=episode.name, timestamp=int(t * 1e6),
        frame_index=index, split="closed_loop", lidar_path="", lidar2global=l2g, camera_paths=empty,
        camera_intrinsics=np.zeros((len(CAMERAS), 3, 3)), camera_sensor2lidar=np.zeros((len(CAMERAS), 4, 4)),
        camera_image_size=np.zeros((len(CAMERAS), 2), np.int32), ego_past=ego_past.astype(np.float32),
        ego_past_mask=np.ones(PAST_STEPS, bool), ego_velocity=velocity.astype(np.float32),
        ego_acceleration=acceleration.astype(np.float32), ego_yaw_rate=yaw_rate,
        ego_speed=float(np.linalg.norm(velocity)), command=route_command(episode, l2g, ego.speed))


def _lidar_origin(pose: EgoPose) -> np.ndarray:
    return (ego2global(pose) @ lidar2ego())[:3, 3]


def route_command(episode: Episode, lidar2global: np.ndarray, speed: float) -> int:
    """Left / right / forward from the route point max(5 m, 3 s x speed) ahead (module doc)."""
    route = shapely.LineString(episode.route_xy)
    here = route.project(shapely.Point(lidar2global[:2, 3]))
    ahead = route.interpolate(here + max(5.0, 3.0 * speed))
    lateral = float(transform_points(invert_pose(lidar2global), np.array([[ahead.x, ahead.y, 0.0]]))[0, 0])
    if lateral >= COMMAND_LATERAL_M:
        return CMD_RIGHT
    if lateral <= -COMMAND_LATERAL_M:
        return CMD_LEFT
    return CMD_FORWARD


# --- metrics -----------------------------------------------------------------------------------

def episode_metrics(episode: Episode, frames: list[Frame], expert_progress_m: float | None) -> tuple[EpisodeMetrics, list[str]]:
    """Metrics of the closed-loop part of an episode (module doc); also the kinds of at-fault collisions."""
    at_fault, not_at_fault = _collisions(frames, episode)
    progress = _progress(episode, frames)
    reference = progress if expert_progress_m is None else expert_progress_m
    completion = 1.0 if reference < 1.0 else float(np.clip(progress / reference, 0.0, 1.0))
    offroad = _offroad_steps(episode, frames)
    red = _red_lights(episode, frames)
    factor = np.prod([PENALTIES[k] for k in at_fault]) * PENALTIES["red_light"] ** red
    dt = frames[1].t - frames[0].t
    score = completion * factor * (1.0 - offroad / max(len(frames) - 1, 1))
    metrics = EpisodeMetrics(len(at_fault), not_at_fault, offroad * dt, red, progress, completion, _comfort(frames),
                             float(score))
    return metrics, at_fault


def ego_box(pose: EgoPose) -> shapely.Polygon:
    return shapely.polygons(box_corners(pose.centre, np.array(pose.yaw), EGO_LENGTH_M, EGO_WIDTH_M))


def _collisions(frames: list[Frame], episode: Episode) -> tuple[list[str], int]:
    """Kinds of the at-fault collisions (one per agent and contact) and the number of others."""
    categories = [a.type for a in [*episode.setup.traffic.vehicles[1:], *episode.setup.traffic.pedestrians]]
    touching: set[int] = set()
    at_fault, others = [], 0
    for frame in frames[1:]:
        boxes = shapely.polygons(box_corners(frame.others_xy, frame.others_yaw, frame.others_size[:, 0],
                                             frame.others_size[:, 1]))
        hits = set(np.flatnonzero(shapely.intersects(ego_box(frame.ego), boxes)).tolist())
        heading = np.array([math.cos(frame.ego.yaw), math.sin(frame.ego.yaw)])
        for n in hits - touching:
            ahead = float(np.dot(frame.others_xy[n] - frame.ego.xy, heading)) > 0.0
            if frame.ego.speed >= STOPPED_SPEED and ahead:
                at_fault.append("pedestrian" if categories[n].kind == "pedestrian" else "vehicle")
            else:
                others += 1
        touching = hits
    return at_fault, others


def _progress(episode: Episode, frames: list[Frame]) -> float:
    route = shapely.LineString(episode.route_xy)
    return float(route.project(shapely.Point(frames[-1].ego.xy)) - route.project(shapely.Point(frames[0].ego.xy)))


def _offroad_steps(episode: Episode, frames: list[Frame]) -> int:
    return int(sum(not episode.drivable_area.covers(ego_box(f.ego)) for f in frames[1:]))


def _red_lights(episode: Episode, frames: list[Frame]) -> int:
    """Stop lines of the route the ego box's front crossed while its arm was not green."""
    route = shapely.LineString(episode.route_xy)
    count = 0
    signals = episode.setup.traffic.signals
    for before, after in itertools.pairwise(frames):
        heading = np.array([math.cos(after.ego.yaw), math.sin(after.ego.yaw)])
        if route.distance(shapely.Point(after.ego.centre)) > ON_ROUTE_M:
            continue
        front_before = route.project(shapely.Point(before.ego.centre + heading * EGO_LENGTH_M / 2))
        front_after = route.project(shapely.Point(after.ego.centre + heading * EGO_LENGTH_M / 2))
        for stop_s, junction, arm in episode.traffic_ego.route.stops:
            if front_before < stop_s <= front_after and signals[junction].state(after.t) != arm:
                count += 1
    return count


def _comfort(frames: list[Frame]) -> float:
    """Share of steps whose acceleration, jerk, lateral acceleration and yaw rate are within nuPlan's bounds."""
    speed = np.array([f.ego.speed for f in frames])
    yaw = np.unwrap([f.ego.yaw for f in frames])
    dt = frames[1].t - frames[0].t
    window = min(7, len(speed) - (1 - len(speed) % 2))
    if window < 5:
        return 1.0
    accel = savgol_filter(speed, window, 2, deriv=1, delta=dt)
    jerk = savgol_filter(speed, window, 3, deriv=2, delta=dt)
    yaw_rate = savgol_filter(yaw, window, 2, deriv=1, delta=dt)
    ok = ((accel >= LON_ACCEL_BOUNDS[0]) & (accel <= LON_ACCEL_BOUNDS[1]) & (np.abs(jerk) <= MAX_LON_JERK)
          & (np.abs(speed * yaw_rate) <= MAX_LAT_ACCEL) & (np.abs(yaw_rate) <= MAX_YAW_RATE))
    return float(ok.mean())
