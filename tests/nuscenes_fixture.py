"""A hand-made nuScenes v1.0 dataroot with poses simple enough to compute records by hand.

`write_tiny_dataroot(root)` writes three scenes of 8 keyframes (0.5 s apart) on one map:
  * scene-a (train): ego drives north at 10 m/s (5 m per keyframe) from global (100, 200), heading
    north (global yaw 90 deg). A car parks 10 m ahead of the first ego pose, a pedestrian 5 m to
    its west; the car is annotated in every frame, the pedestrian in frames 0-3 only.
  * scene-b (train): same, but the ego also drifts 1 m east per keyframe (heading still north).
  * scene-c (val): drifts 1 m west per keyframe.
The LiDAR is calibrated like nuScenes': yaw -90 deg about z, translation (0.94, 0, 1.84) m.
The map has one road segment x in [90, 110], y in [150, 300], a lane divider along x = 100 and a
pedestrian crossing x in [90, 110], y in [220, 224]. Tokens are readable strings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

VERSION = "v1.0-mini"
LOCATION = "boston-seaport"  # NuScenesMap accepts only the four real map names
FRAMES = 8
T0 = 1_600_000_000_000_000
STEP_US = 500_000
LIDAR_T = (0.94, 0.0, 1.84)
CAMS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
CAM_FRONT_T = (1.7, 0.0, 1.5)
# camera -> ego for a forward-looking camera: camera z (optical axis) -> ego x, camera x -> ego -y,
# camera y (down) -> ego -z; as a quaternion (w, x, y, z) that is (0.5, -0.5, 0.5, -0.5)
CAM_FRONT_Q = (0.5, -0.5, 0.5, -0.5)
SCENES = {"scene-a": 0.0, "scene-b": 1.0, "scene-c": -1.0}  # east drift per keyframe, metres
SPLITS = {"train": ["scene-a", "scene-b"], "val": ["scene-c"]}


def yaw_quaternion(yaw_deg: float) -> list[float]:
    half = math.radians(yaw_deg) / 2
    return [math.cos(half), 0.0, 0.0, math.sin(half)]


def ego_xy(scene: str, frame: int) -> tuple[float, float]:
    return 100.0 + SCENES[scene] * frame, 200.0 + 5.0 * frame


def write_tiny_dataroot(root: Path) -> Path:
    """Write the tables, map expansion, map mask and split file under `root`; returns `root`."""
    tables = _tables()
    (root / VERSION).mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        (root / VERSION / f"{name}.json").write_text(json.dumps(records, indent=1))
    (root / VERSION / "vla_world_splits.json").write_text(json.dumps(SPLITS))
    (root / "maps" / "expansion").mkdir(parents=True, exist_ok=True)
    (root / "maps" / "expansion" / f"{LOCATION}.json").write_text(json.dumps(_map_expansion()))
    (root / "maps" / "tiny-mask.png").write_bytes(_tiny_png())
    return root


def _tables() -> dict[str, list[dict]]:
    t: dict[str, list[dict]] = {name: [] for name in (
        "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
        "scene", "sample", "sample_data", "sample_annotation", "map")}
    t["category"] = [{"token": "cat-car", "name": "vehicle.car", "description": ""},
                     {"token": "cat-ped", "name": "human.pedestrian.adult", "description": ""}]
    t["visibility"] = [{"token": str(i + 1), "level": lvl, "description": ""}
                       for i, lvl in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"))]
    t["sensor"] = [{"token": f"sensor-{c}", "channel": c, "modality": "camera"} for c in CAMS]
    t["sensor"].append({"token": "sensor-LIDAR_TOP", "channel": "LIDAR_TOP", "modality": "lidar"})
    t["calibrated_sensor"] = [_camera_calibration(c) for c in CAMS]
    t["calibrated_sensor"].append({"token": "cs-LIDAR_TOP", "sensor_token": "sensor-LIDAR_TOP", "translation": list(LIDAR_T),
                                   "rotation": yaw_quaternion(-90), "camera_intrinsic": []})
    t["log"] = [{"token": "log-0", "logfile": "", "vehicle": "tiny", "date_captured": "2026-11-21", "location": LOCATION}]
    t["map"] = [{"token": "map-0", "log_tokens": ["log-0"], "category": "semantic_prior", "filename": "maps/tiny-mask.png"}]
    for scene in SCENES:
        _add_scene(t, scene)
    return t


def _camera_calibration(cam: str) -> dict:
    # only CAM_FRONT carries hand-checked numbers; the others are copies turned about z
    turn = {"CAM_FRONT": 0, "CAM_FRONT_RIGHT": -55, "CAM_FRONT_LEFT": 55, "CAM_BACK": 180,
            "CAM_BACK_LEFT": 110, "CAM_BACK_RIGHT": -110}[cam]
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("z", turn, degrees=True) * Rotation.from_quat(CAM_FRONT_Q, scalar_first=True)
    return {"token": f"cs-{cam}", "sensor_token": f"sensor-{cam}", "translation": list(CAM_FRONT_T),
            "rotation": rot.as_quat(scalar_first=True).tolist(),
            "camera_intrinsic": [[50.0, 0.0, 48.0], [0.0, 50.0, 27.0], [0.0, 0.0, 1.0]]}


def _add_scene(t: dict[str, list[dict]], scene: str) -> None:
    samples = [f"{scene}-s{k}" for k in range(FRAMES)]
    t["scene"].append({"token": f"{scene}-token", "log_token": "log-0", "nbr_samples": FRAMES, "name": scene,
                       "first_sample_token": samples[0], "last_sample_token": samples[-1], "description": ""})
    for k, token in enumerate(samples):
        stamp = T0 + k * STEP_US
        t["sample"].append({"token": token, "timestamp": stamp, "scene_token": f"{scene}-token",
                            "prev": samples[k - 1] if k else "", "next": samples[k + 1] if k + 1 < FRAMES else ""})
        x, y = ego_xy(scene, k)
        t["ego_pose"].append({"token": f"{token}-pose", "timestamp": stamp, "translation": [x, y, 0.0],
                              "rotation": yaw_quaternion(90)})
        for channel in (*CAMS, "LIDAR_TOP"):
            lidar = channel == "LIDAR_TOP"
            t["sample_data"].append({
                "token": f"{token}-{channel}", "sample_token": token, "ego_pose_token": f"{token}-pose",
                "calibrated_sensor_token": f"cs-{channel}", "timestamp": stamp, "is_key_frame": True,
                "fileformat": "pcd" if lidar else "jpg", "height": 0 if lidar else 54, "width": 0 if lidar else 96,
                "filename": f"samples/{channel}/{token}.{'pcd.bin' if lidar else 'jpg'}",
                "prev": f"{samples[k - 1]}-{channel}" if k else "",
                "next": f"{samples[k + 1]}-{channel}" if k + 1 < FRAMES else ""})
    _add_agent(t, scene, "car", "cat-car", (100.0, 210.0, 1.0), range(FRAMES), visibility="4")
    _add_agent(t, scene, "ped", "cat-ped", (95.0, 200.0, 0.9), range(4), visibility="1")


def _add_agent(t: dict[str, list[dict]], scene: str, name: str, category: str, xyz: tuple[float, float, float],
               frames: range, visibility: str) -> None:
    instance = f"{scene}-{name}"
    anns = [f"{instance}-a{k}" for k in frames]
    t["instance"].append({"token": instance, "category_token": category, "nbr_annotations": len(anns),
                          "first_annotation_token": anns[0], "last_annotation_token": anns[-1]})
    size = [1.9, 4.6, 1.7] if name == "car" else [0.7, 0.7, 1.8]
    for i, k in enumerate(frames):
        t["sample_annotation"].append({
            "token": anns[i], "sample_token": f"{scene}-s{k}", "instance_token": instance,
            "visibility_token": visibility, "attribute_tokens": [], "translation": list(xyz), "size": size,
            "rotation": yaw_quaternion(90), "prev": anns[i - 1] if i else "", "next": anns[i + 1] if i + 1 < len(anns) else "",
            "num_lidar_pts": 20, "num_radar_pts": 0})


def _map_expansion() -> dict:
    nodes, polygons, lines = [], [], []

    def polygon(token: str, xs: tuple[float, float], ys: tuple[float, float]) -> str:
        corners = [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1])]
        for i, (x, y) in enumerate(corners):
            nodes.append({"token": f"{token}-n{i}", "x": x, "y": y})
        polygons.append({"token": token, "exterior_node_tokens": [f"{token}-n{i}" for i in range(4)], "holes": []})
        return token

    road = polygon("poly-road", (90.0, 110.0), (150.0, 300.0))
    crossing = polygon("poly-cross", (90.0, 110.0), (220.0, 224.0))
    nodes += [{"token": "div-n0", "x": 100.0, "y": 150.0}, {"token": "div-n1", "x": 100.0, "y": 300.0}]
    lines.append({"token": "line-div", "node_tokens": ["div-n0", "div-n1"]})
    empty = ("drivable_area", "road_block", "lane", "walkway", "stop_line", "carpark_area", "road_divider",
             "traffic_light", "lane_connector")
    return {
        "version": "1.3", "canvas_edge": [400.0, 400.0], "node": nodes, "polygon": polygons, "line": lines,
        **{name: [] for name in empty},
        "road_segment": [{"token": "road-0", "polygon_token": road, "is_intersection": False, "drivable_area_token": ""}],
        "ped_crossing": [{"token": "cross-0", "polygon_token": crossing, "road_segment_token": "road-0"}],
        "lane_divider": [{"token": "div-0", "line_token": "line-div", "lane_divider_segments": []}],
        "arcline_path_3": {}, "connectivity": {},
    }


def _tiny_png() -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    assert ok
    return encoded.tobytes()
