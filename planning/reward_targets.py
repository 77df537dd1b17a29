"""Build the reward verifiers' target (`planning.rewards.RewardTarget`) from a sample's labels.

Why a module of its own: the verifiers are leaf code (numpy only) that runs inside other trainers,
but the collision metric's obstacle cells are drawn with cv2 (`planning.occupancy`, as UniAD
draws them). So the cells are drawn here, once per sample, by the metric's own rasteriser, and
stored in the target; the verifiers then apply the metric's own box test to exactly those cells.

What goes in (all labels; a planner never sees them):
  * `PlanningTargets`: the ego's future and its mask, and the future boxes (re-framed to now)
    from which `planning.occupancy.rasterize_targets` draws the convention's obstacle content;
  * the agents present now (class, box centre) for the grounding verifier, from the same
    `PlanningTargets` (`agent_class`, `agent_box`: the ground truth the oracle tokens use too).

Frame and units: the current LiDAR_TOP frame (x right, y forward), metres.

    target = reward_target(planning_targets(record), convention="stp3")
    RewardTarget.from_json(target.to_json())   # what tools/export_data.py stores as `answer`
"""

from __future__ import annotations

import numpy as np

from planning.codec import format_number
from planning.occupancy import rasterize_targets
from planning.rewards import RewardTarget, encode_runs
from vla_world.data.records import DETECTION_CLASSES, SampleRecord
from vla_world.data.targets import PlanningTargets, planning_targets

DEFAULT_CONVENTION = "stp3"  # the convention of the README's headline table (OpenDriveVLA / GPT-Driver "ST-P3")


def agents_now(targets: PlanningTargets) -> tuple[tuple[str, ...], np.ndarray]:
    """(classes, (K, 2) centres in metres) of the agents with a detection class annotated at this keyframe."""
    known = np.asarray(targets.agent_class) >= 0
    classes = tuple(DETECTION_CLASSES[int(c)] for c in np.asarray(targets.agent_class)[known])
    xy = np.asarray(targets.agent_box, dtype=np.float64).reshape(-1, 7)[known, :2]
    return classes, xy


def codec_precision(points: np.ndarray) -> np.ndarray:
    """Each number as the trajectory codec writes it (2 decimals), so an answer copying it scores exactly."""
    return np.array([[float(format_number(v)) for v in row] for row in np.asarray(points, np.float64)]).reshape(-1, 2)


def reward_target(targets: PlanningTargets, convention: str = DEFAULT_CONVENTION) -> RewardTarget:
    """The verifiers' target of one sample; raises ValueError when the sample has no valid future step."""
    agent_class, agent_xy = agents_now(targets)
    frames = rasterize_targets(targets, convention)  # (6, 200, 200) uint8, 255 frames past the scene end
    mask = np.asarray(targets.ego_future_mask, bool)
    runs = tuple(encode_runs(np.flatnonzero(frame.ravel() == 1)) if valid else () for frame, valid in zip(frames, mask))
    future = np.where(mask[:, None], codec_precision(targets.ego_future), 0.0)
    return RewardTarget(sample_token=targets.sample_token, convention=convention, ego_future=future,
                        ego_future_mask=mask, occupied_runs=runs, agent_class=tuple(agent_class),
                        agent_xy=codec_precision(agent_xy))


def reward_target_of(record: SampleRecord, convention: str = DEFAULT_CONVENTION) -> RewardTarget:
    """`reward_target` of a record's `PlanningTargets`."""
    return reward_target(planning_targets(record), convention)
