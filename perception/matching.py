"""Hungarian matching of predictions to ground truth (scipy's linear_sum_assignment).

Used for map elements (agents are dense, perception/centre_head.py) and for reporting GT track ids
of detections. The map cost reuses the loss terms so that what is matched is what is trained:
  map:    map_cls_weight * (-p_type) + map_points_weight * mean L1(normalised points), taking the
          better of the two point orders (a lane divider has no preferred direction).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def hungarian(cost: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(Q, T) cost -> (pred_idx, target_idx) of the minimum-cost one-to-one assignment."""
    if cost.numel() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return rows.astype(np.int64), cols.astype(np.int64)


def polyline_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(Q, P, 2) x (T, P, 2) -> (Q, T) mean point L1, minimum over the target's two directions."""
    forward = (pred[:, None] - target[None]).abs().mean((-1, -2))
    backward = (pred[:, None] - target.flip(1)[None]).abs().mean((-1, -2))
    return torch.minimum(forward, backward)


def map_cost(logits: torch.Tensor, points: torch.Tensor, target_types: torch.Tensor,
             target_points: torch.Tensor, half: torch.Tensor, cls_weight: float, points_weight: float) -> torch.Tensor:
    class_cost = -logits.sigmoid()[:, target_types]
    return cls_weight * class_cost + points_weight * polyline_l1(points / half, target_points / half)
