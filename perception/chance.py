"""Chance-level predictions: what the metrics give a predictor that never looks at the cameras.

Agents: per keyframe as many boxes as the train split's mean GT count (rounded), classes drawn
with the train class frequencies, centres uniform in the grid, the class's mean train size,
uniform yaw, zero velocity, uniform random scores. Map: the train split's mean number of
elements per keyframe, types by train frequency, straight polylines of the mean train length
with uniform start and direction. Seeded, so the chance level is reproducible.
"""

from __future__ import annotations

import numpy as np

from perception.config import PerceptionConfig
from perception.evaluate import FramePrediction
from perception.map_eval import FrameMap
from perception.targets import frame_targets
from vla_world.data.records import DETECTION_CLASSES, MAP_CLASSES, SampleRecord


def _statistics(train: list[SampleRecord], cfg: PerceptionConfig) -> dict:
    targets = [frame_targets(r, cfg.grid, cfg.model.map_points) for r in train]
    classes = np.concatenate([t.classes for t in targets])
    sizes = np.concatenate([t.boxes[:, 3:6] for t in targets])
    types = np.concatenate([t.map_types for t in targets])
    points = np.concatenate([t.map_points for t in targets]) if len(types) else np.zeros((0, 2, 2))
    lengths = np.linalg.norm(np.diff(points, axis=1), axis=-1).sum(1)
    class_freq = np.bincount(classes, minlength=len(DETECTION_CLASSES)) / max(len(classes), 1)
    mean_size = {c: sizes[classes == c].mean(0) for c in np.unique(classes)}
    return {"agents": len(classes) / max(len(train), 1), "class_freq": class_freq, "mean_size": mean_size,
            "elements": len(types) / max(len(train), 1), "type_freq": np.bincount(types, minlength=len(MAP_CLASSES)) / max(len(types), 1),
            "length": float(lengths.mean()) if len(lengths) else 10.0}


def chance_predictions(train: list[SampleRecord], records: list[SampleRecord], cfg: PerceptionConfig, seed: int = 0) -> list[FramePrediction]:
    stats, rng, half = _statistics(train, cfg), np.random.default_rng(seed), np.array([cfg.grid.x_half, cfg.grid.y_half])
    num_agents, num_elements, p = round(stats["agents"]), round(stats["elements"]), cfg.model.map_points
    preds = []
    for _ in records:
        classes = rng.choice(len(DETECTION_CLASSES), num_agents, p=stats["class_freq"]) if num_agents else np.zeros(0, int)
        centres = rng.uniform(-1, 1, (num_agents, 2)) * half
        sizes = np.array([stats["mean_size"][c] for c in classes]).reshape(-1, 3)
        boxes = np.concatenate([centres, np.zeros((num_agents, 1)), sizes, rng.uniform(-np.pi, np.pi, (num_agents, 1))], 1)
        types = rng.choice(len(MAP_CLASSES), num_elements, p=stats["type_freq"]) if num_elements else np.zeros(0, int)
        starts = rng.uniform(-1, 1, (num_elements, 1, 2)) * half
        angle = rng.uniform(-np.pi, np.pi, (num_elements, 1, 1))
        steps = np.linspace(0, stats["length"], p)[None, :, None]
        points = starts + steps * np.concatenate([np.cos(angle), np.sin(angle)], -1)
        preds.append(FramePrediction(boxes.astype(np.float32), np.zeros((num_agents, 2), np.float32), classes,
                                     rng.uniform(0, 1, num_agents), FrameMap(types, points, rng.uniform(0, 1, num_elements))))
    return preds
