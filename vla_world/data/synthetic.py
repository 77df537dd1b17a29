"""Hand-made `SampleRecord`s for unit tests and examples, with no dataset on disk.

`synthetic_record()` gives a straight-driving ego at `speed` m/s along +y (LiDAR frame), agents at
the positions you pass (each moving with constant velocity), and two lane dividers at x = +-1.75 m.
Everything is in the current LiDAR_TOP frame (x right, y forward, metres), like real records.
"""

from __future__ import annotations

import numpy as np

from vla_world.data.records import (
    CAMERAS,
    CMD_FORWARD,
    DETECTION_CLASSES,
    NUM_FUTURE,
    NUM_PAST,
    STEP_SECONDS,
    SampleRecord,
)

_SIZES = {"car": (1.9, 4.6, 1.7), "truck": (2.5, 8.0, 3.2), "bus": (2.9, 11.0, 3.4), "pedestrian": (0.7, 0.7, 1.8), "bicycle": (0.6, 1.8, 1.3)}
_CATEGORY = {"car": "vehicle.car", "truck": "vehicle.truck", "bus": "vehicle.bus.rigid", "pedestrian": "human.pedestrian.adult", "bicycle": "vehicle.bicycle"}


def synthetic_record(
    speed: float = 5.0,
    agents: list[tuple[str, float, float, float, float]] | None = None,
    future_valid: int = NUM_FUTURE,
    command: int = CMD_FORWARD,
    token: str = "synthetic0",
    scene: str = "scene-synthetic",
) -> SampleRecord:
    """`agents`: (class, x, y, vx, vy) tuples; heading follows the velocity (forward if at rest)."""
    agents = agents or []
    t_future = STEP_SECONDS * np.arange(1, NUM_FUTURE + 1)
    t_past = -STEP_SECONDS * np.arange(NUM_PAST, 0, -1)
    fmask = np.arange(NUM_FUTURE) < future_valid
    ego_future = np.stack([np.zeros(NUM_FUTURE), speed * t_future], 1) * fmask[:, None]
    k = len(agents)
    boxes = np.zeros((k, 7), np.float32)
    vel = np.zeros((k, 2), np.float32)
    fut = np.zeros((k, NUM_FUTURE, 2), np.float32)
    fut_yaw = np.zeros((k, NUM_FUTURE), np.float32)
    cls = np.zeros(k, np.int8)
    cats = []
    fb, fb_step, fb_cat, fb_tid = [], [], [], []
    for i, (name, x, y, vx, vy) in enumerate(agents):
        w, l, h = _SIZES[name]
        yaw = float(np.arctan2(vy, vx)) if (vx or vy) else np.pi / 2
        boxes[i] = (x, y, h / 2, w, l, h, yaw)
        vel[i] = (vx, vy)
        fut[i] = np.stack([x + vx * t_future, y + vy * t_future], 1)
        fut_yaw[i] = yaw
        cls[i] = DETECTION_CLASSES.index(name)
        cats.append(_CATEGORY[name])
        for s in range(future_valid):
            fb.append((fut[i, s, 0], fut[i, s, 1], h / 2, w, l, h, yaw))
            fb_step.append(s)
            fb_cat.append(_CATEGORY[name])
            fb_tid.append(i)
    return SampleRecord(
        sample_token=token, scene_token=scene + "-token", scene_name=scene, location="singapore-onenorth",
        timestamp=1_000_000, frame_index=4, split="val", lidar_path="samples/LIDAR_TOP/x.pcd.bin",
        lidar2global=np.eye(4),
        ego_past=np.stack([np.zeros(NUM_PAST), speed * t_past], 1).astype(np.float32),
        ego_past_mask=np.ones(NUM_PAST, bool),
        ego_future=ego_future.astype(np.float32),
        ego_future_yaw=np.full(NUM_FUTURE, np.pi / 2, np.float32),
        ego_future_mask=fmask,
        ego_velocity=np.array([0.0, speed], np.float32), ego_acceleration=np.zeros(2, np.float32),
        ego_yaw_rate=0.0, ego_speed=float(speed), command=command,
        agent_instance=np.array([f"inst{i}" for i in range(k)]), agent_track_id=np.arange(k, dtype=np.int32),
        agent_category=np.array(cats, dtype=str), agent_class=cls, agent_box=boxes, agent_velocity=vel,
        agent_visibility=np.full(k, 4, np.int8), agent_num_lidar_pts=np.full(k, 10, np.int32),
        agent_future=fut, agent_future_yaw=fut_yaw, agent_future_mask=np.tile(fmask, (k, 1)),
        future_box_step=np.array(fb_step, np.int8), future_box=np.array(fb, np.float32).reshape(-1, 7),
        future_box_category=np.array(fb_cat, dtype=str), future_box_track_id=np.array(fb_tid, np.int32),
        future_box_visibility=np.full(len(fb), 4, np.int8), context_track_ids=np.arange(k, dtype=np.int32),
        map_type=np.array([0, 0], np.int8),
        map_polylines=[np.array([[-1.75, -30.0], [-1.75, 30.0]], np.float32), np.array([[1.75, -30.0], [1.75, 30.0]], np.float32)],
        camera_paths=np.array([f"samples/{c}/x.jpg" for c in CAMERAS]),
        camera_intrinsics=np.tile(np.array([[100.0, 0, 80], [0, 100.0, 45], [0, 0, 1]]), (6, 1, 1)),
        camera_sensor2lidar=np.tile(np.eye(4), (6, 1, 1)),
        camera_image_size=np.tile(np.array([160, 90], np.int32), (6, 1)),
    )
