"""The mini world's cameras and LiDAR at any ego pose: sensor files for a planner that sees.

Why: in closed loop the ego goes where no recorded keyframe was, so a planner that reads the
cameras (the VLA with its perception) needs them rendered at the simulated pose, with the
simulated agents in view, and written as files exactly like the world builder writes them (the
perception reads images by path). Same renderers, calibration and file formats as
`vla_world.mini_world.generate`.

    rig = SensorRig(net, image_size=(256, 144))
    files = rig.capture(ego2global, boxes, folder, stem="episode-000-t012")   # relative paths under folder
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .generate import LIDAR_AZIMUTH_STEPS, SENSOR_RANGE, _write_jpeg, _write_lidar
from .ground_texture import build_ground_texture
from .lidar import LidarBox, LidarModel
from .render_camera import CameraRenderer, RenderBox, class_colour
from .road_network import RoadNetwork
from .sensors import CAMERAS, LIDAR

LIDAR_REFLECTANCE = {"vehicle": 45.0, "cycle": 30.0, "pedestrian": 18.0}  # as the world builder casts them


@dataclass(frozen=True)
class SensorBox:
    """One road user to draw: box centre on the ground plane, size, heading, category and kind."""

    xy: np.ndarray  # (2,) global
    size_wlh: tuple[float, float, float]
    yaw: float
    category: str
    kind: str  # "vehicle" | "cycle" | "pedestrian"


@dataclass(frozen=True)
class Capture:
    """Where one capture's files are, relative to the rig's folder (CAMERAS order), and their calibration."""

    camera_paths: tuple[str, ...]
    lidar_path: str
    intrinsics: np.ndarray  # (6, 3, 3)
    camera_to_ego: np.ndarray  # (6, 4, 4)
    image_size: tuple[int, int]  # (width, height)


class SensorRig:
    """Six cameras and the LiDAR of the mini world, for one road network."""

    def __init__(self, net: RoadNetwork, image_size: tuple[int, int] = (256, 144)):
        self.texture = build_ground_texture(net)
        self.image_size = image_size
        self.cameras = CameraRenderer(self.texture, image_size)
        self.lidar = LidarModel(LIDAR.sensor_to_ego(), LIDAR_AZIMUTH_STEPS)

    def capture(self, ego2global: np.ndarray, boxes: list[SensorBox], folder: Path, stem: str,
                seed: int = 0) -> Capture:
        """Render every camera and one sweep at `ego2global`; write them under `folder`."""
        near = [b for b in boxes if np.linalg.norm(b.xy - ego2global[:2, 3]) < SENSOR_RANGE]
        images = self.cameras.render(ego2global, [_render_box(b) for b in near])
        paths = []
        for cam in CAMERAS:
            relative = f"samples/{cam.channel}/{stem}__{cam.channel}.jpg"
            _write_jpeg(folder / relative, images[cam.channel])
            paths.append(relative)
        sweep = self.lidar.cast(ego2global, [_lidar_box(b) for b in near], self.texture.reflectance,
                                np.random.default_rng(seed))
        lidar_path = f"samples/LIDAR_TOP/{stem}__LIDAR_TOP.pcd.bin"
        _write_lidar(folder / lidar_path, sweep.points)
        return Capture(tuple(paths), lidar_path, np.stack([c.intrinsic(self.image_size) for c in CAMERAS]),
                       np.stack([c.sensor_to_ego() for c in CAMERAS]), self.image_size)


def _centre(box: SensorBox) -> np.ndarray:
    return np.array([box.xy[0], box.xy[1], box.size_wlh[2] / 2])


def _render_box(box: SensorBox) -> RenderBox:
    return RenderBox(_centre(box), np.array(box.size_wlh), box.yaw, class_colour(box.category))


def _lidar_box(box: SensorBox) -> LidarBox:
    return LidarBox(_centre(box), np.array(box.size_wlh), box.yaw, LIDAR_REFLECTANCE[box.kind])
