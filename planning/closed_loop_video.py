"""An animated GIF of one closed-loop episode: the BEV around the ego (with its plan) beside the front camera.

Why: a closed-loop failure (a missed turn, a late brake) is seen in seconds and explained in
paragraphs. Each frame is drawn in the ego frame (x right, y forward, metres: the ego heads up the
page, as in every other BEV picture of the project): the drivable area, the route, the other road
users, the ego box and the plan in force. The front camera is rendered by the mini world's own
camera renderer from the simulated poses.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import shapely
from PIL import Image

from planning.closed_loop import EpisodeRun, Frame, ego2global
from planning.pdm_score import box_corners
from vla_world.data.geometry import invert_pose, transform_points
from vla_world.mini_world.ground_texture import build_ground_texture
from vla_world.mini_world.interactive import EGO_LENGTH_M, EGO_WIDTH_M, Episode
from vla_world.mini_world.render_camera import CameraRenderer, RenderBox, class_colour
from vla_world.mini_world.sensors import CAMERAS, EGO_CENTER_AHEAD_OF_REAR_AXLE

VIEW_M = 40.0  # half-width of the BEV window
FRAME_EVERY = 5  # simulation steps (0.1 s) per GIF frame
CAMERA_SIZE = (256, 144)


def write_episode_gif(episode: Episode, run: EpisodeRun, path: str | Path, with_camera: bool = True) -> Path:
    """Write the GIF of `run` (every FRAME_EVERY-th step) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    camera = CameraRenderer(build_ground_texture(episode.net), CAMERA_SIZE, (CAMERAS[0],)) if with_camera else None
    images = [_frame_image(episode, run, f, camera) for f in run.frames[::FRAME_EVERY]]
    images[0].save(path, save_all=True, append_images=images[1:], duration=FRAME_EVERY * 100, loop=0)
    return path


def _frame_image(episode: Episode, run: EpisodeRun, frame: Frame, camera: CameraRenderer | None) -> Image.Image:
    fig, axes = plt.subplots(1, 2 if camera else 1, figsize=(9 if camera else 4.5, 4.5), dpi=80, squeeze=False)
    _draw_bev(axes[0, 0], episode, frame)
    axes[0, 0].set_title(f"{run.planner}: t = {frame.t:.1f} s, {frame.ego.speed:.1f} m/s", fontsize=9)
    if camera is not None:
        axes[0, 1].imshow(_front_camera(camera, episode, frame))
        axes[0, 1].set_axis_off()
        axes[0, 1].set_title("CAM_FRONT", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(buffer).convert("P", palette=Image.ADAPTIVE)


def _draw_bev(ax, episode: Episode, frame: Frame) -> None:
    to_ego = _global_to_view(frame)
    window = shapely.box(-VIEW_M, -VIEW_M, VIEW_M, VIEW_M)
    area = shapely.intersection(shapely.transform(episode.drivable_area, lambda p: _apply(to_ego, p)), window)
    for part in shapely.get_parts(area):
        if part.geom_type == "Polygon":
            ax.fill(*part.exterior.xy, color="#E0E0E0", zorder=0)
    route = _apply(to_ego, episode.route_xy)
    ax.plot(route[:, 0], route[:, 1], color="#9E9E9E", linestyle="--", linewidth=1, zorder=1)
    if len(frame.others_xy):
        yaw = frame.others_yaw + _view_rotation(frame)
        corners = box_corners(_apply(to_ego, frame.others_xy), yaw, frame.others_size[:, 0], frame.others_size[:, 1])
        for c in corners:
            ax.fill(c[:, 0], c[:, 1], color="#0072B2", alpha=0.8, zorder=2)
    ego = box_corners(np.array([0.0, EGO_CENTER_AHEAD_OF_REAR_AXLE]), np.array(np.pi / 2), EGO_LENGTH_M, EGO_WIDTH_M)
    ax.fill(ego[:, 0], ego[:, 1], color="#D55E00", zorder=3)
    if frame.plan_global is not None:
        plan = _apply(to_ego, frame.plan_global)
        ax.plot(plan[:, 0], plan[:, 1], "o-", color="#009E73", markersize=3, zorder=4)
    ax.set_xlim(-VIEW_M, VIEW_M)
    ax.set_ylim(-VIEW_M / 2, VIEW_M * 1.5)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)


def _global_to_view(frame: Frame) -> np.ndarray:
    """Global -> the ego's view frame: origin at the rear axle, the ego heading along +y."""
    view_to_global = ego2global(frame.ego)
    rotate = np.eye(4)
    rotate[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]  # ego frame (x forward, y left) -> view (x right, y forward)
    return rotate @ invert_pose(view_to_global)


def _view_rotation(frame: Frame) -> float:
    return math.pi / 2 - frame.ego.yaw


def _apply(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    return transform_points(matrix, np.c_[xy, np.zeros(len(xy))])[:, :2]


def _front_camera(camera: CameraRenderer, episode: Episode, frame: Frame) -> np.ndarray:
    agents = [*episode.setup.traffic.vehicles[1:], *episode.setup.traffic.pedestrians]
    boxes = [RenderBox(np.array([*frame.others_xy[n], a.size[2] / 2]), np.array(a.size), float(frame.others_yaw[n]),
                       class_colour(a.type.category)) for n, a in enumerate(agents)
             if np.linalg.norm(frame.others_xy[n] - frame.ego.xy) < 60.0]
    return camera.render(ego2global(frame.ego), boxes)[CAMERAS[0].channel]
