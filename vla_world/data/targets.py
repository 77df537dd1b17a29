"""What a planner is scored on, as a type of its own (navsim keeps it in `Scene`, apart from `AgentInput`).

`PlanningTargets` holds the labels of one keyframe: the ego's future, the ground-truth agents of
now and their futures, and every annotated box at the future keyframes. Only metrics, losses and reward verifiers take it;
planners and prompt builders take `vla_world.data.planner_input.PlannerInput`, which has none of
these fields.

The two fields that say which samples a metric convention counts (`ego_past_mask` for ST-P3's
context frames, `command` for the per-command breakdown) are copies of input fields: they are
grouping keys here, not labels.

Frame and units: as `vla_world.data.records` (current LiDAR_TOP frame, x right, y forward,
metres; future steps t = 0.5 .. 3.0 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_world.data.records import SampleRecord


@dataclass(frozen=True)
class PlanningTargets:
    """Labels of one keyframe for planning metrics, losses and rewards (see module doc)."""

    sample_token: str
    command: int  # grouping key (a copy of the input's command)
    ego_past_mask: np.ndarray  # (4,) bool, grouping key (ST-P3 context frames)

    # --- the ego's future
    ego_future: np.ndarray  # (6, 2) metres, t = 0.5 .. 3.0 s; zeros where masked
    ego_future_yaw: np.ndarray  # (6,) rad, CCW from +x
    ego_future_mask: np.ndarray  # (6,) bool, False past the scene end

    # --- the agents present now (K of them): ground-truth boxes, their futures
    agent_track_id: np.ndarray  # (K,) int32
    agent_class: np.ndarray  # (K,) int8, index into records.DETECTION_CLASSES, -1 if none
    agent_box: np.ndarray  # (K, 7) (x, y, z, w, l, h, yaw), the grounding reward's objects
    agent_future: np.ndarray  # (K, 6, 2)
    agent_future_yaw: np.ndarray  # (K, 6)
    agent_future_mask: np.ndarray  # (K, 6) bool

    # --- every annotated box at the future keyframes, re-framed to now (the collision metrics' input)
    future_box_step: np.ndarray  # (M,) int8, 0..5 for t = 0.5 .. 3.0 s
    future_box: np.ndarray  # (M, 7) (x, y, z, w, l, h, yaw)
    future_box_category: np.ndarray  # (M,) str, full nuScenes category
    future_box_track_id: np.ndarray  # (M,) int32
    future_box_visibility: np.ndarray  # (M,) int8
    context_track_ids: np.ndarray  # (C,) int32 seen with visibility > 1 at t = -1.0, -0.5, 0 s (ST-P3)

    # --- the next keyframe (+0.5 s): the frame the world stage imagines ("" at the scene end)
    next_sample_token: str = ""
    next_front_camera_path: str = ""  # its CAM_FRONT image, relative to the dataroot


def planning_targets(record: SampleRecord) -> PlanningTargets:
    """The labels of `record` that planning metrics, losses and rewards score against."""
    return PlanningTargets(
        sample_token=record.sample_token,
        command=int(record.command),
        ego_past_mask=record.ego_past_mask,
        ego_future=record.ego_future,
        ego_future_yaw=record.ego_future_yaw,
        ego_future_mask=record.ego_future_mask,
        agent_track_id=record.agent_track_id,
        agent_class=record.agent_class,
        agent_box=record.agent_box,
        agent_future=record.agent_future,
        agent_future_yaw=record.agent_future_yaw,
        agent_future_mask=record.agent_future_mask,
        future_box_step=record.future_box_step,
        future_box=record.future_box,
        future_box_category=record.future_box_category,
        future_box_track_id=record.future_box_track_id,
        future_box_visibility=record.future_box_visibility,
        context_track_ids=record.context_track_ids,
        next_sample_token=record.next_sample_token,
        next_front_camera_path=record.next_front_camera_path,
    )


def planning_targets_of(records: list[SampleRecord]) -> list[PlanningTargets]:
    return [planning_targets(r) for r in records]
