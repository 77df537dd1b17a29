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
prompt token, the position whose logits choose the answer's first token, followed, for a head with
`ego_inputs` (config `model.plan_head.ego_state`), by the prompt's ego state as the Ego-MLP reads it
(`planning.baselines.ego_features`: past poses and mask, velocity, acceleration, yaw rate, speed, the
command one-hot; LiDAR frame, m, m/s, m/s², rad/s). Why both: the LLM's state is fitted on ~280 train
keyframes and its width alone lets the head overfit; the ego state is the low-dimensional signal the
trajectory mostly follows (AD-MLP), and the state adds what the prompt says beyond it. For the same
reason a head with `state_components` k reads the hidden state through its top k principal directions
over the train keyframes (fitted with the head, saved as buffers) instead of all H numbers
(docs/planning_experiments.md, "Ego state and principal components"). Output is 12 numbers,
x/y of the six waypoints at t = 0.5 .. 3 s in the current LiDAR frame (x right, y forward),
metres: the correction to the prompt's CTRA prior for residual answers, the waypoints themselves
for absolute ones. Inputs are standardised by the train features' mean and std (buffers, saved
with the weights), so the fit does not depend on the LLM's activation scale; a column nearly constant
on train (a past-pose mask that is always 1, say) keeps unit scale, as in the Ego-MLP, so a sample where
it differs (a scene's first keyframe) is not blown up.

The fit (`fit_plan_head`) is seeded minibatch AdamW on the L1 loss over fixed features: a few
seconds for the mini world, deterministic given (features, targets, seed).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from planning.baselines import ego_features
from vla_world.data.planner_input import PlannerInput
from vla_world.data.records import NUM_FUTURE
from vla_world.model.plan_head_config import PlanHeadConfig

log = logging.getLogger(__name__)

PLAN_OUTPUTS = 2 * NUM_FUTURE  # x, y of every future waypoint
EGO_STATE_INPUTS = 21  # len(planning.baselines.ego_features(...)): 8 past coordinates, 4 masks, 6 status, 3 command
MIN_STD = 1e-2  # below this a train column counts as constant and keeps unit scale (module doc)


@dataclass(frozen=True)
class PlanHeadSpec:
    """The head's shape, stored in vla.json (`plan_head`) so a checkpoint rebuilds it."""

    width: int  # the LLM's hidden size H
    hidden: int = 128
    layers: int = 2
    members: int = 1
    ego_inputs: int = 0  # ego-state numbers read after the hidden state (EGO_STATE_INPUTS or 0: none)
    state_components: int = 0  # the hidden state's top principal components the MLPs read (0: the whole state)

    @property
    def inputs(self) -> int:
        """Columns of a `head_inputs` row: the hidden state, then the ego state."""
        return self.width + self.ego_inputs

    @property
    def mlp_inputs(self) -> int:
        """Columns the MLPs read: the state (or its principal components), then the ego state."""
        return (self.state_components or self.width) + self.ego_inputs


class PlanHead(nn.Module):
    """(B, H) hidden states -> (B, 6, 2) waypoints or corrections, metres (module docstring)."""

    def __init__(self, spec: PlanHeadSpec):
        super().__init__()
        self.spec = spec
        if not 0 <= spec.state_components <= spec.width:
            raise ValueError(f"plan head: state_components must be in 0..{spec.width} (the hidden size), got "
                             f"{spec.state_components}")
        # the principal directions of the train hidden states (fit_plan_head); empty when the MLPs read the state
        self.register_buffer("center", torch.zeros(spec.width if spec.state_components else 0))
        self.register_buffer("components", torch.zeros(spec.width, spec.state_components))
        self.register_buffer("mean", torch.zeros(spec.mlp_inputs))
        self.register_buffer("std", torch.ones(spec.mlp_inputs))
        # 1 once fit_plan_head ran: a checkpoint saved mid-stage holds a head that never saw its LLM
        self.register_buffer("fitted", torch.zeros(()))
        self.members = nn.ModuleList(member_mlp(spec) for _ in range(spec.members))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, 6, 2) from (B, spec.inputs) rows of `head_inputs` (the hidden state alone when ego_inputs is 0)."""
        standardised = self.standardised(inputs)
        return torch.stack([mlp(standardised) for mlp in self.members]).mean(0).reshape(-1, NUM_FUTURE, 2)

    def member(self, inputs: torch.Tensor, k: int) -> torch.Tensor:
        """(B, 6, 2) output of member `k` alone."""
        return self.members[k](self.standardised(inputs)).reshape(-1, NUM_FUTURE, 2)

    def standardised(self, inputs: torch.Tensor) -> torch.Tensor:
        return (self.reduced(inputs) - self.mean) / self.std

    def reduced(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, spec.mlp_inputs): `head_inputs` rows with the hidden state replaced by its principal components."""
        inputs = inputs.float()
        if not self.spec.state_components:
            return inputs
        state, ego = inputs[:, :self.spec.width], inputs[:, self.spec.width:]
        return torch.cat([(state - self.center) @ self.components, ego], dim=1)

    def head_inputs(self, hidden: torch.Tensor, ego: torch.Tensor | None = None) -> torch.Tensor:
        """(B, spec.inputs): the (B, H) hidden states, then the (B, 21) ego states where the head reads them."""
        if not self.spec.ego_inputs:
            return hidden.float()
        if ego is None or ego.shape != (len(hidden), self.spec.ego_inputs):
            got = "none" if ego is None else tuple(ego.shape)
            raise ValueError(f"plan head: reads the ego state too (model.plan_head.ego_state), so it needs "
                             f"({len(hidden)}, {self.spec.ego_inputs}) ego-state rows (ego_state_rows), got {got}")
        return torch.cat([hidden.float(), ego.float().to(hidden.device)], dim=1)

    def meta(self) -> dict:
        return asdict(self.spec)


def member_mlp(spec: PlanHeadSpec) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = spec.mlp_inputs
    for _ in range(spec.layers):
        layers += [nn.Linear(width, spec.hidden), nn.ReLU()]
        width = spec.hidden
    return nn.Sequential(*layers, nn.Linear(width, PLAN_OUTPUTS))


def ego_state_rows(inputs: list[PlannerInput]) -> torch.Tensor:
    """(B, 21) float32: the ego state of each prompt's planner input, as the head reads it (module doc)."""
    return torch.from_numpy(np.stack([ego_features(inp) for inp in inputs]).astype(np.float32))


def fit_plan_head(head: PlanHead, features: torch.Tensor, targets: torch.Tensor, cfg: PlanHeadConfig,
                  seed: int = 0) -> list[float]:
    """Fit every member of `head` on (N, spec.inputs) fixed features (`PlanHead.head_inputs`) and (N, 6, 2) targets with the L1 loss (member k
    walks the data in the order of generator (seed, k)); returns the members' mean loss (metres) per epoch.
    Standardisation statistics come from `features`."""
    if features.shape[0] != targets.shape[0] or features.shape[0] == 0:
        raise ValueError(f"fit_plan_head: {features.shape[0]} feature rows but {targets.shape[0]} targets")
    if features.shape[1] != head.spec.inputs:
        raise ValueError(f"fit_plan_head: {features.shape[1]} input columns, the head reads {head.spec.inputs} "
                         "(PlanHead.head_inputs)")
    features, targets = features.detach().float(), targets.detach().float().reshape(-1, NUM_FUTURE, 2)
    with torch.no_grad():
        fit_components(head, features[:, :head.spec.width])
        reduced = head.reduced(features)
        head.mean.copy_(reduced.mean(0))
        std = reduced.std(0) if len(reduced) > 1 else torch.ones_like(head.std)
        head.std.copy_(torch.where(std > MIN_STD, std, torch.ones_like(std)))
    histories = [fit_member(head, k, features, targets, cfg, seed) for k in range(len(head.members))]
    head.requires_grad_(False)
    head.fitted.fill_(1.0)
    return [sum(epoch) / len(epoch) for epoch in zip(*histories)]


def fit_components(head: PlanHead, states: torch.Tensor) -> None:
    """Set the head's principal directions from (N, H) train hidden states (SVD of the centred states).

    With fewer keyframes than components (a toy world) only N directions exist: the rest stay zero, so
    those inputs are constant and the MLPs read N components; a warning says so."""
    k = head.spec.state_components
    if not k:
        return
    center = states.mean(0)
    _, _, vh = torch.linalg.svd(states - center, full_matrices=False)
    found = min(k, len(vh))
    if found < k:
        log.warning("plan head: %d train keyframes give only %d of the %d principal components asked for "
                    "(model.plan_head.state_components); the rest are left at zero", len(states), found, k)
    head.center.copy_(center)
    head.components.zero_()
    head.components[:, :found].copy_(vh[:found].T)


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
