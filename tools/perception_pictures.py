"""Pictures of what perception found, one PNG per keyframe (used by `tools/eval_perception.py --pictures`).

Left: the ground view the map head reads (perception/ground_view.py; only for a checkpoint that has one) with
the GT map drawn over it. Right: the BEV with the GT map (grey, planning/bev_plot.py's styles) and GT boxes,
and the predicted polylines (coloured by class) and boxes above the evaluation's score floor. Frame: current
LiDAR_TOP, x right, y forward, metres; rows of the ground view grow forward, so it is drawn with origin="lower".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from planning.bev_plot import box_corners, draw_map, make_bev_axes
from vla_world.data.records import MAP_CLASSES, SampleRecord

PRED_MAP_COLOURS = {"lane_divider": "#E65100", "road_boundary": "#2E7D32", "ped_crossing": "#1565C0"}
GT_BOX_COLOUR, PRED_BOX_COLOUR = "#616161", "#D81B60"
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def ground_rgb(ground: np.ndarray) -> np.ndarray:
    """(4, H, W) ground view (normalised RGB + visibility) -> (H, W, 3) float in [0, 1], unseen cells black."""
    rgb = ground[:3].transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(rgb, 0, 1) * ground[3][..., None]


def draw_boxes(ax, boxes: np.ndarray, colour: str, label: str) -> None:
    for n, (x, y, _, w, length, _, yaw) in enumerate(np.asarray(boxes)[:, :7]):
        corners = box_corners(x, y, w, length, yaw)
        ax.fill(corners[:, 0], corners[:, 1], fill=False, edgecolor=colour, linewidth=1.0, zorder=3,
                label=label if n == 0 else None)


def draw_predicted_map(ax, types: np.ndarray, points: np.ndarray) -> None:
    seen = set()
    for kind, line in zip(types, points):
        name = MAP_CLASSES[int(kind)]
        ax.plot(line[:, 0], line[:, 1], color=PRED_MAP_COLOURS[name], linewidth=1.6, zorder=2,
                label=f"predicted {name}" if name not in seen else None)
        seen.add(name)


def perception_picture(record: SampleRecord, pred, gt_boxes: np.ndarray, half: tuple[float, float],
                       ground: np.ndarray | None, title: str) -> Figure:
    """One keyframe: `pred` is a perception.evaluate.FramePrediction, `ground` the (4, H, W) ground view or None."""
    extent = (-half[0], half[0], -half[1], half[1])
    fig = Figure(figsize=(12 if ground is not None else 6.5, 6), dpi=110, layout="constrained")
    axes = fig.subplots(1, 2 if ground is not None else 1, squeeze=False)[0]
    if ground is not None:
        _, left = make_bev_axes(extent, ax=axes[0])
        left.imshow(ground_rgb(ground), origin="lower", extent=extent, zorder=0)
        draw_map(left, record)
        left.set_title("ground view (camera colours on the road plane) + GT map")
    _, right = make_bev_axes(extent, ax=axes[-1])
    draw_map(right, record)
    draw_boxes(right, gt_boxes, GT_BOX_COLOUR, "GT box")
    draw_predicted_map(right, pred.map.types, pred.map.points)
    draw_boxes(right, pred.boxes, PRED_BOX_COLOUR, "predicted box")
    if right.get_legend_handles_labels()[0]:
        right.legend(loc="upper right", fontsize=7)
    right.set_title("GT (grey) vs predicted map and boxes")
    fig.suptitle(title, fontsize=9)
    return fig


def save_pictures(records: list[SampleRecord], preds: list, gt_boxes: list[np.ndarray], grounds: list[np.ndarray | None],
                  half: tuple[float, float], out: Path, title: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for record, pred, boxes, ground in zip(records, preds, gt_boxes, grounds):
        path = out / f"{record.scene_name}_{record.frame_index:03d}_{record.sample_token[:8]}.png"
        perception_picture(record, pred, boxes, half, ground, f"{title} | {record.scene_name} frame {record.frame_index}").savefig(path)
        paths.append(path)
    return paths
