"""The GRPO objective as small tensor functions (paper 004 A.1): advantages, k3 KL, clipped token loss.

Kept apart from the loop (vla_world/training/grpo.py) so each formula is tested alone with known
answers (tests/test_grpo.py):

  advantage   A_i = (r_i - mean(r)) / (std(r) + eps) within one prompt's group of G answers
              (std with ddof 0; a group whose rewards are all equal has A = 0: no signal)
  ratio       rho_t = exp(logp_t - logp_old_t) per scored token
  policy      -min(rho_t A, clip(rho_t, 1 - e, 1 + e) A)
  KL          k3_t = exp(logp_ref_t - logp_t) - (logp_ref_t - logp_t) - 1  (>= 0, 0 when equal; Schulman's k3)
  loss        mean over every scored token of the batch of (policy_t + beta k3_t)  (token-level, as DAPO)

`AnswerLogProbs` is the one forward pass that gives logp_t for the scored tokens of a batch: the
VLA's spliced embeddings through the transformer, the output layer applied only at the scored
positions (the full (B, T, V) logits of a 1,000-token prompt would be most of the memory).
It is an nn.Module so that accelerate/DDP can wrap it and synchronise its gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vla_world.model.sequence import IGNORE_INDEX
from vla_world.model.vla import VLAModel, padded_positions


def group_advantages(rewards: np.ndarray, eps: float) -> np.ndarray:
    """(P, G) rewards -> (P, G) advantages (r - mean) / (std + eps), per row (one prompt's group)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    mean = rewards.mean(axis=1, keepdims=True)
    std = rewards.std(axis=1, keepdims=True)
    return (rewards - mean) / (std + eps)


def zero_signal_groups(rewards: np.ndarray) -> int:
    """How many groups (rows) have all-equal rewards, so every advantage in them is 0."""
    rewards = np.asarray(rewards, dtype=np.float64)
    return int(np.sum(np.ptp(rewards, axis=1) == 0))


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(d) - d - 1 with d = ref_logp - logp."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


@dataclass
class LossParts:
    loss: torch.Tensor  # the scalar to back-propagate
    kl: float  # mean k3 over scored tokens
    clip_fraction: float  # share of scored tokens whose ratio lies outside [1 - eps, 1 + eps]


def clipped_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
                 clip_eps: float, kl_coef: float) -> LossParts:
    """Token-level clipped policy-gradient loss + kl_coef * k3; every argument is (N,) over scored tokens."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages
    kl = k3_kl(logp, ref_logp)
    per_token = -torch.minimum(unclipped, clipped) + kl_coef * kl
    outside = ((ratio - 1).abs() > clip_eps).float()
    return LossParts(per_token.mean(), float(kl.detach().mean()), float(outside.mean()))


def scored_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns) of the tokens that are scored (label != IGNORE) and the positions predicting them (column - 1)."""
    rows, columns = torch.nonzero(labels != IGNORE_INDEX, as_tuple=True)
    if (columns == 0).any():
        raise ValueError("a scored token at position 0 has no position predicting it; the prompt is missing")
    return rows, columns


class AnswerLogProbs(nn.Module):
    """log pi(token) / temperature-scaled, of every scored token of a right-padded batch, in one forward pass."""

    def __init__(self, vla: VLAModel):
        super().__init__()
        self.vla = vla

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: list,
                labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        embeds = self.vla.embed(input_ids, features)
        base = self.vla.base_llm
        hidden = base.model(inputs_embeds=embeds, attention_mask=attention_mask,
                            position_ids=padded_positions(attention_mask)).last_hidden_state
        rows, columns = scored_positions(labels)
        logits = base.get_output_embeddings()(hidden[rows, columns - 1]).float() / temperature
        return torch.log_softmax(logits, dim=-1).gather(1, labels[rows, columns].unsqueeze(1)).squeeze(1)
