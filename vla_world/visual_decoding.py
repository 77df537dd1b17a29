"""Constrained decoding of a `<visual>` block: exactly K code tokens, nothing else, so every frame decodes.

Why: free decoding of an imagined frame can stop early, write text among the codes or run past
K codes, and then the VQ decoder cannot draw it. Here the structure is fixed: after `<visual>` the
model chooses K times among the N code tokens only (the argmax of its logits restricted to the
code rows of the output layer), then `</visual>` is fed. Batched in lockstep with one KV cache:
every row writes the same number of tokens, so there is no padding inside the block.

Two entry points:

    codes = imagine_codes_batch(model, prompts, features)   # (B, K) int64 code indices
        prompt ids end where the answer starts; `<visual>` is fed after them, the block is decoded.

    codes = decode_visual_block(model, stepper, close=[[end_id], ...])
        for a decoder that writes a longer answer around the block (the structured answer): its
        stepper (`vla_world.constrained`'s `_Stepper`, or anything with `.last` (B, H) hidden states and
        `.feed(blocks)`) has just been fed `<visual>`; the block's K codes are chosen and fed, and
        `close` (default `</visual>`, per row; more forced ids may follow it) is fed with the last code,
        so the stepper is left ready to predict what comes after the block.

Code indices are 0..N-1 (perception/frame_codes.py); token ids are looked up in the model's
`VisualIds` (vla_world.model.visual_tokens).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from vla_world.constrained import _Stepper, packed_attention
from vla_world.model.visual_tokens import VisualIds
from vla_world.model.vla import Features, VLAModel


class Stepper(Protocol):
    """A batch decoding in one KV cache: the hidden state after each row's last fed token, and a way to feed more."""

    last: torch.Tensor  # (B, H)

    def feed(self, blocks: list[list[int]]) -> None: ...


def require_visual(model: VLAModel) -> VisualIds:
    if model.visual is None:
        raise ValueError("this model has no visual tokens: train it with the world stage "
                         "(tools/train.py --stage world) before decoding frames")
    return model.visual_ids


def code_logits(model: VLAModel, hidden: torch.Tensor, ids: VisualIds) -> torch.Tensor:
    """(B, N) logits of the N code tokens at hidden states (B, H).

    A plain bias-free output layer: only the code rows are multiplied. A peft-wrapped one (LoRA
    with trainable token rows) is run whole and the code columns are picked.
    """
    head = model.base_llm.get_output_embeddings()
    codes = ids.codes.to(hidden.device)
    if isinstance(head, torch.nn.Linear) and head.bias is None:
        return hidden @ head.weight[codes].T
    return head(hidden)[:, codes]


@torch.no_grad()
def decode_visual_block(model: VLAModel, stepper: Stepper, close: list[list[int]] | None = None) -> torch.Tensor:
    """Choose K codes per row after a fed `<visual>` and feed them (+ `close` per row); (B, K) code indices.

    `close` defaults to `</visual>` for every row; pass `[]` rows to feed nothing after the last code,
    or `close=[]` (empty list) to leave the last code unfed (nothing more will be decoded).
    """
    ids = require_visual(model)
    rows = stepper.last.shape[0]
    close = [[ids.end]] * rows if close is None else close
    chosen = []
    for k in range(model.visual.codes_per_frame):
        best = torch.argmax(code_logits(model, stepper.last, ids), dim=-1).cpu()  # (B,)
        chosen.append(best)
        tokens = ids.codes[best].tolist()
        last = k == model.visual.codes_per_frame - 1
        if not last:
            stepper.feed([[t] for t in tokens])
        elif close:
            stepper.feed([[t] + list(tail) for t, tail in zip(tokens, close)])
    return torch.stack(chosen, dim=1)


@torch.no_grad()
def imagine_codes_batch(model: VLAModel, prompts: list[list[int]], features: list[Features]) -> np.ndarray:
    """(B, K) int64 codes of the frame each prompt's answer imagines (`<visual>` is fed after the prompt)."""
    ids = require_visual(model)
    with packed_attention(model.base_llm):
        stepper = _Stepper(model, [list(p) + [ids.start] for p in prompts], features)
        codes = decode_visual_block(model, stepper, close=[])
    return codes.numpy().astype(np.int64)
