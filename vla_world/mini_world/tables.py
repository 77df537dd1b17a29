"""Builds the 13 nuScenes v1.0 tables in memory and writes them as `<dataroot>/<version>/<table>.json`.

Field names, token links, prev/next chains and units follow the devkit's schema (translations
in metres, rotations as (w, x, y, z) quaternions, sizes (w, l, h), timestamps in microseconds).
The writer knows nothing about simulation; `generate.py` feeds it one keyframe at a time.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .sensors import ALL_SENSORS, SensorCalibration
from .tokens import TokenFactory

TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
          "sample_annotation", "sample_data", "scene", "sensor", "visibility")

# Real nuScenes v1.0 category names (all 23) and attribute names (all 8).
CATEGORIES = (
    "animal", "human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility", "human.pedestrian.police_officer", "human.pedestrian.stroller",
    "human.pedestrian.wheelchair", "movable_object.barrier", "movable_object.debris",
    "movable_object.pushable_pullable", "movable_object.trafficcone", "static_object.bicycle_rack",
    "vehicle.bicycle", "vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.car", "vehicle.construction",
    "vehicle.emergency.ambulance", "vehicle.emergency.police", "vehicle.motorcycle", "vehicle.trailer", "vehicle.truck",
)
ATTRIBUTES = (
    "vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
    "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving",
)
VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))


def yaw_quaternion(yaw: float) -> list[float]:
    """(w, x, y, z) of a rotation by `yaw` radians about +z."""
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


@dataclass
class BoxAnnotation:
    """One object at one keyframe, global frame."""

    agent_id: int  # stable within a scene
    category: str
    attribute: str
    center: tuple[float, float, float]  # metres
    size_wlh: tuple[float, float, float]
    yaw: float
    num_lidar_pts: int
    visibility: str  # "1".."4"


@dataclass
class TableWriter:
    tokens: TokenFactory
    tables: dict[str, list[dict]] = field(default_factory=lambda: {name: [] for name in TABLES})

    def __post_init__(self) -> None:
        self._add_vocabularies()
        self._sensor_tokens = {}
        for sensor in ALL_SENSORS:
            token = self.tokens.make("sensor", sensor.channel)
            self.tables["sensor"].append({"token": token, "channel": sensor.channel, "modality": sensor.modality})
            self._sensor_tokens[sensor.channel] = token

    def _add_vocabularies(self) -> None:
        for name in CATEGORIES:
            self.tables["category"].append({"token": self.tokens.make("category", name), "name": name,
                                            "description": f"nuScenes category {name}",
                                            "index": CATEGORIES.index(name)})
        for name in ATTRIBUTES:
            self.tables["attribute"].append({"token": self.tokens.make("attribute", name), "name": name,
                                             "description": f"nuScenes attribute {name}"})
        for token, level in VISIBILITY_LEVELS:
            self.tables["visibility"].append({"token": token, "level": level,
                                              "description": f"visibility of whole object is between {level[1:]}%"})

    def add_log(self, key: str, logfile: str, location: str, date: str) -> str:
        token = self.tokens.make("log", key)
        self.tables["log"].append({"token": token, "logfile": logfile, "vehicle": logfile.split("-")[0],
                                   "date_captured": date, "location": location})
        return token

    def add_calibration(self, log_key: str, sensor: SensorCalibration, image_size: tuple[int, int]) -> str:
        token = self.tokens.make("calibrated_sensor", log_key, sensor.channel)
        intrinsic = sensor.intrinsic(image_size).tolist() if sensor.modality == "camera" else []
        self.tables["calibrated_sensor"].append({
            "token": token, "sensor_token": self._sensor_tokens[sensor.channel],
            "translation": list(sensor.translation), "rotation": list(sensor.rotation), "camera_intrinsic": intrinsic})
        return token

    def add_map(self, location: str, log_tokens: list[str], filename: str) -> None:
        self.tables["map"].append({"token": self.tokens.make("map", location), "log_tokens": log_tokens,
                                   "category": "semantic_prior", "filename": filename})

    def add_scene(self, scene: SceneTables) -> None:
        """Link a finished scene's samples, sample_data and annotations into chains and store them."""
        samples = scene.samples
        _chain(samples)
        for channel_rows in scene.sample_data.values():
            _chain(channel_rows)
        for agent_id, rows in scene.annotations_by_agent.items():
            _chain(rows)
            first, last = rows[0], rows[-1]
            self.tables["instance"].append({
                "token": first["instance_token"], "category_token": self.tokens.make("category", scene.categories[agent_id]),
                "nbr_annotations": len(rows), "first_annotation_token": first["token"],
                "last_annotation_token": last["token"]})
            self.tables["sample_annotation"].extend(rows)
        self.tables["scene"].append({
            "token": scene.token, "log_token": scene.log_token, "nbr_samples": len(samples),
            "first_sample_token": samples[0]["token"], "last_sample_token": samples[-1]["token"],
            "name": scene.name, "description": scene.description})
        self.tables["sample"].extend(samples)
        for rows in scene.sample_data.values():
            self.tables["sample_data"].extend(rows)
        self.tables["ego_pose"].extend(scene.ego_poses)

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            (folder / f"{name}.json").write_text(json.dumps(self.tables[name], indent=0))


def _chain(rows: list[dict]) -> None:
    for a, b in itertools.pairwise(rows):
        a["next"], b["prev"] = b["token"], a["token"]
    if rows:
        rows[0]["prev"], rows[-1]["next"] = "", ""


@dataclass
class SceneTables:
    """Rows of one scene before they are chained (prev/next filled by TableWriter.add_scene)."""

    tokens: TokenFactory
    token: str
    name: str
    log_token: str
    description: str
    calibration_tokens: dict[str, str]  # channel -> calibrated_sensor token
    samples: list[dict] = field(default_factory=list)
    sample_data: dict[str, list[dict]] = field(default_factory=dict)
    ego_poses: list[dict] = field(default_factory=list)
    annotations_by_agent: dict[int, list[dict]] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)  # agent id -> category name
    key: str = ""  # namespace of this scene's row tokens (default: its name)

    def __post_init__(self) -> None:
        self.key = self.key or self.name

    def add_keyframe(self, index: int, timestamp: int, ego_translation: list[float], ego_yaw: float,
                     filenames: dict[str, str], image_size: tuple[int, int]) -> str:
        """A sample with one keyframe sample_data (and its ego pose) per sensor; returns the sample token."""
        sample_token = self.tokens.make(self.key, "sample", index)
        self.samples.append({"token": sample_token, "timestamp": timestamp, "prev": "", "next": "",
                             "scene_token": self.token})
        for channel, filename in filenames.items():
            token = self.tokens.make(self.key, "sample_data", channel, index)
            camera = channel.startswith("CAM")
            self.ego_poses.append({"token": token, "timestamp": timestamp, "rotation": yaw_quaternion(ego_yaw),
                                   "translation": ego_translation})
            self.sample_data.setdefault(channel, []).append({
                "token": token, "sample_token": sample_token, "ego_pose_token": token,
                "calibrated_sensor_token": self.calibration_tokens[channel], "timestamp": timestamp,
                "fileformat": "jpg" if camera else "pcd", "is_key_frame": True,
                "height": image_size[1] if camera else 0, "width": image_size[0] if camera else 0,
                "filename": filename, "prev": "", "next": ""})
        return sample_token

    def add_annotation(self, sample_token: str, box: BoxAnnotation) -> None:
        rows = self.annotations_by_agent.setdefault(box.agent_id, [])
        self.categories[box.agent_id] = box.category
        rows.append({
            "token": self.tokens.make(self.key, "annotation", box.agent_id, sample_token),
            "sample_token": sample_token, "instance_token": self.tokens.make(self.key, "instance", box.agent_id),
            "visibility_token": box.visibility, "attribute_tokens": [self.tokens.make("attribute", box.attribute)],
            "translation": [round(float(v), 4) for v in box.center], "size": [float(v) for v in box.size_wlh],
            "rotation": yaw_quaternion(float(box.yaw)), "prev": "", "next": "",
            "num_lidar_pts": int(box.num_lidar_pts), "num_radar_pts": 0})
