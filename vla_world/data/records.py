"""One record per nuScenes keyframe: the contract between the data layer and everything else.

Every later part (metrics, baselines, perception, the LLM stages, pictures) reads only these
records, never the devkit tables directly, so the mini world and real nuScenes look the same.

Frame and units (stated once, used everywhere):
  * Positions, boxes, velocities and polylines are in the **LiDAR_TOP frame of the current
    keyframe**: x to the right, y forward, z up, metres. This is the frame UniAD, VAD,
    GPT-Driver and OpenDriveVLA plan in.
  * Yaw is a heading angle in that frame, radians, counter-clockwise from +x. The ego's own
    heading now is therefore about +pi/2 (straight ahead is +y).
  * Velocities are m/s, accelerations m/s^2, yaw rates rad/s, timestamps microseconds.
  * Future steps are t = 0.5, 1.0, ..., 3.0 s; past steps are t = -2.0, -1.5, -1.0, -0.5 s.
  * Boxes are (x, y, z, w, l, h, yaw) with nuScenes' size order (width, length, height).

Build them with `vla_world.data.build_records` / load them with `vla_world.data.load_records`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_FUTURE = 6  # 3 s at 2 Hz
NUM_PAST = 4  # 2 s at 2 Hz
STEP_SECONDS = 0.5
FUTURE_SECONDS = STEP_SECONDS * np.arange(1, NUM_FUTURE + 1)  # (6,) t = 0.5 .. 3.0 s of the future steps

CAMERAS: tuple[str, ...] = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)

# The driving command, in UniAD/VAD one-hot order [right, left, forward].
COMMANDS: tuple[str, ...] = ("turn right", "turn left", "keep forward")
CMD_RIGHT, CMD_LEFT, CMD_FORWARD = 0, 1, 2
# The command is the sign of the ego's lateral offset at 3 s beyond this bound (VAD's rule: >= 2 m
# right, <= -2 m left), i.e. it is derived from the GT future: a known leak, see planner_input.py.
COMMAND_LATERAL_THRESHOLD_M = 2.0

# nuScenes detection classes (nuscenes.eval.detection), in the devkit's order.
DETECTION_CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "pedestrian",
    "motorcycle",
    "bicycle",
    "traffic_cone",
    "barrier",
)

# Map element types for polylines (MapTR/VAD's three classes).
MAP_CLASSES: tuple[str, ...] = ("lane_divider", "road_boundary", "ped_crossing")


@dataclass
class SampleRecord:
    """Everything known about one keyframe, in the current LiDAR_TOP frame (see module doc)."""

    # --- identity
    sample_token: str
    scene_token: str
    scene_name: str
    location: str
    timestamp: int  # microseconds
    frame_index: int  # 0-based keyframe index within the scene
    split: str  # "train" | "val" | "mini_train" | ...
    lidar_path: str  # relative to the dataroot
    lidar2global: np.ndarray  # (4, 4) float64: current LiDAR_TOP -> nuScenes global

    # --- ego
    ego_past: np.ndarray  # (4, 2) float32, t = -2.0 .. -0.5 s
    ego_past_mask: np.ndarray  # (4,) bool, False before the scene start
    ego_future: np.ndarray  # (6, 2) float32, t = 0.5 .. 3.0 s; zeros where masked
    ego_future_yaw: np.ndarray  # (6,) float32, heading (rad, CCW from +x)
    ego_future_mask: np.ndarray  # (6,) bool, False past the scene end
    ego_velocity: np.ndarray  # (2,) float32 m/s (x right, y forward)
    ego_acceleration: np.ndarray  # (2,) float32 m/s^2
    ego_yaw_rate: float  # rad/s, CCW positive
    ego_speed: float  # m/s
    command: int  # index into COMMANDS; derived from the GT future (a known leak, see docs/data.md)

    # --- agents present at this keyframe (K of them)
    agent_instance: np.ndarray  # (K,) str, nuScenes instance token
    agent_track_id: np.ndarray  # (K,) int32, stable integer id of the instance
    agent_category: np.ndarray  # (K,) str, full nuScenes category name
    agent_class: np.ndarray  # (K,) int8, index into DETECTION_CLASSES, -1 if none
    agent_box: np.ndarray  # (K, 7) float32 (x, y, z, w, l, h, yaw)
    agent_velocity: np.ndarray  # (K, 2) float32 m/s
    agent_visibility: np.ndarray  # (K,) int8, nuScenes visibility level 1..4
    agent_num_lidar_pts: np.ndarray  # (K,) int32
    agent_future: np.ndarray  # (K, 6, 2) float32 centres, current frame
    agent_future_yaw: np.ndarray  # (K, 6) float32
    agent_future_mask: np.ndarray  # (K, 6) bool

    # --- every annotated box at the future keyframes, re-framed to the current frame (M boxes);
    #     the input of the collision-metric occupancy rasterisers
    future_box_step: np.ndarray  # (M,) int8, 0..5 for t = 0.5 .. 3.0 s
    future_box: np.ndarray  # (M, 7) float32
    future_box_category: np.ndarray  # (M,) str
    future_box_track_id: np.ndarray  # (M,) int32
    future_box_visibility: np.ndarray  # (M,) int8
    context_track_ids: np.ndarray  # (C,) int32: seen with visibility > 1 at t = -1.0, -0.5, 0 s (ST-P3)

    # --- map elements around the ego (polylines, current frame)
    map_type: np.ndarray  # (P,) int8, index into MAP_CLASSES
    map_polylines: list[np.ndarray] = field(default_factory=list)  # P arrays of (n_i, 2) float32

    # --- cameras, in CAMERAS order
    camera_paths: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=str))  # (6,) relative paths
    camera_intrinsics: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 3)))  # (6, 3, 3)
    camera_sensor2lidar: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))  # (6, 4, 4) camera -> current LiDAR
    camera_image_size: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int32))  # (6, 2) (width, height)

    # --- the next keyframe (+0.5 s): the world stage's TARGET (its front camera is the frame to imagine);
    #     labels, never planner inputs ("" at the scene's last keyframe)
    next_sample_token: str = ""
    next_front_camera_path: str = ""  # CAM_FRONT image of the next keyframe, relative to the dataroot

    @property
    def has_next_frame(self) -> bool:
        return bool(self.next_sample_token)

    @property
    def num_agents(self) -> int:
        return int(self.agent_box.shape[0])

    @property
    def command_text(self) -> str:
        return COMMANDS[self.command]
