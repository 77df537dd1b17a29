"""A short-term kinematic prior for the prompt: the ego's own motion rolled forward 3 s.

Why: a tiny LLM trained for minutes cannot do trigonometry on the ego-state digits, but it can
learn to copy and correct a plausible trajectory. VLA-World (paper 004, A.2) conditions its
planner on such a physics-grounded short-term prediction; ours is a constant-turn-rate,
constant-acceleration (CTRA) rollout of the record's current velocity, acceleration and yaw rate.
The LLM still writes the trajectory; the prior is only text in its prompt.

Frame: current LiDAR_TOP (x right, y forward, metres); outputs t = 0.5 .. 3.0 s.
"""

from __future__ import annotations

import numpy as np

from vla_world.data.records import NUM_FUTURE, STEP_SECONDS, SampleRecord

SUBSTEPS = 10  # midpoint sub-steps per 0.5 s; < 1 cm from the closed form over 3 s


def ctra_rollout(velocity: np.ndarray, acceleration: np.ndarray, yaw_rate: float,
                 stop_at_zero: bool = True) -> np.ndarray:
    """(6, 2) positions from velocity (m/s), acceleration (m/s^2) and yaw rate (rad/s), ego at the origin.

    `stop_at_zero`: braking ends at standstill instead of reversing.
    """
    speed = float(np.hypot(*velocity))
    heading = float(np.arctan2(velocity[1], velocity[0])) if speed > 0.1 else np.pi / 2
    # longitudinal acceleration only: the lateral part is already the turn (speed * yaw rate)
    accel = float(np.dot(acceleration, [np.cos(heading), np.sin(heading)]))
    dt = STEP_SECONDS / SUBSTEPS
    pos = np.zeros(2)
    out = np.zeros((NUM_FUTURE, 2))
    for step in range(NUM_FUTURE * SUBSTEPS):
        # midpoint rule (second order): mean speed and mean heading over the sub-step
        new_speed = max(0.0, speed + accel * dt) if stop_at_zero else speed + accel * dt
        mid_heading = heading + 0.5 * yaw_rate * dt
        pos += 0.5 * (speed + new_speed) * dt * np.array([np.cos(mid_heading), np.sin(mid_heading)])
        speed, heading = new_speed, heading + yaw_rate * dt
        if (step + 1) % SUBSTEPS == 0:
            out[(step + 1) // SUBSTEPS - 1] = pos
    return out


def kinematic_prior(record: SampleRecord) -> np.ndarray:
    """The CTRA rollout of `record`'s ego state: (6, 2) metres, current LiDAR frame."""
    return ctra_rollout(record.ego_velocity, record.ego_acceleration, record.ego_yaw_rate)
