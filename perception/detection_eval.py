"""Detection mAP and NDS through the nuScenes devkit (`nuscenes.eval.detection`).

These are *our* numbers: GT `EvalBoxes` are the perception targets built from the records (what
the model is trained to find, inside its BEV grid), predictions are converted to the same
global-frame submission boxes, and only the devkit's `DetectionEval.evaluate` (accumulate, calc_ap,
calc_tp, NDS) runs on them. The devkit's own numbers (its public constructor, GT from the tables,
10 classes, official ranges) come from perception/devkit_detection.py and are reported beside these.

Choices, stated because they differ from the official challenge:
  * GT = the perception targets (detection class, centre inside the BEV grid); no num_pts filter.
  * Classes scored = those with GT in the evaluated split (absent classes would score AP 0).
  * Attributes are not in the records; both GT and predictions get the devkit attribute implied
    by their speed (moving/stopped, with/without rider), so attr_err is the motion-state error.
  * Distance thresholds are the official 0.5/1/2/4 m (center_distance), TP threshold 2 m.
"""

from __future__ import annotations

import numpy as np
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.detection.data_classes import DetectionBox, DetectionConfig
from nuscenes.eval.detection.evaluate import DetectionEval
from pyquaternion import Quaternion

from perception.config import GridConfig
from vla_world.data.records import DETECTION_CLASSES, SampleRecord

MOVING_SPEED = 0.2  # m/s; below it an object counts as stopped / standing
_VEHICLES = {"car", "truck", "bus", "trailer", "construction_vehicle"}


def attribute_for(name: str, speed: float) -> str:
    moving = speed > MOVING_SPEED
    if name in _VEHICLES:
        return "vehicle.moving" if moving else "vehicle.stopped"
    if name == "pedestrian":
        return "pedestrian.moving" if moving else "pedestrian.standing"
    if name in ("motorcycle", "bicycle"):
        return "cycle.with_rider" if moving else "cycle.without_rider"
    return ""


def to_detection_boxes(record: SampleRecord, boxes: np.ndarray, velocities: np.ndarray, classes: np.ndarray,
                       scores: np.ndarray | None) -> list[DetectionBox]:
    """LiDAR-frame boxes (N, 7), velocities (N, 2) -> global-frame devkit boxes (scores None = GT)."""
    lidar2global = np.asarray(record.lidar2global, np.float64)
    frame_rotation = Quaternion(matrix=lidar2global[:3, :3], atol=1e-5)
    out = []
    for i, (x, y, z, w, l, h, yaw) in enumerate(np.asarray(boxes, np.float64)):
        name = DETECTION_CLASSES[int(classes[i])]
        velocity = lidar2global[:2, :2] @ np.asarray(velocities[i], np.float64)
        out.append(DetectionBox(
            sample_token=record.sample_token,
            translation=tuple((lidar2global @ np.array([x, y, z, 1.0]))[:3]),
            size=(max(w, 1e-3), max(l, 1e-3), max(h, 1e-3)),
            rotation=tuple(frame_rotation * Quaternion(axis=(0.0, 0.0, 1.0), angle=yaw)),
            velocity=tuple(velocity), ego_translation=(x, y, z), num_pts=-1 if scores is not None else 1,
            detection_name=name, detection_score=-1.0 if scores is None else float(scores[i]),
            attribute_name=attribute_for(name, float(np.hypot(*velocities[i]))),
        ))
    return out


def detection_config(grid: GridConfig, class_names: list[str]) -> DetectionConfig:
    reach = float(np.hypot(grid.x_half, grid.y_half))
    cfg = DetectionConfig(class_range={c: reach for c in DETECTION_CLASSES}, dist_fcn="center_distance",
                          dist_ths=[0.5, 1.0, 2.0, 4.0], dist_th_tp=2.0, min_recall=0.1, min_precision=0.1,
                          max_boxes_per_sample=500, mean_ap_weight=5)
    cfg.class_names = list(class_names)  # score only classes present in GT (see module doc)
    return cfg


def detection_metrics(gt: EvalBoxes, predictions: EvalBoxes, grid: GridConfig) -> dict:
    """{'mAP', 'NDS', 'per_class_AP', 'tp_errors'} from the devkit on prebuilt EvalBoxes."""
    present = sorted({b.detection_name for token in gt.sample_tokens for b in gt[token]}, key=DETECTION_CLASSES.index)
    if not present:
        raise ValueError("no GT boxes in the evaluated split: nothing to score (check --split and the grid range)")
    for token in gt.sample_tokens:  # the devkit requires every GT sample to have a (maybe empty) prediction list
        if token not in predictions.boxes:
            predictions.add_boxes(token, [])
    evaluator = DetectionEval.__new__(DetectionEval)  # skip __init__: it needs the official split table
    evaluator.cfg, evaluator.gt_boxes, evaluator.pred_boxes, evaluator.verbose = detection_config(grid, present), gt, predictions, False
    metrics, _ = evaluator.evaluate()
    summary = metrics.serialize()
    return {"mAP": summary["mean_ap"], "NDS": summary["nd_score"], "per_class_AP": summary["mean_dist_aps"],
            "tp_errors": summary["tp_errors"]}
