"""The world stage's examples for export: the planning prompt, answered with the next keyframe's frame codes.

The answer is `<visual>` + one special token per VQ code of the next keyframe's CAM_FRONT + `</visual>`,
the tokens our LLM uses, so a LLaMA-Factory run must add every code token to the vocabulary
(`new_special_tokens`, FSDrive's recipe: paper 004 / reference_code.md §3). Codes come from the
frame-code cache (perception/frame_codes.py), keyed by each sample's own CAM_FRONT; a sample's target
is the row of the next keyframe of its scene, and samples without one are counted and left out.

PLACEHOLDER until the `world` branch lands: the token names, the question and the next-keyframe link
below are this module's own (`<vis_i>`, `<visual>`, `</visual>`; next = frame_index + 1 in the same
scene). When the world stage's tokenizer list and `next_sample_token` exist, `frame_code_tokens`,
`WORLD_QUESTION` and `next_keyframes` must read them instead (three one-line changes).

    examples, skipped = world_examples(records, codes)        # codes: {sample_token: (K,) int64}
    tokens = frame_code_tokens(meta.codebook_size)           # for new_special_tokens
"""

from __future__ import annotations

import numpy as np

from vla_world.data.records import SampleRecord
from vla_world.training.data import TrainingExample

VISUAL_START, VISUAL_END = "<visual>", "</visual>"  # placeholder: the world stage's names
WORLD_QUESTION = "Imagine the front camera 0.5 s ahead."  # placeholder: the world stage's question


def code_token(code: int) -> str:
    return f"<vis_{int(code)}>"


def frame_code_tokens(codebook_size: int) -> list[str]:
    """Every special token a world answer can hold: the two delimiters, then one per codebook entry."""
    return [VISUAL_START, VISUAL_END, *(code_token(i) for i in range(codebook_size))]


def visual_answer(codes: np.ndarray) -> str:
    return VISUAL_START + "".join(code_token(c) for c in np.asarray(codes).tolist()) + VISUAL_END


def next_keyframes(records: list[SampleRecord]) -> dict[str, str]:
    """{sample_token: the next keyframe's sample_token} within each scene, among `records`."""
    by_place = {(r.scene_token, r.frame_index): r.sample_token for r in records}
    return {r.sample_token: by_place[(r.scene_token, r.frame_index + 1)] for r in records
            if (r.scene_token, r.frame_index + 1) in by_place}


def world_examples(records: list[SampleRecord], codes: dict[str, np.ndarray]) -> tuple[list[TrainingExample], dict]:
    """One example per sample with a next keyframe whose codes are cached; the skipped counts by reason."""
    following = next_keyframes(records)
    examples, skipped = [], {}
    for record in records:
        target = following.get(record.sample_token)
        reason = "no next keyframe" if target is None else "next keyframe not in the frame-code cache" \
            if target not in codes else None
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        examples.append(TrainingExample(record.sample_token, WORLD_QUESTION, visual_answer(codes[target]), kind="world"))
    return examples, skipped
