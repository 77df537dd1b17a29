"""Perception evaluation of one split: detection (devkit mAP/NDS), tracking ids, map Chamfer AP.

    preds = model_predictions(model, records, cache, cfg)    # or chance_predictions(...)
    report = evaluate_predictions(records, preds, cfg)       # nested dict, JSON-ready

Detection and map AP use every query above a low score (`EVAL_SCORE_THRESHOLD`), as AP integrates
over scores; tracking uses the inference threshold, i.e. the agents that become tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from nuscenes.eval.common.data_classes import EvalBoxes

from perception.config import PerceptionConfig
from perception.detection_eval import detection_metrics, to_detection_boxes
from perception.inference import decode_agents, decode_map, run_model
from perception.inputs import ImageCache
from perception.map_eval import FrameMap, map_metrics
from perception.targets import frame_targets
from perception.tracking import CentreTracker
from perception.tracking_eval import tracking_metrics
from vla_world.data.records import SampleRecord

EVAL_SCORE_THRESHOLD = 0.05


@dataclass
class FramePrediction:
    """Agents and map elements predicted for one keyframe (LiDAR frame, metres)."""

    boxes: np.ndarray  # (A, 7)
    velocities: np.ndarray  # (A, 2)
    classes: np.ndarray  # (A,)
    scores: np.ndarray  # (A,)
    map: FrameMap


def model_predictions(model, records: list[SampleRecord], cache: ImageCache, cfg: PerceptionConfig,
                      progress: bool = True) -> list[FramePrediction]:
    preds = []
    for out in run_model(model, records, cache, cfg.train.batch_size, progress):
        det = decode_agents(out["agents"], cfg.inference, EVAL_SCORE_THRESHOLD)
        elements = decode_map(out["map"], cfg.inference, EVAL_SCORE_THRESHOLD, cfg.model.map_points)
        preds.append(FramePrediction(det.boxes.numpy(), det.velocities.numpy(), det.classes.numpy(), det.scores.numpy(),
                                     FrameMap(elements.types.numpy(), elements.points.numpy(), elements.scores.numpy())))
    return preds


def target_predictions(records: list[SampleRecord], cfg: PerceptionConfig) -> list[FramePrediction]:
    """The perception targets themselves, score 1: the ceiling of any model with this grid and these heads.

    Scored by our metrics it is 1 by construction; scored by the devkit (10 classes, up to 50 m) it
    shows what the grid's reach alone costs."""
    preds = []
    for record in records:
        t = frame_targets(record, cfg.grid, cfg.model.map_points)
        preds.append(FramePrediction(np.asarray(t.boxes), np.asarray(t.velocities), np.asarray(t.classes),
                                     np.ones(len(t.classes)),
                                     FrameMap(np.asarray(t.map_types), np.asarray(t.map_points), np.ones(len(t.map_types)))))
    return preds


def _tracking_frames(records: list[SampleRecord], preds: list[FramePrediction], cfg: PerceptionConfig) -> list[tuple]:
    inference = cfg.inference
    tracker = CentreTracker(inference.track_max_distance, inference.track_max_missed, inference.track_own_velocity)
    scene, frames = None, []
    for index in sorted(range(len(records)), key=lambda i: (records[i].scene_name, records[i].frame_index)):
        record, pred = records[index], preds[index]
        if record.scene_name != scene:
            tracker.reset()
            scene = record.scene_name
        keep = pred.scores >= cfg.inference.score_threshold
        ids = tracker.update(record, torch.from_numpy(pred.boxes[keep]), torch.from_numpy(pred.velocities[keep]),
                             torch.from_numpy(pred.classes[keep]))
        targets = frame_targets(record, cfg.grid, cfg.model.map_points)
        frames.append((pred.boxes[keep, :2], ids, targets.boxes[:, :2], targets.track_ids, scene))
    return frames


def evaluate_predictions(records: list[SampleRecord], preds: list[FramePrediction], cfg: PerceptionConfig) -> dict:
    if len(records) != len(preds):
        raise ValueError(f"{len(records)} records but {len(preds)} predictions: they must be aligned one to one")
    gt_boxes, pred_boxes, gt_maps = EvalBoxes(), EvalBoxes(), []
    for record, pred in zip(records, preds):
        targets = frame_targets(record, cfg.grid, cfg.model.map_points)
        gt_boxes.add_boxes(record.sample_token, to_detection_boxes(record, targets.boxes, targets.velocities, targets.classes, None))
        pred_boxes.add_boxes(record.sample_token, to_detection_boxes(record, pred.boxes, pred.velocities, pred.classes, pred.scores))
        gt_maps.append(FrameMap(targets.map_types, targets.map_points, np.ones(len(targets.map_types))))
    return {
        "detection": detection_metrics(gt_boxes, pred_boxes, cfg.grid),
        "tracking": tracking_metrics(_tracking_frames(records, preds, cfg), cfg.inference.gt_match_distance),
        "map": map_metrics(gt_maps, [p.map for p in preds]),
        "keyframes": len(records),
    }
