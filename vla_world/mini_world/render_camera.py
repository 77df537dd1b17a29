"""Renders the 6 nuScenes cameras of one keyframe through the real calibration.

Ground: every pixel's ray is intersected with the road plane (z = 0) and coloured from the
location's `GroundTexture`, so markings sit exactly where the map says; distance haze blends
towards the horizon. Objects: 3D boxes coloured by class, the faces turned towards the camera
filled with cv2 after clipping against the near plane, drawn far-to-near (painter's algorithm)
so nearer boxes hide farther ones. Images are RGB uint8 (H, W, 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .ground_texture import GroundTexture
from .sensors import CAMERAS, SensorCalibration

NEAR_PLANE = 0.1  # metres in front of the camera
MAX_GROUND_RANGE = 160.0  # metres; beyond it the ground is haze
MAX_OBJECT_RANGE = 90.0
SKY_ZENITH, SKY_HORIZON = np.array([95, 140, 205.0]), np.array([200, 215, 230.0])
HAZE = np.array([170, 180, 185.0])
SUN = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])
SUBPIXEL_BITS = 4

# Object colours by nuScenes category prefix (RGB); a perception model learns class from colour and shape.
CLASS_COLOURS = {
    "vehicle.car": (40, 95, 205), "vehicle.truck": (230, 135, 35), "vehicle.bus": (240, 205, 40),
    "vehicle.bicycle": (200, 45, 200), "human.pedestrian": (215, 45, 45),
}
# Corner order of a unit box and its 6 faces with outward normals in the box frame (x length, y width).
_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (0, 1)], dtype=np.float64)
_FACES = (((0, 1, 3, 2), (-1, 0, 0)), ((4, 6, 7, 5), (1, 0, 0)), ((0, 4, 5, 1), (0, -1, 0)),
          ((2, 3, 7, 6), (0, 1, 0)), ((1, 5, 7, 3), (0, 0, 1)), ((0, 2, 6, 4), (0, 0, -1)))
_FACE_FIRST_CORNER = [idx[0] for idx, _ in _FACES]


def class_colour(category: str) -> tuple[int, int, int]:
    for prefix, colour in CLASS_COLOURS.items():
        if category.startswith(prefix):
            return colour
    return (128, 128, 128)


@dataclass(frozen=True)
class RenderBox:
    center: np.ndarray  # (3,) global, metres; z of the box centre
    size_wlh: np.ndarray
    yaw: float
    colour: tuple[int, int, int]


@dataclass
class _Camera:
    """Per-camera constants. The ego moves on the flat plane z = 0 with yaw-only poses, so the
    ground point seen by each pixel is fixed in the ego frame and is computed once."""

    calib: SensorCalibration
    intrinsic: np.ndarray
    cam_to_ego: np.ndarray
    background: np.ndarray  # (H*W, 3) float32 sky and haze
    ground_pixels: np.ndarray  # (G,) flat indices of pixels that see the ground within range
    ground_xy_ego: np.ndarray  # (G, 2) where they see it, ego frame, metres
    fog: np.ndarray  # (G, 1) float32 haze weight


class CameraRenderer:
    def __init__(self, texture: GroundTexture, image_size: tuple[int, int],
                 cameras: tuple[SensorCalibration, ...] = CAMERAS) -> None:
        self.texture = texture
        self.width, self.height = image_size
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
        self.cameras = [self._prepare(calib, pixels, image_size) for calib in cameras]

    @staticmethod
    def _prepare(calib: SensorCalibration, pixels: np.ndarray, image_size: tuple[int, int]) -> _Camera:
        k = calib.intrinsic(image_size)
        cam_to_ego = calib.sensor_to_ego()
        dirs = pixels @ np.linalg.inv(k).T @ cam_to_ego[:3, :3].T  # ego frame
        origin = cam_to_ego[:3, 3]
        elevation = np.clip(dirs[:, 2] / np.linalg.norm(dirs, axis=1), 0.0, 1.0) ** 0.6
        background = SKY_HORIZON + (SKY_ZENITH - SKY_HORIZON) * elevation[:, None]
        down = dirs[:, 2] < -1e-6
        background[down] = HAZE
        t = np.where(down, -origin[2] / np.where(down, dirs[:, 2], -1.0), np.inf)
        ground_xy = origin[:2] + dirs[:, :2] * np.where(np.isfinite(t), t, 0.0)[:, None]
        distance = np.linalg.norm(ground_xy - origin[:2], axis=1)
        ground = down & (distance < MAX_GROUND_RANGE)
        fog = (np.clip(distance[ground] / MAX_GROUND_RANGE, 0.0, 1.0) ** 1.5)[:, None]
        return _Camera(calib, k, cam_to_ego, background.astype(np.float32), np.nonzero(ground)[0],
                       ground_xy[ground], fog.astype(np.float32))

    def render(self, ego_to_global: np.ndarray, boxes: list[RenderBox]) -> dict[str, np.ndarray]:
        """{channel: RGB image} for one ego pose (yaw-only, on z = 0) and the boxes around it (global frame)."""
        geometry = [box_geometry(b) for b in boxes]  # shared by the 6 cameras
        return {cam.calib.channel: self._render_one(cam, ego_to_global, boxes, geometry) for cam in self.cameras}

    def _render_one(self, cam: _Camera, ego_to_global: np.ndarray, boxes: list[RenderBox],
                    geometry: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        image = self._background(cam, ego_to_global)
        if not boxes:
            return image
        cam_to_global = ego_to_global @ cam.cam_to_ego
        origin = cam_to_global[:3, 3]
        world_to_cam = rigid_inverse(cam_to_global)
        corners = np.stack([g[0] for g in geometry])  # (B, 8, 3) global
        cam_corners = corners @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        in_view = self._in_view(cam, cam_corners)
        distance = np.square(corners.mean(axis=1) - origin).sum(axis=1)
        for b in sorted(np.nonzero(in_view)[0], key=lambda b: -distance[b]):  # far to near: painter's algorithm
            self._draw_box(image, cam, corners[b], cam_corners[b], geometry[b][1], origin, boxes[b].colour)
        return image

    def _in_view(self, cam: _Camera, cam_corners: np.ndarray) -> np.ndarray:
        """(B,) boxes that may touch the image: some corner in front and the projection overlaps it."""
        z = cam_corners[..., 2]
        front = z > NEAR_PLANE
        all_front = front.all(axis=1)
        zc = np.where(front, z, 1.0)
        u = cam.intrinsic[0, 0] * cam_corners[..., 0] / zc + cam.intrinsic[0, 2]
        v = cam.intrinsic[1, 1] * cam_corners[..., 1] / zc + cam.intrinsic[1, 2]
        inf = np.inf
        overlaps = ((np.where(front, u, inf).min(1) < self.width) & (np.where(front, u, -inf).max(1) > 0)
                    & (np.where(front, v, inf).min(1) < self.height) & (np.where(front, v, -inf).max(1) > 0)
                    & (z.max(axis=1) < MAX_OBJECT_RANGE))
        # a box straddling the camera plane cannot be culled by its projected corners
        return front.any(axis=1) & (overlaps | ~all_front)

    def _background(self, cam: _Camera, ego_to_global: np.ndarray) -> np.ndarray:
        colour = cam.background.copy()
        hit = cam.ground_xy_ego @ ego_to_global[:2, :2].T + ego_to_global[:2, 3]
        colour[cam.ground_pixels] = self.texture.colour(hit) * (1 - cam.fog) + HAZE.astype(np.float32) * cam.fog
        return colour.reshape(self.height, self.width, 3).round().astype(np.uint8)

    def _draw_box(self, image: np.ndarray, cam: _Camera, corners: np.ndarray, cam_corners: np.ndarray,
                  normals: np.ndarray, origin: np.ndarray, base_colour: tuple[int, int, int]) -> None:
        facing = np.einsum("fk,fk->f", normals, corners[_FACE_FIRST_CORNER] - origin) < 0  # front faces only
        for f in np.nonzero(facing)[0]:
            polygon = clip_near(cam_corners[list(_FACES[f][0])], NEAR_PLANE)
            if len(polygon) < 3:
                continue
            uv = polygon @ cam.intrinsic.T
            uv = np.clip(uv[:, :2] / uv[:, 2:3], -4 * self.width, 4 * self.width)  # keep cv2's fixed point in range
            shade = 0.45 + 0.55 * max(0.0, float(normals[f] @ SUN))
            colour = tuple(int(c * shade) for c in base_colour)
            cv2.fillPoly(image, [(uv * (1 << SUBPIXEL_BITS)).round().astype(np.int32)], colour, cv2.LINE_AA,
                         SUBPIXEL_BITS)


def rigid_inverse(transform: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rotation + translation without a general matrix inverse."""
    out = np.eye(4)
    out[:3, :3] = transform[:3, :3].T
    out[:3, 3] = -transform[:3, :3].T @ transform[:3, 3]
    return out


def box_geometry(box: RenderBox) -> tuple[np.ndarray, np.ndarray]:
    """8 global corners (bottom at z - h/2) and the 6 outward face normals of a box."""
    w, length, h = box.size_wlh
    local = _CORNERS * np.array([length / 2, w / 2, h]) - np.array([0.0, 0.0, h / 2])
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    normals = np.array([n for _, n in _FACES], dtype=np.float64) @ rot.T
    return local @ rot.T + box.center, normals


def clip_near(polygon: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon (N, 3) to z >= near."""
    out = []
    for i in range(len(polygon)):
        a, b = polygon[i], polygon[(i + 1) % len(polygon)]
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)
