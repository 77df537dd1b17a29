"""The LM loss with per-segment weights: visual code tokens vs every other supervised token.

Why not transformers' built-in loss: it averages over tokens, so an answer of 384 frame codes and
a 90-token trajectory would be 80 % image in the loss. Here each supervised position gets a weight
from its label (`segment_weights`, config `loss` in vla_world/training/config.py):

  segment  w_i = lambda_s / n_s for a token of segment s (n_s of them in the batch), divided by the
           sum of lambda over the segments present: sum_s lambda_s * mean_s(CE) / sum_s lambda_s
  token    w_i = lambda_s / sum_j lambda_s(j): a weighted token mean

With no code token in the batch both reduce to the plain token mean (the other stages' loss).
Positions follow the causal shift: the logits at t predict the label at t + 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vla_world.model.sequence import IGNORE_INDEX
from vla_world.training.config import LossConfig


def segment_weights(labels: torch.Tensor, code_ids: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """(B, T) float weights of the label positions (0 where ignored), summing to 1 over the batch."""
    valid = labels != IGNORE_INDEX
    visual = valid & torch.isin(labels, code_ids.to(labels.device))
    text = valid & ~visual
    weights = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    present = 0.0
    for mask, lam in ((visual, cfg.visual_weight), (text, cfg.text_weight)):
        count = int(mask.sum())
        if count == 0 or lam == 0:
            continue
        weights[mask] = lam / count if cfg.normalise == "segment" else lam
        present += lam if cfg.normalise == "segment" else lam * count
    if present == 0:  # every supervised token sits in a segment of weight 0: nothing to learn from this batch
        return weights
    return weights / present


def weighted_lm_loss(logits: torch.Tensor, labels: torch.Tensor, code_ids: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Causal LM loss of (B, T, V) logits against (B, T) labels with `segment_weights`."""
    targets = labels[:, 1:]
    weights = segment_weights(targets, code_ids, cfg)
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                         reduction="none")
    return (ce * weights.flatten()).sum()
