"""The planning stage's second phase: fit the plan head on the trained LLM's frozen hidden states.

    targets = plan_targets(records, residual=True)          # {sample_token: (6, 2) m}, futures only
    summary = fit_stage_plan_head(model, batches, targets, cfg.model.plan_head, seed)

Why a phase of its own, after the LLM steps, not a loss term beside the LM loss: the head then
learns from every train keyframe for `epochs` passes over features computed once (a few seconds),
where a joint loss would see each keyframe ~4 times in the stage's 120 steps; a joint L1 term
tried in a prototype left the head at the prior (docs/planning_experiments.md, "Plan head").

The features are read from the stage's own batches (cached, oracle or online tokens alike), at each
row's last prompt token (the position before its first label); rows without a target (no complete
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
from vla_world.model.plan_head import PlanHeadConfig, fit_plan_head
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


@torch.no_grad()
def head_features(model: VLAModel, batches, targets: dict[str, np.ndarray], batch_size: int = 16
                  ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(N, H) hidden states, (N, 6, 2) targets of the rows that have one, and how many rows had none."""
    was_training = model.training
    model.eval()
    features, wanted, skipped = [], [], 0
    device = next(model.parameters()).device
    for start in range(0, len(batches), batch_size):
        batch = batches.batch(list(range(start, min(start + batch_size, len(batches)))))
        hidden = model.last_prompt_hidden(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                          batch["features"], last_prompt_positions(batch["labels"]))
        for row, token in enumerate(batch["sample_tokens"]):
            if token not in targets:
                skipped += 1
                continue
            features.append(hidden[row].float().cpu())
            wanted.append(torch.from_numpy(targets[token]))
    model.train(was_training)
    if not features:
        raise ValueError("plan head: none of the stage's sequences has a complete future to fit on")
    return torch.stack(features), torch.stack(wanted), skipped


def fit_stage_plan_head(model: VLAModel, batches, targets: dict[str, np.ndarray], cfg: PlanHeadConfig,
                        seed: int) -> str:
    """Fit `model.plan_head` on the stage's batches; returns the one-line summary the runner logs."""
    features, wanted, skipped = head_features(model, batches, targets)
    history = fit_plan_head(model.plan_head, features, wanted, cfg, seed)
    copy_prior = float(wanted.abs().mean()) if model.prompt.residual_answer else float("nan")
    note = f", {skipped} without a complete future skipped" if skipped else ""
    return (f"plan head fitted on {len(features)} train keyframes{note}: L1 {history[0]:.3f} m (epoch 1) -> "
            f"{history[-1]:.3f} m (epoch {len(history)})"
            + (f"; the prior alone (zero correction): {copy_prior:.3f} m" if model.prompt.residual_answer else ""))
