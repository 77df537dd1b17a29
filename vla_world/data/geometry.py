"""Rigid-transform helpers shared by the record builder and the map extractor.

nuScenes stores every pose as a translation (metres) plus a unit quaternion in (w, x, y, z)
order. Everything here works with 4x4 homogeneous matrices `A2B` that map points from frame A
into frame B (so `lidar2global @ [p, 1]` moves a LiDAR-frame point to the global frame).
Quaternion maths goes through libraries: scipy's `Rotation` for arrays of quaternions (one call
per keyframe) and pyquaternion (the devkit's own) for single poses, where scipy's per-call
overhead (~1 ms) would dominate the build. Only the 4x4 bookkeeping is written here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyquaternion import Quaternion
from scipy.spatial.transform import Rotation


def rotation_matrices(quaternions_wxyz: np.ndarray) -> np.ndarray:
    """(N, 4) nuScenes quaternions (w, x, y, z) -> (N, 3, 3) rotation matrices."""
    quats = np.asarray(quaternions_wxyz, dtype=np.float64).reshape(-1, 4)
    return Rotation.from_quat(quats, scalar_first=True).as_matrix().reshape(-1, 3, 3)


def pose_matrix(translation: Sequence[float], rotation_wxyz: Sequence[float]) -> np.ndarray:
    """One nuScenes pose (translation, quaternion w-x-y-z) -> 4x4 matrix mapping child -> parent."""
    matrix = np.eye(4)
    matrix[:3, :3] = Quaternion(list(rotation_wxyz)).rotation_matrix
    matrix[:3, 3] = np.asarray(translation, dtype=np.float64)
    return matrix


def invert_pose(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (R^T, -R^T t), exact and cheaper than np.linalg.inv."""
    inverse = np.eye(4)
    rotation_t = matrix[:3, :3].T
    inverse[:3, :3] = rotation_t
    inverse[:3, 3] = -rotation_t @ matrix[:3, 3]
    return inverse


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points; returns (N, 3)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def heading_yaws(frame_from_global: np.ndarray, object_rotations: np.ndarray) -> np.ndarray:
    """Yaw (rad, CCW from the frame's +x) of each object's +x axis, seen in another frame.

    `frame_from_global` is the 4x4 (or 3x3) global -> frame transform and `object_rotations` the
    (N, 3, 3) object -> global rotations. For a nuScenes box the object +x axis is its heading
    (the length direction), for an ego pose it is the vehicle's forward axis.
    """
    axes = frame_from_global[:3, :3] @ np.asarray(object_rotations)[..., :, 0][..., None]
    return np.arctan2(axes[..., 1, 0], axes[..., 0, 0])


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap radians into [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi
