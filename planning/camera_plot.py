"""Draw LiDAR-frame things (ego trajectories, GT boxes) onto a record's camera images.

Why: a BEV alone hides whether a trajectory is plausible in the scene; projecting it into
CAM_FRONT shows it on the road. The projection uses only the record (no devkit tables):
    p_cam = inverse(camera_sensor2lidar) @ p_lidar      (camera frame: x right, y down, z forward)
    (u, v) = (K @ p_cam)[:2] / z                       (pixels, origin at the top-left corner)
Points with z below `MIN_DEPTH_M` are behind the image plane and are dropped, never mirrored.

Ground: trajectories and map polylines are (x, y) on the road, but the LiDAR_TOP origin is
~1.84 m above it and the sensor is tilted by ~1 degree. nuScenes ego poses lie on the global
z = 0 plane, so `ground_points` puts each (x, y) at the LiDAR-frame z that `lidar2global` maps to
global z = 0 (tilt included: a flat z = -1.84 m puts the road ~0.25 m off 10 m ahead, which
visibly misplaces crosswalks in the mini world). Records without a usable global pose (e.g.
`synthetic_record`) fall back to a flat road at z = -`NUSCENES_LIDAR_HEIGHT_M`.

Example (used by tools/visualize.py and tools/show_sample.py):
    show_image(ax, load_camera_image(dataroot, record, "CAM_FRONT"))
    draw_projected_map(ax, record, "CAM_FRONT"); draw_projected_boxes(ax, record, "CAM_FRONT")
    draw_projected_trajectory(ax, record, "CAM_FRONT", record.ego_future, GT_STYLE, record.ego_future_mask)
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from nuscenes.utils.geometry_utils import view_points
from PIL import Image

from planning.bev_plot import (
    CLASS_COLOURS,
    MAP_STYLES,
    TrajectoryStyle,
    box_corners,
    class_name,
)
from vla_world.data.records import CAMERAS, MAP_CLASSES, SampleRecord

NUSCENES_LIDAR_HEIGHT_M = 1.84  # LIDAR_TOP above the ground in nuScenes' calibrated_sensor table
MIN_DEPTH_M = 0.5  # points nearer than this to the image plane blow up in u, v
_PLAUSIBLE_LIDAR_HEIGHT_M = (0.5, 3.5)

# Edges of an 8-corner 3-D box (bottom face 0-3, top face 4-7, same order) for wireframes.
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def project_points(points_lidar: np.ndarray, sensor2lidar: np.ndarray, intrinsics: np.ndarray,
                   min_depth: float = MIN_DEPTH_M) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) LiDAR-frame metres -> ((N, 2) pixels (u right, v down), (N,) in-front mask).

    Pixels of points behind the camera are NaN so they can never be drawn by accident.
    """
    points = np.asarray(points_lidar, dtype=float).reshape(-1, 3)
    homogeneous = np.hstack([points, np.ones((len(points), 1))])
    camera = (np.linalg.inv(sensor2lidar) @ homogeneous.T)[:3]
    in_front = camera[2] > min_depth
    with np.errstate(divide="ignore", invalid="ignore"):  # depth 0 behind the camera; masked below
        uv = view_points(camera, np.asarray(intrinsics, dtype=float), normalize=True)[:2].T
    uv[~in_front] = np.nan
    return uv, in_front


def ground_points(record: SampleRecord, xy: np.ndarray) -> np.ndarray:
    """(N, 3) LiDAR-frame points on the road under the BEV positions `xy` (N, 2), metres."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return np.hstack([xy, ground_heights(record, xy)[:, None]])


def ground_heights(record: SampleRecord, xy: np.ndarray) -> np.ndarray:
    """(N,) z (m, LiDAR frame) of the road at each (x, y): the plane that is global z = 0 (module doc)."""
    row = np.asarray(record.lidar2global, dtype=float)[2]  # global z as a function of LiDAR (x, y, z)
    low, high = _PLAUSIBLE_LIDAR_HEIGHT_M
    if not (low <= row[3] <= high and row[2] > 0.9):  # no real pose: a flat road under the sensor
        return np.full(len(xy), -NUSCENES_LIDAR_HEIGHT_M)
    return -(row[0] * xy[:, 0] + row[1] * xy[:, 1] + row[3]) / row[2]


def box_corners_3d(box: np.ndarray) -> np.ndarray:
    """(8, 3) corners of a (x, y, z, w, l, h, yaw) box: bottom face then top face, LiDAR frame."""
    x, y, z, w, l, h, yaw = (float(v) for v in box)
    footprint = box_corners(x, y, w, l, yaw)
    bottom = np.hstack([footprint, np.full((4, 1), z - h / 2)])
    top = np.hstack([footprint, np.full((4, 1), z + h / 2)])
    return np.vstack([bottom, top])


def camera_index(name: str) -> int:
    """Index of a camera channel in the record arrays (CAMERAS order), with a readable error."""
    if name not in CAMERAS:
        raise ValueError(f"unknown camera {name!r}; expected one of {', '.join(CAMERAS)}")
    return CAMERAS.index(name)


def load_camera_image(dataroot: str | Path, record: SampleRecord, camera: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB image of `camera` for this record, read from the dataroot."""
    path = Path(dataroot) / str(record.camera_paths[camera_index(camera)])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: camera image of sample {record.sample_token} ({camera}) is missing; "
                                f"check --dataroot (it must be the folder holding samples/)")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def show_image(ax: Axes, image: np.ndarray, title: str | None = None) -> None:
    """Show a camera image in pixel coordinates (v down) with no ticks; projections draw on top."""
    ax.imshow(image, interpolation="bilinear")
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def draw_projected_trajectory(ax: Axes, record: SampleRecord, camera: str, xy: np.ndarray,
                              style: TrajectoryStyle, mask: np.ndarray | None = None) -> list:
    """A BEV ego trajectory (T, 2) drawn on the ground in `camera`; hidden where behind it."""
    xy = np.asarray(xy, dtype=float)
    if mask is not None:
        xy = xy[np.asarray(mask, bool)]
    i = camera_index(camera)
    calibration = record.camera_sensor2lidar[i], record.camera_intrinsics[i]
    # The path is densified before projecting so the part behind the camera (NaN) is cut close to
    # the image plane instead of dropping a whole 0.5 s segment; NaNs split the drawn polyline.
    path = np.vstack([np.zeros((1, 2)), densify(xy)])
    path_uv, _ = project_points(ground_points(record, path), *calibration)
    waypoint_uv, _ = project_points(ground_points(record, xy), *calibration)
    artists = ax.plot(path_uv[:, 0], path_uv[:, 1], color=style.colour, linestyle=style.linestyle,
                      linewidth=2.2, zorder=5, label=style.label)
    artists += ax.plot(waypoint_uv[:, 0], waypoint_uv[:, 1], color=style.colour, marker=style.marker,
                       markersize=4.5, markeredgecolor="white", markeredgewidth=0.6, linestyle="none", zorder=6)
    return artists


def densify(xy: np.ndarray, points_per_step: int = 20, start: np.ndarray | None = None) -> np.ndarray:
    """(T*k, 2) points along the polyline start -> xy[0] -> ... -> xy[-1], `start` (default origin) excluded."""
    first = np.zeros((1, 2)) if start is None else np.reshape(start, (1, 2))
    path = np.vstack([first, np.asarray(xy, dtype=float)])
    fractions = np.linspace(0.0, 1.0, points_per_step + 1)[1:, None]
    pieces = [a + fractions * (b - a) for a, b in itertools.pairwise(path)]
    return np.vstack(pieces) if pieces else np.zeros((0, 2))


def draw_projected_map(ax: Axes, record: SampleRecord, camera: str, points_per_segment: int = 10) -> list:
    """Map polylines painted on the ground in `camera`, in the BEV map styles (parts behind cut)."""
    i = camera_index(camera)
    calibration = record.camera_sensor2lidar[i], record.camera_intrinsics[i]
    artists = []
    for type_index, polyline in zip(record.map_type, record.map_polylines):
        if len(polyline) < 2:
            continue
        dense = densify(polyline[1:], points_per_segment, start=polyline[0])
        uv, _ = project_points(ground_points(record, np.vstack([polyline[:1], dense])), *calibration)
        style = {**MAP_STYLES[MAP_CLASSES[int(type_index)]], "color": "white"}
        artists += ax.plot(uv[:, 0], uv[:, 1], zorder=3, alpha=0.8, **style)
    return artists


def draw_projected_boxes(ax: Axes, record: SampleRecord, camera: str) -> LineCollection | None:
    """GT agent boxes at t = 0 as 3-D wireframes in `camera`, class-coloured; boxes behind skipped.

    All edges go into one LineCollection: one artist per box edge made the six-camera preview
    spend most of its time in matplotlib bookkeeping.
    """
    i = camera_index(camera)
    segments, colours = [], []
    for box, cls in zip(record.agent_box, record.agent_class):
        uv, in_front = project_points(box_corners_3d(box), record.camera_sensor2lidar[i], record.camera_intrinsics[i])
        if not in_front.all():
            continue  # a box straddling the image plane projects to nonsense; skip it whole
        segments += [uv[[a, b]] for a, b in BOX_EDGES]
        colours += [CLASS_COLOURS[class_name(int(cls))]] * len(BOX_EDGES)
    if not segments:
        return None
    return ax.add_collection(LineCollection(segments, colors=colours, linewidths=1.0, zorder=4))
