"""The plan head: the ego trajectory read from the LLM's hidden state instead of from its digits.

Why: with ~280 train keyframes and ~120 optimizer steps, the tiny LLM's written digits mostly copy
the kinematic prior in its prompt (docs/planning_experiments.md: 27-65 of 120 val answers are the
prior, and the rest do not beat it), yet a small MLP fitted on the LLM's final hidden state at the
last prompt token predicts the correction to that prior well enough to beat it (val ST-P3 L2
0.54-0.56 m against the prior's 0.76 m and the same LLMs' written 0.77-0.82 m; docs/planning_experiments.md,
"Plan head"). The numbers are in the state; the
digit-by-digit cross-entropy just does not get them out in this data regime. A continuous action
head over the LLM's hidden states, trained with an L1 loss, is OpenVLA-OFT's recipe for the same
gap (tokenised vs regressed actions); here it is fitted after the LLM's steps, on frozen states.

Frames and units: input is the (H,) final-layer hidden state (after the final norm) at the last
prompt token, the position whose logits choose the answer's first token; output is 12 numbers,
x/y of the six waypoints at t = 0.5 .. 3 s in the current LiDAR frame (x right, y forward),
metres: the correction to the prompt's CTRA prior for residual answers, the waypoints themselves
for absolute ones. Inputs are standardised by the train features' mean and std (buffers, saved
with the weights), so the fit does not depend on the LLM's activation scale.

The fit (`fit_plan_head`) is seeded minibatch AdamW on the L1 loss over fixed features: a few
seconds for the mini world, deterministic given (features, targets, seed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from vla_world.data.records import NUM_FUTURE
from vla_world.model.plan_head_config import PlanHeadConfig

PLAN_OUTPUTS = 2 * NUM_FUTURE  # x, y of every future waypoint


@dataclass(frozen=True)
class PlanHeadSpec:
    """The head's shape, stored in vla.json (`plan_head`) so a checkpoint rebuilds it."""

    width: int  # the LLM's hidden size H
    hidden: int = 128
    layers: int = 2
    members: int = 1


class PlanHead(nn.Module):
    """(B, H) hidden states -> (B, 6, 2) waypoints or corrections, metres (module docstring)."""

    def __init__(self, spec: PlanHeadSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.zeros(spec.width))
        self.register_buffer("std", torch.ones(spec.width))
        # 1 once fit_plan_head ran: a checkpoint saved mid-stage holds a head that never saw its LLM
        self.register_buffer("fitted", torch.zeros(()))
        self.members = nn.ModuleList(member_mlp(spec) for _ in range(spec.members))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        inputs = self.standardised(hidden)
        return torch.stack([mlp(inputs) for mlp in self.members]).mean(0).reshape(-1, NUM_FUTURE, 2)

    def member(self, hidden: torch.Tensor, k: int) -> torch.Tensor:
        """(B, 6, 2) output of member `k` alone."""
        return self.members[k](self.standardised(hidden)).reshape(-1, NUM_FUTURE, 2)

    def standardised(self, hidden: torch.Tensor) -> torch.Tensor:
        return (hidden.float() - self.mean) / self.std

    def meta(self) -> dict:
        return asdict(self.spec)


def member_mlp(spec: PlanHeadSpec) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = spec.width
    for _ in range(spec.layers):
        layers += [nn.Linear(width, spec.hidden), nn.ReLU()]
        width = spec.hidden
    return nn.Sequential(*layers, nn.Linear(width, PLAN_OUTPUTS))


def fit_plan_head(head: PlanHead, features: torch.Tensor, targets: torch.Tensor, cfg: PlanHeadConfig,
                  seed: int = 0) -> list[float]:
    """Fit every member of `head` on (N, H) fixed features and (N, 6, 2) targets with the L1 loss (member k
    walks the data in the order of generator (seed, k)); returns the members' mean loss (metres) per epoch.
    Standardisation statistics come from `features`."""
    if features.shape[0] != targets.shape[0] or features.shape[0] == 0:
        raise ValueError(f"fit_plan_head: {features.shape[0]} feature rows but {targets.shape[0]} targets")
    features, targets = features.detach().float(), targets.detach().float().reshape(-1, NUM_FUTURE, 2)
    with torch.no_grad():
        head.mean.copy_(features.mean(0))
        head.std.copy_(features.std(0).clamp_min(1e-5) if len(features) > 1 else torch.ones_like(head.std))
    histories = [fit_member(head, k, features, targets, cfg, seed) for k in range(len(head.members))]
    head.requires_grad_(False)
    head.fitted.fill_(1.0)
    return [sum(epoch) / len(epoch) for epoch in zip(*histories)]


def fit_member(head: PlanHead, k: int, features: torch.Tensor, targets: torch.Tensor, cfg: PlanHeadConfig,
               seed: int) -> list[float]:
    """Seeded minibatch AdamW on the L1 loss for member `k`; its mean loss per epoch."""
    params = list(head.members[k].parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(seed * 1000 + k)
    history = []
    with torch.enable_grad():
        for _ in range(cfg.epochs):
            order, total = torch.randperm(len(features), generator=generator), 0.0
            for start in range(0, len(features), cfg.batch_size):
                rows = order[start:start + cfg.batch_size]
                loss = (head.member(features[rows], k) - targets[rows]).abs().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            history.append(total / len(features))
    return history
