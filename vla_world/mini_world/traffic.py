"""Traffic simulation: vehicles follow lane routes with the Intelligent Driver Model (IDM).

Every vehicle (the ego included) looks `LOOKAHEAD` metres along its own route and treats as its
leader the nearest agent whose footprint overlaps that path: the car ahead, a car merging or
crossing, a pedestrian on a crosswalk, or a red light's stop line. One mechanism therefore
gives car following, stopping for crossing pedestrians and stopping at red lights. Speeds also
drop ahead of turns (lateral acceleration limit). Pedestrians walk polylines and wait at
crosswalks for the walk phase. All agents are advanced together with numpy arrays.

Frame and units: global map frame, metres, seconds, yaw radians CCW from +x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .agents import AgentType
from .road_network import RoadNetwork, centerline_length
from .signals import WALK, SignalPlan

ROUTE_STEP = 1.0  # metres between route samples, so arc length == sample index
LOOKAHEAD = 45  # samples (metres) of route each vehicle checks for obstacles
LATERAL_ACCEL = 1.5  # m/s^2, sets the speed through a turn of radius r: sqrt(a * r)
MAX_BRAKE = 8.0  # m/s^2, hard limit of any deceleration
COMMIT_DECEL = 4.5  # a vehicle that would need more than this to stop for a light goes through
STOP_LINE_CLEARANCE = 0.5  # metres between a stopped front bumper and the stop line
PED_SPACING = 0.5  # metres between pedestrian path samples
TAIL = 80.0  # metres of straight extrapolation after a route's last lane
CROSSING_LOOKAHEAD = 18.0  # metres of a pedestrian's path checked for vehicles before it steps out


@dataclass
class Route:
    """A vehicle's path: lanes, samples every ROUTE_STEP m, curve speed limits and stop lines."""

    lanes: list[int]
    xy: np.ndarray  # (K, 2)
    speed_limit: np.ndarray  # (K,) m/s, inf on straights
    stops: list[tuple[float, int, int]]  # (arc length of the stop line, junction, entry arm)


def build_route(net: RoadNetwork, lane_ids: list[int]) -> Route:
    """Resample the concatenated lanes every ROUTE_STEP m and collect their stop lines."""
    pieces, limits, stops, offset = [], [], [], 0.0
    for k, lane_id in enumerate(lane_ids):
        lane = net.lanes[lane_id]
        pts = lane.points if k == 0 else lane.points[1:]
        pieces.append(pts)
        limit = math.sqrt(LATERAL_ACCEL * lane.radius) if lane.kind == "connector" and lane.turn != "straight" else math.inf
        limits.append(np.full(len(pts), limit))
        offset += lane.length
        if lane.kind == "road":
            stops.append((offset, lane.junction, lane.arm))
    pts, lim = np.concatenate(pieces), np.concatenate(limits)
    heading = pts[-1] - pts[-2]
    tail = pts[-1] + np.arange(1, int(TAIL) + 1)[:, None] * heading / np.linalg.norm(heading)
    pts, lim = np.concatenate([pts, tail]), np.concatenate([lim, np.full(len(tail), math.inf)])
    cum = centerline_length(pts)
    s = np.arange(0.0, cum[-1], ROUTE_STEP)
    xy = np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], axis=1)
    speed_limit = lim[np.clip(np.searchsorted(cum, s), 0, len(lim) - 1)]
    return Route(list(lane_ids), xy, speed_limit, stops)


def extend_randomly(net: RoadNetwork, lane_ids: list[int], min_length: float, rng: np.random.Generator,
                    straight_weight: float = 2.0) -> list[int]:
    """Append random successors (straight favoured) until the route is at least `min_length` m."""
    lane_ids = list(lane_ids)
    length = sum(net.lanes[i].length for i in lane_ids)
    while length < min_length:
        options = net.lanes[lane_ids[-1]].successors
        weights = np.array([straight_weight if net.lanes[o].turn == "straight" else 1.0 for o in options])
        lane_ids.append(options[int(rng.choice(len(options), p=weights / weights.sum()))])
        length += net.lanes[lane_ids[-1]].length
    return lane_ids


@dataclass
class Vehicle:
    type: AgentType
    size: tuple[float, float, float]  # (w, l, h)
    desired_speed: float  # m/s
    route: Route
    s: float  # arc length of the box centre along the route, metres
    speed: float  # m/s


@dataclass
class Pedestrian:
    type: AgentType
    size: tuple[float, float, float]
    walk_speed: float  # m/s
    path: np.ndarray  # (K, 2) samples every PED_SPACING m; the last one is repeated so it stops there
    wait_at: float = math.inf  # arc length of a crosswalk kerb where it waits for the walk phase
    junction: int | None = None  # the junction whose signal it obeys
    s: float = 0.0


@dataclass
class AgentTrack:
    """Sampled states of one agent at the recorded times."""

    type: AgentType
    size: tuple[float, float, float]
    xy: np.ndarray  # (F, 2) box centre
    yaw: np.ndarray  # (F,)
    velocity: np.ndarray  # (F, 2) m/s

    @property
    def speed(self) -> np.ndarray:
        return np.linalg.norm(self.velocity, axis=1)


@dataclass
class TrafficSimulation:
    net: RoadNetwork
    signals: dict[int, SignalPlan]
    vehicles: list[Vehicle]  # vehicles[0] is the ego
    pedestrians: list[Pedestrian] = field(default_factory=list)
    dt: float = 0.1

    def run(self, duration: float, record_every: float) -> list[AgentTrack]:
        """Simulate `duration` s; record every `record_every` s from t=0. Returns vehicles then pedestrians."""
        state = _State.from_agents(self.vehicles, self.pedestrians)
        per_record = round(record_every / self.dt)
        steps = round(duration / self.dt)
        frames = []
        for step in range(steps + 1):
            t = step * self.dt
            poses = state.poses()
            if step % per_record == 0:
                frames.append(poses)
            if step < steps:
                self._advance(state, poses, t)
        return self._tracks(frames)

    def _advance(self, st: _State, poses: tuple, t: float) -> None:
        xy, yaw, speed = poses
        gap, lead_speed = self._leaders(st, xy, yaw, speed)
        gap, lead_speed = self._apply_lights(st, t, gap, lead_speed)
        v0 = self._curve_limited_speed(st)
        st.v = _idm_step(st, gap, lead_speed, v0, self.dt)
        st.s = np.minimum(st.s + st.v * self.dt, st.route_xy.shape[1] - 2.0)
        self._walk(st, t, xy, yaw)

    def _leaders(self, st: _State, xy: np.ndarray, yaw: np.ndarray, speed: np.ndarray):
        """Nearest agent overlapping each vehicle's path ahead: (gap m, its speed along the path).

        Only pairs closer than the look-ahead are tested, which keeps this linear in practice."""
        nv, n = len(st.v), len(xy)
        offset = xy[None] - xy[:nv, None]
        ahead_of = offset[..., 0] * np.cos(yaw[:nv, None]) + offset[..., 1] * np.sin(yaw[:nv, None]) > -6.0
        near = (np.square(offset).sum(-1) < (LOOKAHEAD + 8.0) ** 2) & ahead_of
        near[np.arange(nv), np.arange(nv)] = False
        vi, ni = np.nonzero(near)
        gap = np.full((nv, n), np.inf)
        if len(vi):
            idx = np.floor(st.s).astype(int)
            ahead_idx = np.minimum(idx[vi, None] + 1 + np.arange(LOOKAHEAD), st.route_xy.shape[1] - 1)
            ahead = st.route_xy[vi[:, None], ahead_idx]  # (P, K, 2)
            cos_rel = np.cos(yaw[ni] - yaw[vi])
            sin_rel = np.sqrt(np.clip(1.0 - cos_rel**2, 0.0, 1.0))
            length, width, ped = st.length[ni], st.width[ni], st.is_ped[ni]
            reach = st.width[vi] / 2 + (sin_rel * length + np.abs(cos_rel) * width) / 2 + np.where(ped, 1.2, 0.3)
            hit = np.square(ahead - xy[ni][:, None]).sum(-1) < (reach**2)[:, None]
            first = hit.argmax(axis=1)
            depth = (np.abs(cos_rel) * length + sin_rel * width) / 2 + np.where(ped, 1.0, 0.0)
            arc = ahead_idx[np.arange(len(vi)), first] - st.s[vi]
            pair_gap = np.maximum(arc - st.length[vi] / 2 - depth, 0.1)
            gap[vi, ni] = np.where(hit.any(axis=1), pair_gap, np.inf)
        cos_all = np.cos(yaw[None, :nv] - yaw[:nv, None])
        gap = _break_mutual_blocking(gap, cos_all, nv)
        lead = gap.argmin(axis=1)
        rows = np.arange(nv)
        lead_speed = np.clip(speed[lead] * np.cos(yaw[lead] - yaw[:nv]), 0.0, None)
        return gap[rows, lead], lead_speed

    def _apply_lights(self, st: _State, t: float, gap: np.ndarray, lead_speed: np.ndarray):
        """A stop line whose arm is not green is a standing obstacle, unless it is too late to stop."""
        gap, lead_speed = gap.copy(), lead_speed.copy()
        for i, stops in enumerate(st.stops):
            for stop_s, junction, arm in stops:
                distance = stop_s - st.s[i] - st.length[i] / 2
                if distance < -0.5 or distance > LOOKAHEAD + 20:
                    continue
                if self.signals[junction].state(t) != arm:
                    room = max(distance - STOP_LINE_CLEARANCE, 0.05)
                    committed = st.v[i] ** 2 / (2 * room) > COMMIT_DECEL and distance < 15.0
                    # IDM keeps min_gap to a leader; a stop line is no car, so let the bumper reach it
                    virtual_gap = room + st.min_gap[i]
                    if not committed and virtual_gap < gap[i]:
                        gap[i], lead_speed[i] = virtual_gap, 0.0
                break  # only the next stop line matters
        return gap, lead_speed

    def _curve_limited_speed(self, st: _State) -> np.ndarray:
        idx = np.floor(st.s).astype(int)
        ahead_idx = np.minimum(idx[:, None] + np.arange(LOOKAHEAD), st.route_xy.shape[1] - 1)
        limit = np.take_along_axis(st.speed_limit, ahead_idx, axis=1)
        arc = np.maximum(ahead_idx - st.s[:, None], 0.0)
        allowed = np.sqrt(limit**2 + 2.0 * st.comfort_decel[:, None] * arc).min(axis=1)
        return np.minimum(st.desired_speed, allowed)

    def _walk(self, st: _State, t: float, xy: np.ndarray, yaw: np.ndarray) -> None:
        """Advance pedestrians. One reaching its crosswalk kerb steps out only with >= 3 s of walk
        phase left and no vehicle standing on its crossing; once out, vehicles yield to it."""
        if not len(st.ped_s):
            return
        nxt = st.ped_s + st.ped_speed * self.dt
        at_kerb = (st.ped_s <= st.ped_wait) & (st.ped_wait < nxt)
        hold = np.zeros(len(nxt), bool)
        for k in np.nonzero(at_kerb)[0]:
            j = st.ped_junction[k]
            walk_ok = j < 0 or (self.signals[j].state(t) == WALK and self.signals[j].walk_remaining(t) >= 3.0)
            hold[k] = not walk_ok or _crossing_blocked(st, k, xy, yaw)
        st.ped_s = np.where(hold, st.ped_wait, np.minimum(nxt, st.ped_end))

    def _tracks(self, frames: list[tuple]) -> list[AgentTrack]:
        xy = np.stack([f[0] for f in frames], axis=1)
        yaw = np.stack([f[1] for f in frames], axis=1)
        speed = np.stack([f[2] for f in frames], axis=1)
        agents = [(v.type, v.size) for v in self.vehicles] + [(p.type, p.size) for p in self.pedestrians]
        velocity = speed[..., None] * np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
        return [AgentTrack(tp, size, xy[n], yaw[n], velocity[n]) for n, (tp, size) in enumerate(agents)]


def _crossing_blocked(st: _State, ped: int, xy: np.ndarray, yaw: np.ndarray) -> bool:
    """Whether a vehicle (box plus 0.5 m, or moving within 10 m) is on the next CROSSING_LOOKAHEAD m of `ped`'s path."""
    nv = len(st.v)
    start = int(np.rint(st.ped_wait[ped] / PED_SPACING))
    points = st.ped_path[ped, start: start + int(CROSSING_LOOKAHEAD / PED_SPACING)]  # (K, 2)
    rel = points[None] - xy[:nv, None]  # (V, K, 2)
    c, s = np.cos(yaw[:nv])[:, None], np.sin(yaw[:nv])[:, None]
    along = np.abs(rel[..., 0] * c + rel[..., 1] * s)
    across = np.abs(-rel[..., 0] * s + rel[..., 1] * c)
    inside = (along < st.length[:nv, None] / 2 + 0.5) & (across < st.width[:nv, None] / 2 + 0.5)
    approaching = (np.hypot(rel[..., 0], rel[..., 1]) < 10.0) & (st.v[:, None] > 1.0)  # too close to stop for it
    return bool((inside | approaching).any())


def _break_mutual_blocking(gap: np.ndarray, cos_rel: np.ndarray, nv: int) -> np.ndarray:
    """Two crossing vehicles that each see the other on their path: the one closer to the conflict goes."""
    block = np.isfinite(gap[:, :nv])
    crossing = block & block.T & (cos_rel < 0.7)
    gives_way = (gap[:, :nv] > gap[:, :nv].T) | ((gap[:, :nv] == gap[:, :nv].T) & (np.arange(nv)[:, None] > np.arange(nv)))
    out = gap.copy()
    out[:, :nv] = np.where(crossing & ~gives_way, np.inf, gap[:, :nv])
    return out


def _idm_step(st: _State, gap: np.ndarray, lead_speed: np.ndarray, v0: np.ndarray, dt: float) -> np.ndarray:
    v = st.v
    a, b = st.max_accel, st.comfort_decel
    desired_gap = st.min_gap + v * st.headway + v * (v - lead_speed) / (2 * np.sqrt(a * b))
    interaction = np.where(np.isfinite(gap), (np.maximum(desired_gap, 0.0) / np.maximum(gap, 0.1)) ** 2, 0.0)
    accel = a * (1 - (v / np.maximum(v0, 0.1)) ** 4 - interaction)
    accel = np.clip(accel, -MAX_BRAKE, a)
    return np.maximum(v + accel * dt, 0.0)


@dataclass
class _State:
    """Vehicles as padded route arrays (V, Kmax); pedestrians as padded paths (P, Kp); sizes for all N = V + P."""

    route_xy: np.ndarray
    speed_limit: np.ndarray
    stops: list
    s: np.ndarray
    v: np.ndarray
    desired_speed: np.ndarray
    max_accel: np.ndarray
    comfort_decel: np.ndarray
    headway: np.ndarray
    min_gap: np.ndarray
    length: np.ndarray  # (N,)
    width: np.ndarray  # (N,)
    is_ped: np.ndarray  # (N,)
    ped_path: np.ndarray  # (P, Kp, 2)
    ped_heading: np.ndarray  # (P, Kp) heading of each path sample, held through pauses
    ped_moving: np.ndarray  # (P, Kp) False where the path stands still
    ped_s: np.ndarray
    ped_speed: np.ndarray
    ped_wait: np.ndarray
    ped_junction: np.ndarray  # (P,) int, -1 when it obeys no signal
    ped_end: float

    @classmethod
    def from_agents(cls, vehicles: list[Vehicle], pedestrians: list[Pedestrian]) -> _State:
        kmax = max(len(v.route.xy) for v in vehicles)
        route_xy = np.stack([_pad(v.route.xy, kmax) for v in vehicles])
        limit = np.stack([np.pad(v.route.speed_limit, (0, kmax - len(v.route.xy)), constant_values=np.inf)
                          for v in vehicles])
        col = lambda f: np.array([f(v) for v in vehicles], dtype=np.float64)
        sizes = [v.size for v in vehicles] + [p.size for p in pedestrians]
        paths, heading, moving = _ped_arrays(pedestrians)
        return cls(route_xy, limit, [v.route.stops for v in vehicles], col(lambda v: v.s), col(lambda v: v.speed),
                   col(lambda v: v.desired_speed), col(lambda v: v.type.max_accel),
                   col(lambda v: v.type.comfort_decel), col(lambda v: v.type.headway), col(lambda v: v.type.min_gap),
                   np.array([s[1] for s in sizes]), np.array([s[0] for s in sizes]),
                   np.array([False] * len(vehicles) + [True] * len(pedestrians)),
                   paths, heading, moving, np.array([p.s for p in pedestrians], dtype=np.float64),
                   np.array([p.walk_speed for p in pedestrians], dtype=np.float64),
                   np.array([p.wait_at for p in pedestrians], dtype=np.float64),
                   np.array([-1 if p.junction is None else p.junction for p in pedestrians], dtype=int),
                   (paths.shape[1] - 1) * PED_SPACING)

    def poses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xy (N,2), yaw (N,), speed (N,)) of all agents now."""
        idx = np.floor(self.s).astype(int)
        frac = (self.s - idx)[:, None]
        rows = np.arange(len(idx))
        p0, p1 = self.route_xy[rows, idx], self.route_xy[rows, idx + 1]
        back = self.route_xy[rows, np.maximum(idx - 1, 0)]
        fwd = self.route_xy[rows, np.minimum(idx + 2, self.route_xy.shape[1] - 1)]
        xy, yaw, speed = [p0 + frac * (p1 - p0)], [np.arctan2(fwd[:, 1] - back[:, 1], fwd[:, 0] - back[:, 0])], [self.v]
        if len(self.ped_s):
            u = self.ped_s / PED_SPACING
            i = np.minimum(np.floor(u).astype(int), self.ped_path.shape[1] - 2)
            rows = np.arange(len(i))
            a, b = self.ped_path[rows, i], self.ped_path[rows, i + 1]
            xy.append(a + (u - i)[:, None] * (b - a))
            yaw.append(self.ped_heading[rows, i])
            waiting = np.isclose(self.ped_s, self.ped_wait)
            speed.append(np.where(self.ped_moving[rows, i] & ~waiting, self.ped_speed, 0.0))
        return np.concatenate(xy), np.concatenate(yaw), np.concatenate(speed)


def _pad(xy: np.ndarray, k: int) -> np.ndarray:
    if len(xy) >= k:
        return xy
    step = xy[-1] - xy[-2]
    return np.concatenate([xy, xy[-1] + np.arange(1, k - len(xy) + 1)[:, None] * step])


def _ped_arrays(pedestrians: list[Pedestrian]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paths padded to a common length by standing at the end, their headings and moving flags."""
    if not pedestrians:
        return np.zeros((0, 2, 2)), np.zeros((0, 2)), np.zeros((0, 2), bool)
    k = max(len(p.path) for p in pedestrians) + 1
    paths = np.stack([np.concatenate([p.path, np.repeat(p.path[-1:], k - len(p.path), axis=0)]) for p in pedestrians])
    step = np.diff(paths, axis=1)
    moving = np.linalg.norm(step, axis=-1) > 1e-6
    heading = np.arctan2(step[..., 1], step[..., 0])
    for row in range(len(paths)):  # hold the last walking heading through standing samples
        last = heading[row, 0]
        for j in range(step.shape[1]):
            if moving[row, j]:
                last = heading[row, j]
            heading[row, j] = last
    moving = np.concatenate([moving, np.zeros((len(paths), 1), bool)], axis=1)
    heading = np.concatenate([heading, heading[:, -1:]], axis=1)
    return paths, heading, moving
