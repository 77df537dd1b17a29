"""Decoder outputs -> detections, map elements and `PerceptionTokens` (score-thresholded).

    detections = decode_agents(agent_out, cfg.inference)   # one keyframe, no batch dim
    tokens = model_tokens(model, records, cache, cfg)      # {sample_token: PerceptionTokens}
    tokens = outputs_to_tokens(per_keyframe(out), records, cfg)   # shared with the with-grad path

The selection of agents and map elements is discrete (score thresholds); the token embeddings
keep whatever autograd history the outputs had, so the planning stage's online path
(vla_world/training/online_perception.py) back-propagates through the same decoding.

Boxes are (x, y, z, w, l, h, yaw) in the current LiDAR_TOP frame, metres / radians CCW from +x.
`agent_track_ids` of a token is the GT track id of the GT agent matched to it (Hungarian on
centre distance within `gt_match_distance`), -1 if none: the LLM stages use it to look up an
agent's GT future; the tracker's own ids (perception/tracking.py) are for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from perception.config import InferenceConfig, PerceptionConfig
from perception.inputs import ImageCache, load_camera_batch
from perception.map_raster import element_embeddings
from perception.map_vectorise import VectoriseConfig, vectorise
from perception.matching import hungarian
from perception.targets import FrameTargets, frame_targets
from perception.tokens import PerceptionTokens
from vla_world.data.records import SampleRecord


@dataclass
class Detections:
    """Kept agent queries of one keyframe, sorted by score (highest first)."""

    boxes: torch.Tensor  # (A, 7)
    velocities: torch.Tensor  # (A, 2) m/s
    classes: torch.Tensor  # (A,) int64
    scores: torch.Tensor  # (A,)
    embeddings: torch.Tensor  # (A, D)


@dataclass
class MapElements:
    types: torch.Tensor  # (M,) int64
    points: torch.Tensor  # (M, P, 2) metres
    scores: torch.Tensor  # (M,)
    embeddings: torch.Tensor  # (M, D)


def decode_agents(out: dict[str, torch.Tensor], cfg: InferenceConfig, threshold: float | None = None) -> Detections:
    """Queries whose best class score passes the threshold, at most `max_agents`."""
    scores, classes = out["logits"].sigmoid().max(-1)
    threshold = cfg.score_threshold if threshold is None else threshold
    keep = torch.nonzero(scores >= threshold).flatten()
    keep = keep[scores[keep].argsort(descending=True)][: cfg.max_agents]
    yaw = torch.atan2(out["yaw_sincos"][keep, 0], out["yaw_sincos"][keep, 1])
    boxes = torch.cat([out["centres"][keep], out["z"][keep, None], out["log_size"][keep].exp(), yaw[:, None]], 1)
    return Detections(boxes, out["velocity"][keep], classes[keep], scores[keep], out["embeddings"][keep])


def decode_map(out: dict[str, torch.Tensor], cfg: InferenceConfig, threshold: float | None = None,
               num_points: int | None = None) -> MapElements:
    """Map elements of one keyframe whose score passes the threshold, highest score first.

    DETR head: one element per query. Raster head (`segmentation` in `out`): the vectorised
    polylines of `num_points` points (perception/map_vectorise.py), tokens pooled along them."""
    threshold = cfg.map_score_threshold if threshold is None else threshold
    if "segmentation" in out:
        return decode_raster_map(out, cfg, threshold, num_points)
    scores, types = out["logits"].sigmoid().max(-1)
    keep = torch.nonzero(scores >= threshold).flatten()
    keep = keep[scores[keep].argsort(descending=True)]
    return MapElements(types[keep], out["points"][keep], scores[keep], out["embeddings"][keep])


def decode_raster_map(out: dict[str, torch.Tensor], cfg: InferenceConfig, threshold: float,
                      num_points: int | None) -> MapElements:
    if num_points is None:
        raise ValueError("decode_map: the raster map head needs num_points (the config's model.map_points)")
    half = out["half"].detach()
    vectorise_cfg = VectoriseConfig(threshold=cfg.map_raster_threshold, min_cells=cfg.map_raster_min_cells,
                                    ridge=cfg.map_raster_ridge, close=cfg.map_raster_close, crest=cfg.map_raster_crest,
                                    peel=cfg.map_raster_peel)
    polylines = [p for p in vectorise(out["segmentation"].detach().sigmoid().numpy(), tuple(half.tolist()), num_points,
                                      vectorise_cfg) if p.score >= threshold]
    types = torch.tensor([p.kind for p in polylines], dtype=torch.long)
    points = torch.from_numpy(np.array([p.points for p in polylines], np.float32).reshape(-1, num_points, 2))
    embeddings = element_embeddings(out["features"], out["type_embed"], types, points, half)
    return MapElements(types, points, torch.tensor([p.score for p in polylines]), embeddings)


def gt_track_ids(pred_centres: np.ndarray, gt_centres: np.ndarray, gt_ids: np.ndarray, max_distance: float) -> np.ndarray:
    """(A,) GT track id of the GT agent assigned to each prediction (Hungarian on distance), -1 if none in reach."""
    ids = np.full(len(pred_centres), -1, np.int64)
    if len(pred_centres) == 0 or len(gt_centres) == 0:
        return ids
    distance = np.linalg.norm(pred_centres[:, None, :2] - gt_centres[None, :, :2], axis=-1)
    rows, cols = hungarian(torch.from_numpy(distance))
    close = distance[rows, cols] <= max_distance
    ids[rows[close]] = gt_ids[cols[close]]
    return ids


def to_tokens(scene: torch.Tensor, detections: Detections, elements: MapElements, record: SampleRecord,
              cfg: PerceptionConfig, targets: FrameTargets | None = None) -> PerceptionTokens:
    """Tokens of one keyframe; embeddings keep their graph, decoded boxes/points are detached (values, not features).

    `targets`: the keyframe's `frame_targets`, when the caller already has them (the online planning
    path reuses them every step); computed here otherwise.
    """
    targets = frame_targets(record, cfg.grid, cfg.model.map_points) if targets is None else targets
    boxes = detections.boxes.detach()
    ids = gt_track_ids(boxes[:, :2].numpy(), targets.boxes[:, :2], targets.track_ids, cfg.inference.gt_match_distance)
    return PerceptionTokens(
        scene=scene, agents=detections.embeddings, map=elements.embeddings,
        agent_boxes=boxes, agent_classes=detections.classes.long(), agent_track_ids=torch.from_numpy(ids),
        map_types=elements.types.long(), map_points=elements.points.detach(),
        agent_velocities=detections.velocities.detach().float(),
    )


def per_keyframe(out: dict) -> list[dict]:
    """Batched model outputs -> one {"scene", "agents", "map"} dict per keyframe (no batch dim)."""
    return [{"scene": out["scene"][b], "agents": {k: v[b] for k, v in out["agents"].items()},
             "map": {k: v[b] for k, v in out["map"].items()}} for b in range(out["scene"].shape[0])]


def outputs_to_tokens(outputs: list[dict], records: list[SampleRecord], cfg: PerceptionConfig,
                      targets: list[FrameTargets] | None = None) -> dict[str, PerceptionTokens]:
    """{sample_token: PerceptionTokens} from per-keyframe outputs (in `records` order), thresholds from `cfg`."""
    targets = [None] * len(records) if targets is None else targets
    return {record.sample_token: to_tokens(out["scene"], decode_agents(out["agents"], cfg.inference),
                                           decode_map(out["map"], cfg.inference, num_points=cfg.model.map_points), record, cfg, target)
            for record, out, target in zip(records, outputs, targets, strict=True)}


@torch.no_grad()
def run_model(model: torch.nn.Module, records: list[SampleRecord], cache: ImageCache, batch_size: int = 2,
              progress: bool = True) -> list[dict]:
    """Per-keyframe outputs (no batch dim, detached) of the model on `records`, in order."""
    model.eval()
    outputs = []
    for start in tqdm(range(0, len(records), batch_size), desc="perception", disable=not progress):
        outputs += per_keyframe(model(load_camera_batch(records[start:start + batch_size], cache)))
    return outputs


def model_tokens(model: torch.nn.Module, records: list[SampleRecord], cache: ImageCache, cfg: PerceptionConfig,
                 progress: bool = True) -> dict[str, PerceptionTokens]:
    """{sample_token: PerceptionTokens} from a trained model."""
    return outputs_to_tokens(run_model(model, records, cache, cfg.train.batch_size, progress), records, cfg)
