"""VLA-World's kinematic short-term predictor (supplementary A.2, eqs. 3-5), fitted and rolled out.

VLA-World conditions its imagined next frame on a physics prior: the ego's position a short
horizon tau ahead from its recent motion and its command. All positions here are in the current
LiDAR_TOP frame (x right, y forward, metres; the ego is at the origin now), times in seconds.

  eq. 3  v_t    = (P_t - P_{t-1}) / dt              a_hist = (v_t - v_{t-1}) / dt
  eq. 4  a_eff  = (1 - lambda) a_hist + lambda a_goal,  a_goal = 2 / tau^2 (dP_ideal(c, tau) - v_t tau)
  eq. 5  P_{t+tau} = P_t + v_t tau + a_eff tau^2 / 2

with dt = 0.5 s (the keyframe step), P_t = (0, 0) and P_{t-1}, P_{t-2} the last two past poses.

Choices the paper leaves open (documented in docs/evaluation.md too):
  * Ideal displacement. dP_ideal(c, tau) = |v_t| tau d(c, tau): the distance the ego would cover
    at its current speed, along a unit-speed "command template" d(c, tau) (one 2-vector per
    command and horizon). A fixed metre offset per command would ignore speed, which dominates
    the displacement; the template keeps the turn shape and scales with speed. d is the least-
    squares fit of |v_t| tau d = GT displacement over the train split, per command and step:
    d = sum(s tau g) / sum((s tau)^2).
  * lambda. One scalar in [0, 1] chosen by grid search (step 0.05) minimising the mean L2 over
    all valid future steps of the train split. With the template fixed, eq. 5 becomes the convex
    blend (1 - lambda) (constant acceleration) + lambda dP_ideal, so the search is exact and cheap.
  * Rollout. The "3 s plan" evaluates eq. 5 at tau = 0.5, 1.0, ..., 3.0 s from the same state.
  * Short history. If P_{t-1} is unknown (first keyframe) v_t falls back to the record's
    `ego_velocity`; if P_{t-2} is unknown a_hist = 0.

Fit and use:
    params = fit_kinematic(train_records)     # KinematicParams
    params.save("outputs/baselines/kinematic_params.json")
    waypoints = predict_kinematic(planner_input(record), params)  # (6, 2)

The CTRA prior (`ctra_prior`, below) is a second, parameter-free short-term predictor: the ego's
current velocity, acceleration and yaw rate rolled forward 3 s (constant turn rate, constant
acceleration). The planning prompt shows it as text ("Kinematic prior (CTRA, next 3 seconds)"),
so the evaluation reports it as a baseline row of its own: a planner that copies its prompt
scores exactly that row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_world.data.planner_input import PlannerInput, planner_input
from vla_world.data.records import (
    COMMANDS,
    FUTURE_SECONDS,
    NUM_FUTURE,
    STEP_SECONDS,
    SampleRecord,
)

HORIZONS = FUTURE_SECONDS  # tau for the six future steps, s
CTRA_SUBSTEPS = 10  # midpoint sub-steps per 0.5 s; < 1 cm from the closed form over 3 s
LAMBDA_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


@dataclass
class KinematicParams:
    """Fitted constants of the predictor (see module doc for what each means)."""

    fusion_weight: float  # lambda in eq. 4, in [0, 1]
    command_templates: np.ndarray  # (3, 6, 2) unit-speed displacement d(c, tau), metres per (m/s * s)
    num_train_samples: int = 0  # records the fit used
    train_l2: float = float("nan")  # mean L2 (m) over valid train steps at the chosen lambda

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    def to_dict(self) -> dict:
        return {
            "fusion_weight_lambda": self.fusion_weight,
            "command_templates": {name: np.round(self.command_templates[c], 5).tolist() for c, name in enumerate(COMMANDS)},
            "horizons_s": HORIZONS.tolist(),
            "frame": "current LiDAR_TOP (x right, y forward); template in metres per (m/s x s)",
            "num_train_samples": self.num_train_samples,
            "train_l2_m": self.train_l2,
        }

    @classmethod
    def load(cls, path: str | Path) -> KinematicParams:
        data = json.loads(Path(path).read_text())
        try:
            templates = np.array([data["command_templates"][name] for name in COMMANDS], dtype=np.float64)
            return cls(float(data["fusion_weight_lambda"]), templates, int(data.get("num_train_samples", 0)),
                       float(data.get("train_l2_m", float("nan"))))
        except KeyError as exc:
            raise ValueError(f"{path}: kinematic parameters lack {exc}; re-run tools/run_baselines.py") from exc


def finite_difference_state(past: np.ndarray, past_mask: np.ndarray, fallback_velocity: np.ndarray,
                            dt: float = STEP_SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 3: (v_t, a_hist) from past poses (4, 2) at t = -2 .. -0.5 s and the current pose (0, 0)."""
    current = np.zeros(2)
    if not past_mask[-1]:
        return np.asarray(fallback_velocity, dtype=np.float64), np.zeros(2)
    velocity = (current - past[-1]) / dt
    if not past_mask[-2]:
        return velocity, np.zeros(2)
    previous_velocity = (past[-1] - past[-2]) / dt
    return velocity, (velocity - previous_velocity) / dt


def goal_acceleration(ideal_displacement: np.ndarray, velocity: np.ndarray, tau: float) -> np.ndarray:
    """a_goal of eq. 4: the constant acceleration that covers `ideal_displacement` in `tau` seconds."""
    return 2.0 / tau**2 * (ideal_displacement - velocity * tau)


def kinematic_position(velocity: np.ndarray, history_acc: np.ndarray, goal_acc: np.ndarray,
                       fusion_weight: float, tau: float) -> np.ndarray:
    """Eqs. 4-5 with P_t = 0: the position tau seconds ahead under the fused acceleration."""
    effective_acc = (1.0 - fusion_weight) * history_acc + fusion_weight * goal_acc
    return velocity * tau + 0.5 * effective_acc * tau**2


def predict_kinematic(inp: PlannerInput, params: KinematicParams) -> np.ndarray:
    """(6, 2) waypoints at t = 0.5 .. 3.0 s in the input's LiDAR frame."""
    velocity, history_acc = finite_difference_state(inp.ego_past, inp.ego_past_mask, inp.ego_velocity)
    speed = float(np.linalg.norm(velocity))
    waypoints = np.zeros((NUM_FUTURE, 2))
    for k, tau in enumerate(HORIZONS):
        ideal = speed * tau * params.command_templates[inp.command, k]
        goal_acc = goal_acceleration(ideal, velocity, tau)
        waypoints[k] = kinematic_position(velocity, history_acc, goal_acc, params.fusion_weight, tau)
    return waypoints


def fit_kinematic(records: list[SampleRecord], lambda_grid: np.ndarray = LAMBDA_GRID) -> KinematicParams:
    """Fit the command templates (least squares) and lambda (grid search) on `records` (train)."""
    if not records:
        raise ValueError("fit_kinematic: no training records; check the dataroot and split")
    templates = fit_command_templates(records)
    # Eq. 5 is linear in lambda: P = constant-acceleration part + lambda * (ideal - that part),
    # so both parts are computed once and every grid point is a cheap blend.
    inputs = [planner_input(r) for r in records]
    inertial = np.stack([predict_kinematic(inp, KinematicParams(0.0, templates)) for inp in inputs])
    intended = np.stack([predict_kinematic(inp, KinematicParams(1.0, templates)) for inp in inputs])
    gt = np.stack([r.ego_future for r in records]).astype(np.float64)
    mask = np.stack([r.ego_future_mask for r in records])
    if not mask.any():
        raise ValueError("fit_kinematic: no record has a valid future step; the split is too short")
    scores = []
    for lam in lambda_grid:
        errors = np.linalg.norm((1 - lam) * inertial + lam * intended - gt, axis=2)[mask]
        scores.append((float(errors.mean()), float(lam)))
    best_l2, best_lambda = min(scores)
    return KinematicParams(best_lambda, templates, len(records), best_l2)


def fit_command_templates(records: list[SampleRecord]) -> np.ndarray:
    """d(c, tau) = sum(s tau g) / sum((s tau)^2) over valid steps; straight ahead where a command is unseen."""
    numerator = np.zeros((len(COMMANDS), NUM_FUTURE, 2))
    denominator = np.zeros((len(COMMANDS), NUM_FUTURE, 1))
    for record in records:
        velocity, _ = finite_difference_state(record.ego_past, record.ego_past_mask, record.ego_velocity)
        reach = np.linalg.norm(velocity) * HORIZONS[:, None] * record.ego_future_mask[:, None]
        numerator[record.command] += reach * record.ego_future
        denominator[record.command] += reach**2
    straight = np.broadcast_to(np.array([0.0, 1.0]), numerator.shape)
    # Commands without moving samples keep the straight-ahead template instead of 0/0.
    return np.where(denominator > 1e-9, numerator / np.maximum(denominator, 1e-9), straight)


def ctra_rollout(velocity: np.ndarray, acceleration: np.ndarray, yaw_rate: float,
                 stop_at_zero: bool = True) -> np.ndarray:
    """(6, 2) positions from velocity (m/s), acceleration (m/s^2) and yaw rate (rad/s), ego at the origin.

    Constant turn rate and constant (longitudinal) acceleration, integrated with the midpoint rule.
    `stop_at_zero`: braking ends at standstill instead of reversing.
    """
    speed = float(np.hypot(*velocity))
    heading = float(np.arctan2(velocity[1], velocity[0])) if speed > 0.1 else np.pi / 2
    # longitudinal acceleration only: the lateral part is already the turn (speed * yaw rate)
    accel = float(np.dot(acceleration, [np.cos(heading), np.sin(heading)]))
    dt = STEP_SECONDS / CTRA_SUBSTEPS
    pos = np.zeros(2)
    out = np.zeros((NUM_FUTURE, 2))
    for step in range(NUM_FUTURE * CTRA_SUBSTEPS):
        new_speed = max(0.0, speed + accel * dt) if stop_at_zero else speed + accel * dt
        mid_heading = heading + 0.5 * yaw_rate * dt
        pos += 0.5 * (speed + new_speed) * dt * np.array([np.cos(mid_heading), np.sin(mid_heading)])
        speed, heading = new_speed, heading + yaw_rate * dt
        if (step + 1) % CTRA_SUBSTEPS == 0:
            out[(step + 1) // CTRA_SUBSTEPS - 1] = pos
    return out


def ctra_prior(inp: PlannerInput) -> np.ndarray:
    """The CTRA rollout of the input's ego state: (6, 2) metres, current LiDAR frame (what the prompt shows)."""
    return ctra_rollout(inp.ego_velocity, inp.ego_acceleration, inp.ego_yaw_rate)
