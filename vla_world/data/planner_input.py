"""What a planner may know at time t, as a type of its own (navsim's `AgentInput`).

A `SampleRecord` holds everything known about a keyframe, labels included: the ego's and the
agents' futures, the future boxes, the ground-truth boxes of now. Nothing but care would keep those
out of a planner or a prompt. `PlannerInput` is the only thing a planner, a prompt builder or a
question builder reads; it has no field from which the future can be recovered. What a planner is
scored on lives in `vla_world.data.targets.PlanningTargets`, which only metrics, losses and reward
verifiers take.

Perception output (scene / agent / map tokens, or detected agents) travels beside the input as
`perception.tokens.PerceptionTokens`, made by a perception checkpoint, read from a token cache, or
built from ground truth when a run is explicitly oracle; every report names which.

Frame and units: as `vla_world.data.records` (current LiDAR_TOP frame, x right, y forward,
metres, m/s, rad/s; past steps t = -2.0 .. -0.5 s).

The one known leak: `command` (turn left / right / keep forward) is derived from the ground-truth
future, as UniAD, VAD, GPT-Driver and OpenDriveVLA derive it (the lateral offset of the ego at
3 s, `vla_world.data.builder.command_from_future`). It is how the field defines the input, so we
keep it, and say so here and in docs/data.md.

    from vla_world.data.planner_input import planner_input
    inp = planner_input(record)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from vla_world.data.records import COMMANDS, SampleRecord


@dataclass(frozen=True)
class PlannerInput:
    """The inputs of one keyframe a planner may use (see module doc); arrays are read-only copies."""

    # --- identity (no labels)
    sample_token: str
    scene_token: str
    timestamp: int  # microseconds
    frame_index: int  # 0-based keyframe index within the scene
    split: str

    # --- sensors: where the data is and how the sensors sit (relative paths under the dataroot)
    lidar_path: str
    lidar2global: np.ndarray  # (4, 4) current LiDAR_TOP -> global (the ego's own localisation now)
    camera_paths: np.ndarray  # (6,) str, in records.CAMERAS order
    camera_intrinsics: np.ndarray  # (6, 3, 3)
    camera_sensor2lidar: np.ndarray  # (6, 4, 4) camera -> current LiDAR
    camera_image_size: np.ndarray  # (6, 2) (width, height) pixels

    # --- ego history and status (measured up to now)
    ego_past: np.ndarray  # (4, 2) metres, t = -2.0 .. -0.5 s
    ego_past_mask: np.ndarray  # (4,) bool, False before the scene start
    ego_velocity: np.ndarray  # (2,) m/s (x right, y forward)
    ego_acceleration: np.ndarray  # (2,) m/s^2
    ego_yaw_rate: float  # rad/s, counter-clockwise positive
    ego_speed: float  # m/s

    # --- the route command (the known leak: derived from the GT future, see module doc)
    command: int  # index into records.COMMANDS

    @property
    def command_text(self) -> str:
        return COMMANDS[self.command]


def _frozen(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, copy=True)
    copy.setflags(write=False)
    return copy


def planner_input(record: SampleRecord) -> PlannerInput:
    """The planner's view of `record`: identity, sensors, ego history and status, command; no labels.

    Every field is copied by name from the record (arrays as read-only copies, scalars as the
    field's own type), so a field added to `PlannerInput` is filled without another line here.
    """
    values = {}
    for spec in dataclasses.fields(PlannerInput):
        value = getattr(record, spec.name)
        values[spec.name] = _frozen(value) if isinstance(value, np.ndarray) else _SCALARS[spec.type](value)
    return PlannerInput(**values)


_SCALARS = {"str": str, "int": int, "float": float}


def planner_inputs(records: list[SampleRecord]) -> list[PlannerInput]:
    return [planner_input(r) for r in records]
