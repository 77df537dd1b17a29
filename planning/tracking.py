"""Follow a planned trajectory with a kinematic bicycle: what the ego would really do with a plan.

Why: a pseudo-simulation score (NAVSIM's PDM score) and a closed-loop run both need the poses a
car reaches when it *drives* the plan, not the plan's points: a plan that starts at 0 m/s while
the car moves at 10 m/s, or that turns on the spot, cannot be followed exactly. No library in the
pinned set has a vehicle controller, so this is a small one written out.

Model (nuPlan's ego parameters): kinematic bicycle about the rear axle, wheelbase 2.588 m,
steering angle within ±0.6 rad, acceleration within [-8, 4] m/s² (physical limits; comfort is
scored elsewhere), integrated at 10 Hz.
Controller: each step looks `PREVIEW_S` ahead on the plan in *time* (the plan is a timed
sequence of positions); the steering follows pure pursuit toward that point, and the
acceleration closes the speed gap to the speed the plan needs to reach it (a proportional
term on the along-track position error plus a speed feed-forward).

Frame and units: the current LiDAR frame of `vla_world.data.records` (x right, y forward,
metres), yaw in rad CCW from +x, so the ego starts at (0, 0) heading +y (yaw = pi/2). Plans are
the six waypoints of t = 0.5 .. 3.0 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

WHEELBASE_M = 2.588
MAX_STEER_RAD = 0.6
ACCEL_LIMITS = (-8.0, 4.0)  # m/s^2
DT = 0.1  # s, simulation step
PLAN_DT = 0.5  # s between plan waypoints
PREVIEW_S = 0.5  # s of the plan ahead the controller aims at
POSITION_GAIN = 1.0  # 1/s^2: acceleration per metre of along-track lag
SPEED_GAIN = 2.0  # 1/s: acceleration per m/s of speed gap
MIN_AIM_M = 0.5  # below this distance to the aim point the car holds its heading
MAX_JERK = 8.0  # m/s^3: how fast the applied acceleration can change (a powertrain/brake limit, above the comfort bound)


@dataclass(frozen=True)
class EgoState:
    """Where the ego starts: at the origin of the current frame, heading +y, at `speed`."""

    speed: float  # m/s, >= 0
    accel: float = 0.0  # m/s^2 along the heading now: the controller's output starts here (no jump at t = 0)


@dataclass(frozen=True)
class Rollout:
    """Poses the tracked ego reaches, every DT from t = 0 (row 0 is the start state)."""

    xy: np.ndarray  # (T+1, 2) rear-axle position, metres
    yaw: np.ndarray  # (T+1,) rad
    speed: np.ndarray  # (T+1,) m/s
    accel: np.ndarray  # (T,) m/s^2 applied in each step
    steer: np.ndarray  # (T,) rad applied in each step

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self.yaw)) * DT

    def at_plan_times(self) -> np.ndarray:
        """(6, 2) positions at t = 0.5 .. 3.0 s (compare with the plan)."""
        every = round(PLAN_DT / DT)
        return self.xy[every::every][:6]


class PlanReference:
    """The plan as a smooth function of time: a cubic spline through (0 s, origin) and the waypoints.

    Not-a-knot end conditions reproduce constant-acceleration motion exactly, so a kinematically
    consistent plan gives a reference whose speed and acceleration are the plan's own. Times are
    clamped to [0, the last waypoint]: after its end the plan holds its last point.
    """

    def __init__(self, plan: np.ndarray):
        plan = np.asarray(plan, dtype=np.float64).reshape(-1, 2)
        self.end = len(plan) * PLAN_DT
        self.spline = CubicSpline(np.arange(len(plan) + 1) * PLAN_DT, np.vstack([np.zeros((1, 2)), plan]), axis=0)

    def position(self, t: float) -> np.ndarray:
        return self.spline(min(max(t, 0.0), self.end))

    def velocity(self, t: float) -> np.ndarray:
        return self.spline(t, 1) if 0.0 <= t < self.end else np.zeros(2)


@dataclass(frozen=True)
class _Schedule:
    """The reference sampled at every control step (one vectorised spline call each)."""

    position: np.ndarray  # (T, 2) at t
    velocity: np.ndarray  # (T, 2)
    acceleration: np.ndarray  # (T, 2)
    aim: np.ndarray  # (T, 2) position at t + PREVIEW_S


def _schedule(ref: PlanReference, steps: int) -> _Schedule:
    t = np.arange(steps) * DT
    inside = (t < ref.end)[:, None]
    return _Schedule(ref.spline(np.clip(t, 0.0, ref.end)), np.where(inside, ref.spline(np.clip(t, 0.0, ref.end), 1), 0.0),
                     np.where(inside, ref.spline(np.clip(t, 0.0, ref.end), 2), 0.0),
                     ref.spline(np.clip(t + PREVIEW_S, 0.0, ref.end)))


def track(plan: np.ndarray, start: EgoState, horizon_s: float = 3.0) -> Rollout:
    """Drive `plan` ((6, 2) waypoints, 0.5 s apart) from `start` for `horizon_s` seconds."""
    steps = round(horizon_s / DT)
    ref = _schedule(PlanReference(plan), steps)
    xy, yaw, v = np.zeros(2), np.pi / 2, max(float(start.speed), 0.0)
    out_xy, out_yaw, out_v, out_a, out_s = [xy], [yaw], [v], [], []
    accel = float(start.accel)
    for k in range(steps):
        wanted, steer = _control(ref, k, xy, yaw, v)
        accel += min(max(wanted - accel, -MAX_JERK * DT), MAX_JERK * DT)
        xy, yaw, v = _bicycle_step(xy, yaw, v, accel, steer)
        out_xy.append(xy), out_yaw.append(yaw), out_v.append(v), out_a.append(accel), out_s.append(steer)
    return Rollout(np.array(out_xy), np.array(out_yaw), np.array(out_v), np.array(out_a), np.array(out_s))


def _control(ref: _Schedule, k: int, xy: np.ndarray, yaw: float, v: float) -> tuple[float, float]:
    """(acceleration, steering angle) that follow the plan from the state at step k."""
    heading = np.array([np.cos(yaw), np.sin(yaw)])
    lag = float(np.dot(ref.position[k] - xy, heading))  # > 0: the plan is ahead of us
    ref_speed = float(np.dot(ref.velocity[k], heading))  # the plan's speed along our heading
    accel = float(np.dot(ref.acceleration[k], heading)) + SPEED_GAIN * (ref_speed - v) + POSITION_GAIN * lag
    accel = min(max(accel, ACCEL_LIMITS[0]), ACCEL_LIMITS[1])
    return accel, _pure_pursuit(ref.aim[k] - xy, heading)


def _pure_pursuit(to_aim: np.ndarray, heading: np.ndarray) -> float:
    """Steering toward the aim point: curvature 2 sin(alpha) / distance, on a bicycle of WHEELBASE_M."""
    distance = float(np.linalg.norm(to_aim))
    forward = float(np.dot(to_aim, heading))
    if distance < MIN_AIM_M or forward <= 0.0:  # at the aim point, or it lies behind: keep the heading
        return 0.0
    lateral = heading[0] * to_aim[1] - heading[1] * to_aim[0]  # > 0: aim to the left (CCW)
    curvature = 2.0 * lateral / distance**2
    return min(max(float(np.arctan(curvature * WHEELBASE_M)), -MAX_STEER_RAD), MAX_STEER_RAD)


def _bicycle_step(xy: np.ndarray, yaw: float, v: float, accel: float, steer: float) -> tuple[np.ndarray, float, float]:
    """One DT of the rear-axle kinematic bicycle; the speed never goes negative (no reversing)."""
    new_v = max(v + accel * DT, 0.0)
    mean_v = (v + new_v) / 2
    new_yaw = yaw + mean_v * np.tan(steer) / WHEELBASE_M * DT
    mid_yaw = (yaw + new_yaw) / 2
    new_xy = xy + mean_v * DT * np.array([np.cos(mid_yaw), np.sin(mid_yaw)])
    return new_xy, float(new_yaw), float(new_v)
