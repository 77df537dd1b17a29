"""The ego-state token: what the prompt says about the ego as one float vector for its own projector.

Why: the prompt writes the ego's velocity, acceleration, yaw rate, speed, 2 s history and the
CTRA rollout as digit text. A 4-layer tiny LLM trained for ~120 steps barely learns to parse and
do arithmetic on those digits, so as a planner it mostly copies the prior; the Ego-MLP baseline,
which reads the same numbers as a float vector, is twice as accurate. Many VLA planners feed ego
status as an embedding; with `PromptOptions.ego_token` the prompt carries one extra placeholder
(`<EGO>`) whose embedding is this vector through the `ego` projector
(`vla_world.model.projectors`). The text lines stay: the token repeats them, it adds nothing.

The vector reads `PlannerInput` only (no label can enter): the Ego-MLP's inputs
(`planning.baselines.ego_features`: past poses, their mask, velocity, acceleration, yaw rate,
speed, command one-hot) followed by the CTRA prior's six waypoints the prompt shows. Each entry
is divided by a fixed scale (`EGO_SCALES`, chosen from the mini world's train split so that
values are mostly within [-3, 3]; train-split std in brackets): positions 10 m (past y std
1.4-6.2 m, prior y std 1.4-9.1 m), velocity and speed 5 m/s (std 2.8), acceleration 2 m/s^2
(std 0.5-0.8), yaw rate 0.5 rad/s (std 0.14), masks and command 1. Fixed, not fitted, so the
vector of a sample never depends on which split or run computed it.
"""

from __future__ import annotations

import numpy as np

from planning.baselines import ego_features
from planning.kinematic import ctra_prior
from vla_world.data.planner_input import PlannerInput
from vla_world.data.records import COMMANDS

POSITION_SCALE = 10.0  # m: past poses and prior waypoints
VELOCITY_SCALE = 5.0  # m/s: velocity (x, y) and speed
ACCELERATION_SCALE = 2.0  # m/s^2
YAW_RATE_SCALE = 0.5  # rad/s

# entry names, in vector order (ego_features' order, then the prior)
EGO_FIELDS: tuple[str, ...] = (
    *(f"past_{t}_{a}" for t in range(4) for a in "xy"), *(f"past_mask_{t}" for t in range(4)),
    "vx", "vy", "ax", "ay", "yaw_rate", "speed", *(f"command_{c}" for c in range(len(COMMANDS))),
    *(f"prior_{t}_{a}" for t in range(6) for a in "xy"),
)
EGO_SCALES: np.ndarray = np.array(
    [POSITION_SCALE] * 8 + [1.0] * 4
    + [VELOCITY_SCALE] * 2 + [ACCELERATION_SCALE] * 2 + [YAW_RATE_SCALE, VELOCITY_SCALE]
    + [1.0] * len(COMMANDS) + [POSITION_SCALE] * 12, dtype=np.float32)
EGO_WIDTH = len(EGO_FIELDS)  # 33: the ego projector's input width (vla.json stores it)


def ego_token_features(inp: PlannerInput) -> np.ndarray:
    """(EGO_WIDTH,) float32: the Ego-MLP's inputs + the CTRA prior (metres), each over its EGO_SCALES entry."""
    if not isinstance(inp, PlannerInput):
        raise TypeError(f"ego_token_features takes a PlannerInput, got {type(inp).__name__}: prompts must not see labels")
    raw = np.concatenate([ego_features(inp), ctra_prior(inp).reshape(-1)]).astype(np.float32)
    if not np.isfinite(raw).all():
        bad = [EGO_FIELDS[i] for i in np.flatnonzero(~np.isfinite(raw))]
        raise ValueError(f"sample {inp.sample_token}: ego state {bad} is not finite; the record's ego status is "
                         "broken (check the dataset's ego poses)")
    return raw / EGO_SCALES
