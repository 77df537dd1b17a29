"""Build one `SampleRecord` per keyframe from any nuScenes-format dataroot (no caching here).

Frames and conventions (see records.py for the field list):
  * every position is in the LiDAR_TOP frame of the current keyframe (x right, y forward, z up,
    metres). The ego "position" at a keyframe is the origin of that keyframe's LiDAR_TOP sensor
    (UniAD's `sdc_planning` and VAD's `gt_ego_fut_trajs` also move future poses into the
    current LiDAR frame), so the ego is at (0, 0) now and heads along +y;
  * yaws are headings CCW from +x of the current LiDAR frame (the box's length axis for agents,
    the vehicle's forward axis for the ego), so driving straight ahead is +pi/2;
  * ego velocity / acceleration / yaw rate come from the CAN bus when `<dataroot>/can_bus`
    exists, else from causal finite differences of the current and past keyframe poses;
  * the command is VAD's rule on the GT future (a known leak, see docs/data.md).

    records = build_records("data/mini_world", split="train")
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from vla_world.data.geometry import (
    heading_yaws,
    invert_pose,
    pose_matrix,
    rotation_matrices,
    transform_points,
    wrap_angle,
)
from vla_world.data.map_polylines import MapPatch, MapPolylineExtractor
from vla_world.data.nuscenes_db import (
    FIX_MAPS,
    FIX_TABLES,
    RecordError,
    can_pose_messages,
    detect_version,
    explained_lookups,
    open_can_bus,
    open_map,
    open_nuscenes,
)
from vla_world.data.records import (
    CAMERAS,
    CMD_FORWARD,
    CMD_LEFT,
    CMD_RIGHT,
    COMMAND_LATERAL_THRESHOLD_M,
    DETECTION_CLASSES,
    NUM_FUTURE,
    NUM_PAST,
    SampleRecord,
)
from vla_world.data.splits import split_scene_names

if TYPE_CHECKING:  # the devkit is imported only when building: it costs seconds (sklearn, matplotlib)
    from nuscenes import NuScenes

# Bump when the content of a record changes: cached records of another version are rebuilt.
BUILDER_VERSION = 3  # 3: next_sample_token / next_front_camera_path (world-stage targets)

CONTEXT_STEPS = 2  # ST-P3 context: keyframes t = -1.0, -0.5 s plus the present
_VISIBILITY_LEVELS = {"v0-40": 1, "v40-60": 2, "v60-80": 3, "v80-100": 4}


@dataclass(frozen=True)
class BuildOptions:
    """What goes into the records beyond the tables themselves (part of the cache key)."""

    map_patch: MapPatch = field(default_factory=MapPatch)  # map region kept around the ego
    use_can_bus: bool = True  # ego status from <dataroot>/can_bus when present

    def validate(self) -> None:
        self.map_patch.validate()

    def key(self) -> dict:
        """The options as plain JSON for the cache key."""
        p = self.map_patch
        return {"map_patch": [p.x_min, p.x_max, p.y_min, p.y_max], "use_can_bus": self.use_can_bus}


@dataclass
class _Boxes:
    """The annotations of one keyframe, still in the global frame."""

    instance: np.ndarray  # (K,) str
    track_id: np.ndarray  # (K,) int32
    category: np.ndarray  # (K,) str
    det_class: np.ndarray  # (K,) int8
    center: np.ndarray  # (K, 3) global metres
    size: np.ndarray  # (K, 3) w, l, h
    rotation: np.ndarray  # (K, 3, 3) box -> global
    velocity: np.ndarray  # (K, 3) global m/s, NaN replaced by 0
    visibility: np.ndarray  # (K,) int8 1..4
    num_lidar_pts: np.ndarray  # (K,) int32
    row_of: dict[str, int]  # instance token -> row

    def in_frame(self, global2frame: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(K, 7) float32 boxes (x, y, z, w, l, h, yaw) in the frame of `global2frame`."""
        rows = np.arange(len(self.instance)) if rows is None else rows
        center = transform_points(global2frame, self.center[rows])
        yaw = heading_yaws(global2frame, self.rotation[rows])
        return np.concatenate([center, self.size[rows], yaw[:, None]], axis=1).astype(np.float32)


@dataclass
class _Frame:
    """One keyframe of a scene: sample record, poses (4x4, child -> parent) and boxes."""

    sample: dict
    lidar_sd: dict
    lidar2global: np.ndarray
    ego2global: np.ndarray
    lidar2ego: np.ndarray
    boxes: _Boxes

    @property
    def seconds(self) -> float:
        return 1e-6 * self.lidar_sd["timestamp"]


@dataclass
class _SceneContext:
    nusc: NuScenes
    scene: dict
    split: str
    location: str
    map_extractor: MapPolylineExtractor
    can_messages: list[dict]
    options: BuildOptions


def build_records(dataroot: str | Path, version: str | None = None, split: str = "train",
                  options: BuildOptions | None = None, progress: bool = True,
                  max_scenes: int | None = None) -> list[SampleRecord]:
    """All keyframes of `split`, ordered by scene (dataroot order) then frame. No cache.

    `max_scenes` keeps only the first scenes of the split (benchmarks, quick looks).
    """
    dataroot = Path(dataroot)
    version = version or detect_version(dataroot)
    options = options or BuildOptions()
    options.validate()
    nusc = open_nuscenes(dataroot, version)
    names = split_scene_names(dataroot, version, split, [s["name"] for s in nusc.scene])[:max_scenes]
    scenes = [s for s in nusc.scene if s["name"] in set(names)]
    can_bus = open_can_bus(dataroot) if options.use_can_bus else None
    maps: dict[str, MapPolylineExtractor] = {}
    records: list[SampleRecord] = []
    no_can: list[str] = []
    with explained_lookups(nusc), tqdm(total=sum(s["nbr_samples"] for s in scenes), desc=f"records {split}",
                                       unit="sample", disable=not progress) as bar:
        for scene in scenes:
            location = nusc.get("log", scene["log_token"])["location"]
            if location not in maps:
                maps[location] = _map_extractor(dataroot, location)
            messages = can_pose_messages(can_bus, scene["name"])
            if can_bus is not None and not messages:
                no_can.append(scene["name"])
            ctx = _SceneContext(nusc, scene, split, location, maps[location], messages, options)
            for record in _scene_records(ctx):
                records.append(record)
                bar.update(1)
    if no_can:
        warnings.warn(f"CAN bus: {len(no_can)} scenes have no CAN pose data, their ego status comes from poses: "
                      f"{', '.join(no_can)}", stacklevel=2)
    return records


def _map_extractor(dataroot: Path, location: str) -> MapPolylineExtractor:
    try:
        return MapPolylineExtractor(open_map(dataroot, location))
    except KeyError as exc:  # a layer record pointing at a missing polygon/line/node
        raise RecordError(f"{dataroot}/maps/expansion/{location}.json: map record links to {exc} which is not in the "
                          f"map's polygon/line/node layers; {FIX_MAPS}") from exc


def _scene_records(ctx: _SceneContext) -> list[SampleRecord]:
    frames = _scene_frames(ctx.nusc, ctx.scene)
    return [_record(ctx, frames, i) for i in range(len(frames))]


def sensor_poses(nusc: NuScenes, sample_data: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """(sensor -> ego, ego -> global at the sensor's own timestamp, calibrated_sensor row) of one sample_data."""
    cs = nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sample_data["ego_pose_token"])
    return pose_matrix(cs["translation"], cs["rotation"]), pose_matrix(pose["translation"], pose["rotation"]), cs


def _scene_frames(nusc: NuScenes, scene: dict) -> list[_Frame]:
    frames = []
    visibility = _visibility_levels(nusc)
    token = scene["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        lidar_token = sample["data"].get("LIDAR_TOP")
        if lidar_token is None:
            raise RecordError(f"{nusc.version}/sample_data.json: sample {token} (scene {scene['name']}) has no "
                              f"LIDAR_TOP keyframe; {FIX_TABLES}")
        lidar_sd = nusc.get("sample_data", lidar_token)
        lidar2ego, ego2global, _ = sensor_poses(nusc, lidar_sd)
        frames.append(_Frame(sample, lidar_sd, ego2global @ lidar2ego, ego2global, lidar2ego,
                             _sample_boxes(nusc, sample, visibility)))
        token = sample["next"]
    return frames


def _visibility_levels(nusc: NuScenes) -> dict[str, int]:
    levels = {}
    for rec in nusc.visibility:
        if rec["level"] in _VISIBILITY_LEVELS:
            levels[rec["token"]] = _VISIBILITY_LEVELS[rec["level"]]
        else:
            raise RecordError(f"{nusc.version}/visibility.json: visibility {rec['token']} has unknown level "
                              f"'{rec['level']}' (expected one of {list(_VISIBILITY_LEVELS)}); {FIX_TABLES}")
    return levels


def _sample_boxes(nusc: NuScenes, sample: dict, visibility: dict[str, int]) -> _Boxes:
    from nuscenes.eval.detection.utils import category_to_detection_name

    anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    categories = [a["category_name"] for a in anns]
    detection = [category_to_detection_name(c) for c in categories]
    velocity = np.array([nusc.box_velocity(a["token"]) for a in anns], dtype=np.float64).reshape(-1, 3)
    missing_vis = [a["token"] for a in anns if a["visibility_token"] not in visibility]
    if missing_vis:
        raise RecordError(f"{nusc.version}/sample_annotation.json: annotation {missing_vis[0]} has a visibility_token "
                          f"not in visibility.json; {FIX_TABLES}")
    return _Boxes(
        instance=np.array([a["instance_token"] for a in anns], dtype=str),
        track_id=np.array([nusc.getind("instance", a["instance_token"]) for a in anns], dtype=np.int32),
        category=np.array(categories, dtype=str),
        det_class=np.array([DETECTION_CLASSES.index(d) if d else -1 for d in detection], dtype=np.int8),
        center=np.array([a["translation"] for a in anns], dtype=np.float64).reshape(-1, 3),
        size=np.array([a["size"] for a in anns], dtype=np.float64).reshape(-1, 3),
        rotation=rotation_matrices(np.array([a["rotation"] for a in anns]).reshape(-1, 4)),
        velocity=np.nan_to_num(velocity, nan=0.0),
        visibility=np.array([visibility[a["visibility_token"]] for a in anns], dtype=np.int8),
        num_lidar_pts=np.array([a["num_lidar_pts"] for a in anns], dtype=np.int32),
        row_of={a["instance_token"]: row for row, a in enumerate(anns)},
    )


def _record(ctx: _SceneContext, frames: list[_Frame], i: int) -> SampleRecord:
    now = frames[i]
    global2lidar = invert_pose(now.lidar2global)
    past, past_mask, future, future_yaw, future_mask = ego_track(frames, i)
    velocity, acceleration, yaw_rate = _ego_motion(ctx, frames, i)
    agents = _agents(frames, i, global2lidar)
    future_boxes = _future_boxes(frames, i, global2lidar)
    map_type, polylines = ctx.map_extractor.polylines(now.lidar2global, ctx.options.map_patch)
    cameras = _cameras(ctx.nusc, now)
    return SampleRecord(
        sample_token=now.sample["token"], scene_token=ctx.scene["token"], scene_name=ctx.scene["name"],
        location=ctx.location, timestamp=int(now.sample["timestamp"]), frame_index=i, split=ctx.split,
        lidar_path=now.lidar_sd["filename"], lidar2global=now.lidar2global,
        ego_past=past, ego_past_mask=past_mask, ego_future=future, ego_future_yaw=future_yaw,
        ego_future_mask=future_mask, ego_velocity=velocity, ego_acceleration=acceleration,
        ego_yaw_rate=yaw_rate, ego_speed=float(np.linalg.norm(velocity)),
        command=command_from_future(future, future_mask),
        **agents, **future_boxes, context_track_ids=_context_track_ids(frames, i),
        map_type=map_type, map_polylines=polylines, **cameras, **_next_frame(ctx.nusc, frames, i),
    )


def _next_frame(nusc: NuScenes, frames: list[_Frame], i: int) -> dict[str, str]:
    """The next keyframe's token and CAM_FRONT image path (the world stage's target); "" at the scene end."""
    if i + 1 >= len(frames):
        return {"next_sample_token": "", "next_front_camera_path": ""}
    nxt = frames[i + 1].sample
    token = nxt["data"].get("CAM_FRONT")
    if token is None:
        raise RecordError(f"{nusc.version}/sample_data.json: sample {nxt['token']} has no CAM_FRONT keyframe; "
                          f"{FIX_TABLES}")
    return {"next_sample_token": nxt["token"], "next_front_camera_path": nusc.get("sample_data", token)["filename"]}


def ego_track(frames: list[_Frame], i: int) -> tuple[np.ndarray, ...]:
    """Past (4, 2) / future (6, 2) LiDAR origins and future headings in frame i, with masks."""
    global2lidar = invert_pose(frames[i].lidar2global)
    past_idx = np.arange(i - NUM_PAST, i)
    future_idx = np.arange(i + 1, i + 1 + NUM_FUTURE)
    past, past_mask = _origins_in(frames, past_idx, global2lidar)
    future, future_mask = _origins_in(frames, future_idx, global2lidar)
    future_yaw = np.zeros(NUM_FUTURE, np.float32)
    valid = [j for j in future_idx if 0 <= j < len(frames)]
    if valid:
        rotations = np.stack([frames[j].ego2global[:3, :3] for j in valid])
        future_yaw[: len(valid)] = heading_yaws(global2lidar, rotations)
    return past, past_mask, future, future_yaw, future_mask


def _origins_in(frames: list[_Frame], indices: np.ndarray, global2lidar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = (indices >= 0) & (indices < len(frames))
    points = np.zeros((len(indices), 2), np.float32)
    if mask.any():
        origins = np.stack([frames[j].lidar2global[:3, 3] for j in indices[mask]])
        points[mask] = transform_points(global2lidar, origins)[:, :2]
    return points, mask


def command_from_future(future: np.ndarray, mask: np.ndarray) -> int:
    """VAD's rule: lateral x of the last valid future point >= 2 m right, <= -2 m left, else forward."""
    if not mask.any():
        return CMD_FORWARD
    lateral = float(future[np.flatnonzero(mask)[-1], 0])
    if lateral >= COMMAND_LATERAL_THRESHOLD_M:
        return CMD_RIGHT
    if lateral <= -COMMAND_LATERAL_THRESHOLD_M:
        return CMD_LEFT
    return CMD_FORWARD


def _ego_motion(ctx: _SceneContext, frames: list[_Frame], i: int) -> tuple[np.ndarray, np.ndarray, float]:
    if ctx.can_messages:
        from_can = ego_motion_from_can(ctx.can_messages, int(frames[i].lidar_sd["timestamp"]), frames[i].lidar2ego)
        if from_can is not None:
            return from_can
    return ego_motion_from_poses(frames, i)


def ego_motion_from_poses(frames: list[_Frame], i: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Velocity, acceleration (LiDAR frame i) and yaw rate by backward differences of keyframes.

    Only keyframes i, i-1, i-2 are used (no future leakage); what cannot be computed at the
    scene start (no previous keyframe) is zero, which `ego_past_mask` makes visible.
    """
    global2lidar = invert_pose(frames[i].lidar2global)
    velocity = _velocity_between(frames, i - 1, i, global2lidar)
    if velocity is None:
        return np.zeros(2, np.float32), np.zeros(2, np.float32), 0.0
    dt = frames[i].seconds - frames[i - 1].seconds
    prev_velocity = _velocity_between(frames, i - 2, i - 1, global2lidar)
    acceleration = np.zeros(2) if prev_velocity is None else (velocity - prev_velocity) / dt
    yaw_now, yaw_prev = heading_yaws(global2lidar, np.stack([frames[i].ego2global[:3, :3],
                                                             frames[i - 1].ego2global[:3, :3]]))
    yaw_rate = float(wrap_angle(yaw_now - yaw_prev)) / dt
    return velocity.astype(np.float32), acceleration.astype(np.float32), yaw_rate


def _velocity_between(frames: list[_Frame], a: int, b: int, global2lidar: np.ndarray) -> np.ndarray | None:
    if a < 0:
        return None
    dt = frames[b].seconds - frames[a].seconds
    if dt <= 0:
        raise RecordError(f"sample_data.json: LIDAR_TOP timestamps of samples {frames[a].sample['token']} and "
                          f"{frames[b].sample['token']} do not increase; {FIX_TABLES}")
    points = transform_points(global2lidar, np.stack([frames[a].lidar2global[:3, 3], frames[b].lidar2global[:3, 3]]))
    return (points[1, :2] - points[0, :2]) / dt


def ego_motion_from_can(messages: list[dict], utime: int, lidar2ego: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The last CAN 'pose' message at or before `utime`, rotated from the ego frame into the LiDAR frame."""
    times = np.array([m["utime"] for m in messages])
    k = int(np.searchsorted(times, utime, side="right")) - 1
    if k < 0:
        return None
    ego2lidar = lidar2ego[:3, :3].T  # CAN vectors are in the ego frame (x forward, y left)
    velocity = ego2lidar @ np.asarray(messages[k]["vel"], dtype=np.float64)
    acceleration = ego2lidar @ np.asarray(messages[k]["accel"], dtype=np.float64)
    return velocity[:2].astype(np.float32), acceleration[:2].astype(np.float32), float(messages[k]["rotation_rate"][2])


def _agents(frames: list[_Frame], i: int, global2lidar: np.ndarray) -> dict[str, np.ndarray]:
    boxes = frames[i].boxes
    k = len(boxes.instance)
    future = np.zeros((k, NUM_FUTURE, 2), np.float32)
    future_yaw = np.zeros((k, NUM_FUTURE), np.float32)
    future_mask = np.zeros((k, NUM_FUTURE), bool)
    for step in range(NUM_FUTURE):
        if i + 1 + step >= len(frames):
            break
        later = frames[i + 1 + step].boxes
        rows_now = [r for r, inst in enumerate(boxes.instance) if inst in later.row_of]
        rows_later = np.array([later.row_of[boxes.instance[r]] for r in rows_now], dtype=int)
        if rows_now:
            reframed = later.in_frame(global2lidar, rows_later)
            future[rows_now, step] = reframed[:, :2]
            future_yaw[rows_now, step] = reframed[:, 6]
            future_mask[rows_now, step] = True
    velocity = boxes.velocity @ global2lidar[:3, :3].T
    return {
        "agent_instance": boxes.instance, "agent_track_id": boxes.track_id, "agent_category": boxes.category,
        "agent_class": boxes.det_class, "agent_box": boxes.in_frame(global2lidar),
        "agent_velocity": velocity[:, :2].astype(np.float32), "agent_visibility": boxes.visibility,
        "agent_num_lidar_pts": boxes.num_lidar_pts, "agent_future": future, "agent_future_yaw": future_yaw,
        "agent_future_mask": future_mask,
    }


def _future_boxes(frames: list[_Frame], i: int, global2lidar: np.ndarray) -> dict[str, np.ndarray]:
    later = frames[i + 1: i + 1 + NUM_FUTURE]
    return {
        "future_box_step": np.concatenate([np.full(len(f.boxes.instance), s, np.int8) for s, f in enumerate(later)]
                                       + [np.zeros(0, np.int8)]),
        "future_box": np.concatenate([f.boxes.in_frame(global2lidar) for f in later] + [np.zeros((0, 7), np.float32)]),
        "future_box_category": np.concatenate([f.boxes.category for f in later] + [np.zeros(0, str)]).astype(str),
        "future_box_track_id": np.concatenate([f.boxes.track_id for f in later] + [np.zeros(0, np.int32)]),
        "future_box_visibility": np.concatenate([f.boxes.visibility for f in later] + [np.zeros(0, np.int8)]),
    }


def _context_track_ids(frames: list[_Frame], i: int) -> np.ndarray:
    """Instances seen with visibility > 1 at t = -1.0, -0.5, 0 s (ST-P3's occupancy context)."""
    seen = [f.boxes.track_id[f.boxes.visibility > 1] for f in frames[max(0, i - CONTEXT_STEPS): i + 1]]
    return np.unique(np.concatenate(seen)).astype(np.int32)


def _cameras(nusc: NuScenes, now: _Frame) -> dict[str, np.ndarray]:
    """Paths, intrinsics, image sizes and camera -> current LiDAR transforms in CAMERAS order.

    Each camera fires at its own time, so it goes camera -> ego (its calibration) -> global
    (the ego pose at the camera's timestamp) -> current LiDAR, as BEVFormer/UniAD's sensor2lidar.
    """
    global2lidar = invert_pose(now.lidar2global)
    paths, intrinsics, sensor2lidar, sizes = [], [], [], []
    for cam in CAMERAS:
        token = now.sample["data"].get(cam)
        if token is None:
            raise RecordError(f"{nusc.version}/sample_data.json: sample {now.sample['token']} has no {cam} keyframe "
                              f"(every sample needs all of {list(CAMERAS)}); {FIX_TABLES}")
        sd = nusc.get("sample_data", token)
        cam2ego, ego2global, cs = sensor_poses(nusc, sd)
        cam2global = ego2global @ cam2ego
        paths.append(sd["filename"])
        intrinsics.append(np.asarray(cs["camera_intrinsic"], dtype=np.float64).reshape(3, 3))
        sensor2lidar.append(global2lidar @ cam2global)
        sizes.append((sd["width"], sd["height"]))
    return {"camera_paths": np.array(paths, dtype=str), "camera_intrinsics": np.stack(intrinsics),
                "camera_sensor2lidar": np.stack(sensor2lidar), "camera_image_size": np.array(sizes, dtype=np.int32)}
