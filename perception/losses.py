"""Training losses of the perception stage, per keyframe after Hungarian matching.

  detection: dense, no matching (perception/centre_head.py): CenterNet focal loss on the per-class
             centre heatmap + L1 on box regression (offset, z, log size, sin/cos yaw) and velocity
             (m/s) at the cells around each GT centre
  map:       DETR head: focal loss on element types + direction-agnostic L1 on normalised polyline points;
             raster head (perception/map_raster.py): BCE + Dice on the per-class map raster
  dense:     focal loss on auxiliary per-cell BEV masks (agent centres, map classes)
Losses are normalised by the number of GT objects or supervised cells (at least 1), as in DETR/CenterNet.
Tracking needs no loss: identities come from association (perception/tracking.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from perception.config import GridConfig, LossConfig
from perception.map_raster import raster_targets, segmentation_loss
from perception.matching import hungarian, map_cost, polyline_l1
from perception.targets import FrameTargets, centre_targets, dense_bev_targets


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Summed focal loss (Lin et al. 2017); torchvision has one but cannot be installed here."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** gamma).sum()


def centre_heatmap_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed: positives are the cells equal to 1, negatives are
    down-weighted by (1 - target)^4 near a centre so that a peak one cell off costs little."""
    prob = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos = -F.logsigmoid(logits) * (1 - prob) ** 2 * positive
    neg = -F.logsigmoid(-logits) * prob ** 2 * (1 - target) ** 4 * (1 - positive)
    return (pos + neg).sum()


def detection_loss(out: dict[str, torch.Tensor], target: FrameTargets, cfg: LossConfig, grid: GridConfig) -> dict[str, torch.Tensor]:
    """Dense losses of the centre head for one keyframe (`out`: its agent outputs, no batch dim): heatmap
    focal loss per GT agent, L1 on box regression (offset, z, log size, sin/cos) and velocity over the
    3x3 cells around each GT centre, per supervised cell."""
    dense = centre_targets(target, grid, out["heatmap"].shape[0])
    mask = torch.from_numpy(dense.mask)
    error = (out["regression"][:, mask] - torch.from_numpy(dense.regression)[:, mask]).abs()  # (10, cells)
    cells = max(int(mask.sum()), 1)
    return {"det_cls": centre_heatmap_loss(out["heatmap"], torch.from_numpy(dense.heatmap)) / max(len(target.classes), 1),
            "det_box": error[:8].sum() / cells, "det_velocity": error[8:].sum() / cells}


def map_loss(out: dict[str, torch.Tensor], target: FrameTargets, half: torch.Tensor, cfg: LossConfig) -> dict[str, torch.Tensor]:
    if "segmentation" in out:
        return {"map_seg": raster_map_loss(out["segmentation"], target, half, cfg, int(out["thickness"][0]))}
    points = torch.from_numpy(target.map_points)
    types = torch.from_numpy(target.map_types)
    q, t = hungarian(map_cost(out["logits"], out["points"], types, points, half, cfg.map_cls_weight, cfg.map_points_weight))
    norm = max(len(types), 1)
    cls_target = torch.zeros_like(out["logits"])
    cls_target[q, types[t]] = 1.0
    matched_l1 = polyline_l1(out["points"][q] / half, points[t] / half).diagonal() if len(q) else out["points"].sum() * 0
    return {"map_cls": sigmoid_focal_loss(out["logits"], cls_target, cfg.focal_alpha, cfg.focal_gamma) / norm,
            "map_points": matched_l1.sum() / norm}


def raster_map_loss(logits: torch.Tensor, target: FrameTargets, half: torch.Tensor, cfg: LossConfig,
                    thickness: int = 1) -> torch.Tensor:
    """Loss of the raster map head on one keyframe's (types, s*H, s*W) logits."""
    types, cells = logits.shape[0], logits.shape[-1]
    grid = GridConfig(x_half=float(half[0]), y_half=float(half[1]), cells=cells)
    mask = torch.from_numpy(raster_targets(target, grid, 1, types, thickness))
    return segmentation_loss(logits, mask, cfg.map_seg_pos_weight)


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
        terms = {**detection_loss(agent_out, target, cfg, grid), **map_loss(map_out, target, half, cfg),
                 "bev_dense": dense_loss(outputs["aux"][b], target, grid, cfg)}
        for name, value in terms.items():
            parts[name] = parts.get(name, 0.0) + value / len(targets)
    weights = {"det_cls": cfg.cls_weight, "det_box": cfg.box_weight, "det_velocity": cfg.velocity_weight,
               "map_cls": cfg.map_cls_weight, "map_points": cfg.map_points_weight, "map_seg": cfg.map_seg_weight,
               "bev_dense": cfg.dense_weight}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
