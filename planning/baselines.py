"""Planning baselines without perception: the floor every VLA number has to beat.

  * Constant velocity: P(tau) = v tau with the record's `ego_velocity` (LiDAR frame, m/s).
  * Kinematic: VLA-World's short-term predictor rolled out to 3 s (`planning.kinematic`).
  * CTRA prior: the rollout the planning prompt shows (`planning.kinematic.ctra_prior`).
  * Ego-MLP: AD-MLP's idea (ego status, 2 s of past poses and the command only, no camera) as a
    small torch MLP trained on the train split in seconds; config `configs/baselines/ego_mlp.yaml`.

Planners read `PlannerInput` (no labels); training reads records. All outputs are (6, 2) waypoints at t = 0.5 .. 3.0 s, metres, in each record's current
LiDAR_TOP frame (x right, y forward). `tools/run_baselines.py` writes them as prediction files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vla_world.data.planner_input import PlannerInput, planner_input
from vla_world.data.records import COMMANDS, FUTURE_SECONDS, NUM_FUTURE, SampleRecord


def constant_velocity(inp: PlannerInput) -> np.ndarray:
    """(6, 2): the ego keeps its current velocity (`ego_velocity`, LiDAR frame) for 3 s."""
    return FUTURE_SECONDS[:, None] * np.asarray(inp.ego_velocity, dtype=np.float64)[None, :]


# ----------------------------------------------------------------------------------- Ego-MLP


@dataclass
class EgoMLPConfig:
    """Ego-MLP model and training settings (configs/baselines/ego_mlp.yaml)."""

    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])  # widths of the hidden layers
    epochs: int = 150  # passes over the train split
    batch_size: int = 64  # samples per optimizer step
    lr: float = 2e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    loss: str = "l1"  # "l1" (AD-MLP's choice) or "l2", over valid future steps only
    seed: int = 0  # torch seed for initialisation and shuffling

    def validate(self) -> None:
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes must be a non-empty list of positive widths, got {self.hidden_sizes}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")


def ego_features(inp: PlannerInput) -> np.ndarray:
    """AD-MLP-style input (21,): past poses (8) + their mask (4), velocity, acceleration,
    yaw rate, speed (6) and the command one-hot (3). Missing past poses are zeros with mask 0."""
    past = np.where(inp.ego_past_mask[:, None], inp.ego_past, 0.0).reshape(-1)
    status = np.concatenate([inp.ego_velocity, inp.ego_acceleration, [inp.ego_yaw_rate, inp.ego_speed]])
    command = np.eye(len(COMMANDS))[inp.command]
    return np.concatenate([past, inp.ego_past_mask.astype(np.float64), status, command]).astype(np.float32)


class EgoMLP(nn.Module):
    """MLP from `ego_features` to (6, 2) waypoints; inputs standardised with train statistics."""

    def __init__(self, num_features: int, hidden_sizes: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        width = num_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, NUM_FUTURE * 2))
        self.net = nn.Sequential(*layers)
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        normalised = (features - self.feature_mean) / self.feature_std
        return self.net(normalised).view(-1, NUM_FUTURE, 2)


def train_ego_mlp(records: list[SampleRecord], cfg: EgoMLPConfig, progress: bool = True) -> EgoMLP:
    """Fit an EgoMLP on `records` (train split) with a masked L1/L2 waypoint loss."""
    if not records:
        raise ValueError("train_ego_mlp: no training records; check the dataroot and split")
    torch.manual_seed(cfg.seed)
    features = torch.from_numpy(np.stack([ego_features(planner_input(r)) for r in records]))
    targets = torch.from_numpy(np.stack([r.ego_future for r in records]).astype(np.float32))
    masks = torch.from_numpy(np.stack([r.ego_future_mask for r in records]))
    model = EgoMLP(features.shape[1], cfg.hidden_sizes)
    model.feature_mean.copy_(features.mean(0))
    # A feature constant on train (e.g. a past mask that is always 1) gets unit scale: a tiny std
    # would blow up any val sample where it differs (the first keyframe of a scene, say).
    std = features.std(0)
    model.feature_std.copy_(torch.where(std > 1e-2, std, torch.ones_like(std)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in tqdm(range(cfg.epochs), desc="Ego-MLP", disable=not progress):
        for batch in torch.randperm(len(records)).split(cfg.batch_size):
            loss = _masked_loss(model(features[batch]), targets[batch], masks[batch], cfg.loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    diff = (pred - target)[mask]
    if diff.numel() == 0:
        return pred.sum() * 0.0
    return diff.abs().mean() if kind == "l1" else diff.pow(2).sum(-1).mean()


@torch.no_grad()
def predict_ego_mlp(model: EgoMLP, inputs: list[PlannerInput]) -> dict[str, np.ndarray]:
    """{sample_token: (6, 2) waypoints} for `inputs`."""
    if not inputs:
        return {}
    features = torch.from_numpy(np.stack([ego_features(inp) for inp in inputs]))
    waypoints = model(features).double().numpy()
    return {inp.sample_token: waypoints[i] for i, inp in enumerate(inputs)}
