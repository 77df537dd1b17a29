"""Perception metrics on hand-made predictions with known answers (devkit mAP/NDS, map AP, tracking)."""

import math

import numpy as np

from perception.config import PerceptionConfig
from perception.evaluate import FramePrediction, evaluate_predictions
from perception.map_eval import FrameMap
from perception.targets import frame_targets
from vla_world.data.synthetic import synthetic_record


def scene(frames: int = 3) -> list:
    records = []
    for i in range(frames):
        record = synthetic_record(agents=[("car", 3.0, 10.0 + i, 0.0, 2.0), ("pedestrian", -4.0, 6.0, 0.0, 0.0)], token=f"t{i}")
        record.frame_index, record.timestamp = i, i * 500_000
        records.append(record)
    return records


def predictions(records, cfg, box_shift=0.0, map_shift=0.0) -> list[FramePrediction]:
    preds = []
    for record in records:
        t = frame_targets(record, cfg.grid, cfg.model.map_points)
        boxes = t.boxes.copy()
        boxes[:, 0] += box_shift
        points = t.map_points + np.array([map_shift, 0.0], np.float32)
        preds.append(FramePrediction(boxes, t.velocities, t.classes, np.ones(len(boxes)), FrameMap(t.map_types, points, np.ones(len(points)))))
    return preds


def test_perfect_predictions_score_one():
    cfg, records = PerceptionConfig(), scene()
    report = evaluate_predictions(records, predictions(records, cfg), cfg)
    assert math.isclose(report["detection"]["mAP"], 1.0) and math.isclose(report["detection"]["NDS"], 1.0)
    assert math.isclose(report["map"]["mAP"], 1.0)
    assert report["tracking"]["id_switches"] == 0 and report["tracking"]["tracks_single_id"] == 1.0


def test_shifted_predictions_pass_only_the_wider_thresholds():
    cfg, records = PerceptionConfig(), scene()
    report = evaluate_predictions(records, predictions(records, cfg, box_shift=1.5, map_shift=0.75), cfg)
    # centre error 1.5 m: misses the 0.5 and 1 m thresholds, hits 2 and 4 m -> AP (0 + 0 + 1 + 1) / 4
    assert math.isclose(report["detection"]["mAP"], 0.5)
    assert math.isclose(report["detection"]["tp_errors"]["trans_err"], 1.5, rel_tol=1e-5)
    # Chamfer distance 0.75 m: misses 0.5 m, hits 1.0 and 1.5 m
    assert math.isclose(report["map"]["mAP"], 2 / 3)
