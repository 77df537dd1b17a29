"""The nuScenes sensor rig (6 cameras + LIDAR_TOP) with the real calibration values.

Values are those of the nuScenes Renault Zoe rig (log n015, 1600x900 cameras), so that a model
trained on the mini world sees the same camera geometry as on real nuScenes. Ego frame: x
forward, y left, z up, origin at the rear axle on the ground (nuScenes convention). Rotations
are quaternions (w, x, y, z) mapping sensor axes into the ego frame; camera axes are x right,
y down, z forward (OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyquaternion import Quaternion

NATIVE_IMAGE_SIZE = (1600, 900)  # (width, height) of the real nuScenes cameras
EGO_SIZE_WLH = (1.73, 4.08, 1.56)  # Renault Zoe width, length, height in metres
EGO_CENTER_AHEAD_OF_REAR_AXLE = 1.3  # metres from the ego origin to the box centre


@dataclass(frozen=True)
class SensorCalibration:
    """One calibrated_sensor record: where the sensor sits on the car and its intrinsics."""

    channel: str
    modality: str  # "camera" | "lidar"
    translation: tuple[float, float, float]  # metres, ego frame
    rotation: tuple[float, float, float, float]  # (w, x, y, z), sensor -> ego
    intrinsic_native: tuple[tuple[float, ...], ...] | None  # 3x3 at 1600x900, None for lidar

    def intrinsic(self, image_size: tuple[int, int]) -> np.ndarray:
        """3x3 camera matrix scaled from 1600x900 to `image_size` = (width, height)."""
        if self.intrinsic_native is None:
            raise ValueError(f"{self.channel} is a {self.modality}, it has no intrinsic matrix")
        sx = image_size[0] / NATIVE_IMAGE_SIZE[0]
        sy = image_size[1] / NATIVE_IMAGE_SIZE[1]
        k = np.array(self.intrinsic_native, dtype=np.float64)
        k[0] *= sx
        k[1] *= sy
        return k

    def sensor_to_ego(self) -> np.ndarray:
        """4x4 transform taking sensor-frame points into the ego frame."""
        t = np.eye(4)
        t[:3, :3] = Quaternion(self.rotation).rotation_matrix
        t[:3, 3] = self.translation
        return t


def _k(fx: float, cx: float, cy: float) -> tuple[tuple[float, ...], ...]:
    return ((fx, 0.0, cx), (0.0, fx, cy), (0.0, 0.0, 1.0))


LIDAR = SensorCalibration(
    "LIDAR_TOP", "lidar", (0.943713, 0.0, 1.84023),
    (0.7077955119163518, -0.006492242056004365, 0.010646214713995808, -0.7063073142877817), None,
)

CAMERAS: tuple[SensorCalibration, ...] = (
    SensorCalibration(
        "CAM_FRONT", "camera", (1.70079118954, 0.0159456324149, 1.51095763913),
        (0.4998015430569128, -0.5030316162024876, 0.4997798114386805, -0.49737083824542755),
        _k(1266.417203046554, 816.2670197447984, 491.50706579294757),
    ),
    SensorCalibration(
        "CAM_FRONT_RIGHT", "camera", (1.5508477543, -0.493404796419, 1.49574800619),
        (0.2060347966337182, -0.2026940577919598, 0.6824507824531167, -0.6713610884174485),
        _k(1260.8474446004698, 807.968244525554, 495.3344268742088),
    ),
    SensorCalibration(
        "CAM_FRONT_LEFT", "camera", (1.52387798135, 0.494631336551, 1.50932822144),
        (0.6757265034669446, -0.6736266522251881, 0.21214015046209478, -0.21122827103904068),
        _k(1272.5979470598488, 826.6154927353808, 479.75165386361925),
    ),
    SensorCalibration(
        "CAM_BACK", "camera", (0.0283260309358, 0.00345136761476, 1.57910346144),
        (0.5037872666382278, -0.49740249788611096, -0.4941850223835201, 0.5045496097725592),
        _k(809.2209905677063, 829.2196003259838, 481.77842384512485),
    ),
    SensorCalibration(
        "CAM_BACK_LEFT", "camera", (1.03569100218, 0.484795032713, 1.59097014818),
        (0.6924185592174665, -0.7031619420114925, -0.11648342771943819, 0.11203317912370753),
        _k(1256.7414812095406, 792.1125740759628, 492.7757465151356),
    ),
    SensorCalibration(
        "CAM_BACK_RIGHT", "camera", (1.0148780988, -0.480568219723, 1.56239545128),
        (0.12280980120078765, -0.132400842670559, -0.7004305821388234, 0.690496031265798),
        _k(1259.5137405846733, 807.2529053838625, 501.19579884916527),
    ),
)

ALL_SENSORS: tuple[SensorCalibration, ...] = CAMERAS + (LIDAR,)
