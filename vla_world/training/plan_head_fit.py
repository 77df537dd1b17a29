"""The planning stage's second phase: fit the plan head on the trained LLM's frozen hidden states.

    targets = plan_targets(records, residual=True)          # {sample_token: (6, 2) m}, futures only
    ego = ego_states(records)                               # {sample_token: (21,)}, for a head that reads them
    summary = fit_stage_plan_head(model, batches, targets, cfg.model.plan_head, seed, ego)

Why a phase of its own, after the LLM steps, not a loss term beside the LM loss: the head then
learns from every train keyframe for `epochs` passes over features computed once (a few seconds),
where a joint loss would see each keyframe ~4 times in the stage's 120 steps; a joint L1 term
tried in a prototype left the head at the prior (docs/planning_experiments.md, "Plan head").

The features are read from the stage's own batches (cached, oracle or online tokens alike), at each
row's last prompt token (the position before its first label), followed by the row's ego state where
the head reads it (`model.plan_head.ego_state`); rows without a target (no complete
future) are skipped and counted. Targets are what the answer encodes: the future's correction to
the prompt's CTRA prior (residual answers) or the future itself, metres, LiDAR frame.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from planning.kinematic import ctra_prior
from vla_world.data.planner_input import planner_input
from vla_world.data.records import SampleRecord
from vla_world.model.plan_head import PlanHeadConfig, ego_state_rows, fit_plan_head
from vla_world.model.sequence import IGNORE_INDEX
from vla_world.model.vla import VLAModel

log = logging.getLogger(__name__)


def plan_targets(records: list[SampleRecord], residual: bool) -> dict[str, np.ndarray]:
    """{sample_token: (6, 2) float32 target} of every record with a complete future (the planning examples')."""
    out = {}
    for record in records:
        if not bool(np.all(record.ego_future_mask)):
            continue
        prior = ctra_prior(planner_input(record)) if residual else 0.0
        out[record.sample_token] = (np.asarray(record.ego_future, np.float32) - prior).astype(np.float32)
    return out


def last_prompt_positions(labels: torch.Tensor) -> torch.Tensor:
    """(B,) index of each right-padded row's last prompt token: the one before its first supervised label."""
    supervised = labels != IGNORE_INDEX
    if not bool(supervised.any(dim=1).all()):
        raise ValueError("plan head: a planning sequence has no answer labels, so its prompt end is unknown")
    return supervised.int().argmax(dim=1) - 1


def ego_states(records: list[SampleRecord]) -> dict[str, torch.Tensor]:
    """{sample_token: (21,) ego state} of every record, as the plan head reads it (plan_head.ego_state_rows)."""
    rows = ego_state_rows([planner_input(r) for r in records]) if records else torch.zeros(0)
    return {r.sample_token: row for r, row in zip(records, rows)}


@torch.no_grad()
def head_features(model: VLAModel, batches, targets: dict[str, np.ndarray], batch_size: int = 16,
                  ego: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(N, spec.inputs) head inputs (hidden states, then ego states from `ego` where the head reads them),
    (N, 6, 2) targets of the rows that have one, and how many rows had none."""
    was_training = model.training
    model.eval()
    states, tokens, skipped = [], [], 0
    device = next(model.parameters()).device
    for start in range(0, len(batches), batch_size):
        batch = batches.batch(list(range(start, min(start + batch_size, len(batches)))))
        hidden = model.last_prompt_hidden(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                          batch["features"], last_prompt_positions(batch["labels"]))
        for row, token in enumerate(batch["sample_tokens"]):
            if token not in targets:
                skipped += 1
                continue
            states.append(hidden[row].float().cpu())
            tokens.append(token)
    model.train(was_training)
    if not states:
        raise ValueError("plan head: none of the stage's sequences has a complete future to fit on")
    ego_rows = torch.stack([ego_of(ego, t) for t in tokens]) if model.plan_head.spec.ego_inputs else None
    wanted = torch.stack([torch.from_numpy(targets[t]) for t in tokens])
    return model.plan_head.head_inputs(torch.stack(states), ego_rows), wanted, skipped


def ego_of(ego: dict[str, torch.Tensor] | None, token: str) -> torch.Tensor:
    if ego is None or token not in ego:
        raise ValueError(f"plan head: reads the ego state (model.plan_head.ego_state) but none was given for "
                         f"sample {token}; pass ego_states(records) of the stage's records")
    return ego[token]


def fit_stage_plan_head(model: VLAModel, batches, targets: dict[str, np.ndarray], cfg: PlanHeadConfig,
                        seed: int, ego: dict[str, torch.Tensor] | None = None) -> str:
    """Fit `model.plan_head` on the stage's batches; returns the one-line summary the runner logs."""
    features, wanted, skipped = head_features(model, batches, targets, ego=ego)
    history = fit_plan_head(model.plan_head, features, wanted, cfg, seed)
    copy_prior = float(wanted.abs().mean()) if model.prompt.residual_answer else float("nan")
    note = f", {skipped} without a complete future skipped" if skipped else ""
    return (f"plan head fitted on {len(features)} train keyframes{note}: L1 {history[0]:.3f} m (epoch 1) -> "
            f"{history[-1]:.3f} m (epoch {len(history)})"
            + (f"; the prior alone (zero correction): {copy_prior:.3f} m" if model.prompt.residual_answer else ""))
