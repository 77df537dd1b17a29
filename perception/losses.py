"""Training losses of the perception stage, per keyframe after Hungarian matching.

  detection: sigmoid focal loss over all queries x classes (unmatched queries learn "nothing
             here") + L1 on matched boxes (normalised centre, z / 3 m, log size, sin/cos yaw)
             + L1 on matched velocity (m/s)
  map:       focal loss on element types + direction-agnostic L1 on normalised polyline points
  dense:     focal loss on auxiliary per-cell BEV masks (agent centres, map classes)
Losses are normalised by the number of GT objects (at least 1), as in DETR.
Tracking needs no loss: identities come from association (perception/tracking.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from perception.config import GridConfig, LossConfig
from perception.matching import agent_cost, hungarian, map_cost, polyline_l1
from perception.targets import FrameTargets, dense_bev_targets

Z_SCALE = 3.0  # m


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Summed focal loss (Lin et al. 2017); torchvision has one but cannot be installed here."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** gamma).sum()


def _box_vector(centres: torch.Tensor, z: torch.Tensor, log_size: torch.Tensor, sincos: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    return torch.cat([centres / half, z[:, None] / Z_SCALE, log_size, sincos], 1)


def detection_loss(out: dict[str, torch.Tensor], target: FrameTargets, half: torch.Tensor, cfg: LossConfig) -> dict[str, torch.Tensor]:
    """Losses of one keyframe; `out` holds this keyframe's agent decoder outputs (no batch dim)."""
    boxes = torch.from_numpy(target.boxes)
    classes = torch.from_numpy(target.classes)
    cost = agent_cost(out["logits"], out["centres"], classes, boxes[:, :2], half, cfg.cls_weight, cfg.box_weight)
    q, t = hungarian(cost)
    norm = max(len(classes), 1)
    cls_target = torch.zeros_like(out["logits"])
    cls_target[q, classes[t]] = 1.0
    losses = {"det_cls": sigmoid_focal_loss(out["logits"], cls_target, cfg.focal_alpha, cfg.focal_gamma) / norm}
    pred_box = _box_vector(out["centres"][q], out["z"][q], out["log_size"][q], out["yaw_sincos"][q], half)
    yaw = boxes[t, 6:7]
    gt_box = _box_vector(boxes[t, :2], boxes[t, 2], boxes[t, 3:6].clamp(min=1e-2).log(), torch.cat([yaw.sin(), yaw.cos()], 1), half)
    losses["det_box"] = F.l1_loss(pred_box, gt_box, reduction="sum") / norm
    losses["det_velocity"] = F.l1_loss(out["velocity"][q], torch.from_numpy(target.velocities)[t], reduction="sum") / norm
    return losses


def map_loss(out: dict[str, torch.Tensor], target: FrameTargets, half: torch.Tensor, cfg: LossConfig) -> dict[str, torch.Tensor]:
    points = torch.from_numpy(target.map_points)
    types = torch.from_numpy(target.map_types)
    q, t = hungarian(map_cost(out["logits"], out["points"], types, points, half, cfg.map_cls_weight, cfg.map_points_weight))
    norm = max(len(types), 1)
    cls_target = torch.zeros_like(out["logits"])
    cls_target[q, types[t]] = 1.0
    matched_l1 = polyline_l1(out["points"][q] / half, points[t] / half).diagonal() if len(q) else out["points"].sum() * 0
    return {"map_cls": sigmoid_focal_loss(out["logits"], cls_target, cfg.focal_alpha, cfg.focal_gamma) / norm,
            "map_points": matched_l1.sum() / norm}


def dense_loss(aux_logits: torch.Tensor, target: FrameTargets, grid: GridConfig, cfg: LossConfig) -> torch.Tensor:
    """Focal loss of the auxiliary (1 + 3, H, W) BEV masks, normalised by the positive cells."""
    masks = torch.from_numpy(dense_bev_targets(target, grid))
    return sigmoid_focal_loss(aux_logits, masks, cfg.focal_alpha, cfg.focal_gamma) / max(float(masks.sum()), 1.0)


def perception_loss(outputs: dict, targets: list[FrameTargets], half: torch.Tensor, cfg: LossConfig,
                    grid: GridConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted total over a batch and its parts (batch means) for logging."""
    parts: dict[str, torch.Tensor] = {}
    for b, target in enumerate(targets):
        agent_out = {k: v[b] for k, v in outputs["agents"].items()}
        map_out = {k: v[b] for k, v in outputs["map"].items()}
        terms = {**detection_loss(agent_out, target, half, cfg), **map_loss(map_out, target, half, cfg),
                 "bev_dense": dense_loss(outputs["aux"][b], target, grid, cfg)}
        for name, value in terms.items():
            parts[name] = parts.get(name, 0.0) + value / len(targets)
    weights = {"det_cls": cfg.cls_weight, "det_box": cfg.box_weight, "det_velocity": cfg.velocity_weight,
               "map_cls": cfg.map_cls_weight, "map_points": cfg.map_points_weight, "bev_dense": cfg.dense_weight}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
