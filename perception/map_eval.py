"""Map element AP with the Chamfer distance (as MapTR), at thresholds 0.5 / 1.0 / 1.5 m.

No maintained library scores polylines this way, so it is written here (small): per map class,
predictions of all keyframes are sorted by score; each is a true positive if its Chamfer distance
to a not-yet-taken GT element of the same class and keyframe is below the threshold (greedy by
score, as in COCO/MapTR); AP is the area under the all-point interpolated precision-recall curve.
Chamfer distance = mean of the two directed average nearest-point distances (metres, LiDAR frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from vla_world.data.records import MAP_CLASSES

THRESHOLDS = (0.5, 1.0, 1.5)


@dataclass
class FrameMap:
    """Map elements of one keyframe: types (M,), points (M, P, 2) metres, scores (M,) (GT: ones)."""

    types: np.ndarray
    points: np.ndarray
    scores: np.ndarray


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    d = cdist(a, b)
    return float(0.5 * (d.min(1).mean() + d.min(0).mean()))


def average_precision(tp: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP of a score-sorted TP vector."""
    if num_gt == 0:
        return float("nan")
    hits = np.cumsum(tp)
    recall = hits / num_gt
    precision = hits / np.arange(1, len(tp) + 1)
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def class_ap(gt: list[FrameMap], pred: list[FrameMap], kind: int, threshold: float) -> float:
    candidates = [(p.scores[i], f, p.points[i]) for f, p in enumerate(pred) for i in np.flatnonzero(p.types == kind)]
    candidates.sort(key=lambda c: -c[0])
    taken = [np.zeros(int((g.types == kind).sum()), bool) for g in gt]
    gt_points = [g.points[g.types == kind] for g in gt]
    tp = np.zeros(len(candidates))
    for n, (_, frame, points) in enumerate(candidates):
        if len(gt_points[frame]) == 0:
            continue
        distances = np.array([chamfer(points, g) for g in gt_points[frame]])
        distances[taken[frame]] = np.inf
        best = int(distances.argmin())
        if distances[best] <= threshold:
            taken[frame][best], tp[n] = True, 1.0
    return average_precision(tp, sum(len(t) for t in taken))


def map_metrics(gt: list[FrameMap], pred: list[FrameMap]) -> dict:
    """{'mAP': mean over classes with GT and thresholds, 'AP': {class: {threshold: AP}}}."""
    per_class = {name: {str(t): class_ap(gt, pred, k, t) for t in THRESHOLDS} for k, name in enumerate(MAP_CLASSES)}
    values = [v for aps in per_class.values() for v in aps.values() if not np.isnan(v)]
    return {"mAP": float(np.mean(values)) if values else float("nan"), "AP": per_class}
