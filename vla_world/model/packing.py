"""Pack the questions about one sample into multi-turn training sequences (instruct stage).

Why: a driving-QA example is a ~390-token prompt (system text, perception blocks, ego state,
history, prior) and a ~45-token answer, so single-turn training spends ~90 % of its compute
re-reading prompts. Packed, the prompt is paid once per conversation and each step sees several
times more answers, and more answer starts: the tiny from-scratch LLM has to learn to read the
question to pick the answer's template, and it only gets that signal once per answer.

    samples, dropped = pack_conversations(builder, examples, records, tokens, max_length=1536, seed=0)

Grouping: one conversation per (sample, granularity), so a question's detailed and concise
answers never share a sequence (the second could copy the first instead of reading the scene).
Turn order is shuffled per conversation with `seed` so no fixed order leaks one answer into the
next. (Mixing granularities, the detailed half of the questions with the concise other half,
gives sequences of equal length and less padding, but measured worse: docs/qa.md.)
A conversation longer than `max_length` tokens continues in a new one (with the
prompt again). Inference stays single-turn: the first turn of a conversation is exactly the
single-turn sequence of `SequenceBuilder.encode`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from perception.tokens import PerceptionTokens
from vla_world.data.planner_input import PlannerInput, planner_input
from vla_world.data.records import SampleRecord
from vla_world.model.sequence import (
    EncodedSample,
    FocusNotDetected,
    SequenceBuilder,
    Turn,
    select_features,
)


class QuestionExample(Protocol):
    """What packing reads from an example (vla_world.qa's StageExample and the trainer's example fit)."""

    sample_token: str
    question: str
    answer: str
    focus_track_id: int | None
    meta: dict


def conversation_groups(examples: Sequence[QuestionExample]) -> dict[tuple[str, str], list[QuestionExample]]:
    """Examples by (sample_token, granularity), in first-seen order ("" for stages without granularity)."""
    groups: dict[tuple[str, str], list[QuestionExample]] = {}
    for example in examples:
        groups.setdefault((example.sample_token, example.meta.get("granularity") or ""), []).append(example)
    return groups


def pack_conversations(builder: SequenceBuilder, examples: Sequence[QuestionExample], records: list[SampleRecord],
                       tokens: dict[str, PerceptionTokens], max_length: int,
                       seed: int = 0) -> tuple[list[EncodedSample], Counter]:
    """Encoded conversations, and how many turns were dropped per reason (focus agent not detected)."""
    by_token = {r.sample_token: planner_input(r) for r in records}  # prompts see inputs only
    samples, dropped = [], Counter()
    for sample_token, group in shuffled_conversations(examples, seed):
        if sample_token not in by_token or sample_token not in tokens:
            raise KeyError(f"example names sample {sample_token}, which is not among the records/tokens of this "
                           "split; the example builder and the records disagree")
        turns = [Turn(e.question, e.answer, e.focus_track_id) for e in group]
        kept = [t for t in turns if has_focus(tokens[sample_token], t)]
        if len(kept) < len(turns):
            dropped["focus agent not detected"] += len(turns) - len(kept)
        samples += split_by_length(builder, by_token[sample_token], tokens[sample_token], kept, max_length)
    return samples, dropped


def shuffled_conversations(examples: Sequence[QuestionExample], seed: int) -> list[tuple[str, list[QuestionExample]]]:
    """(sample_token, examples in turn order) per conversation group; the order is shuffled per group with `seed`.

    The one place the turn order is decided, so the LLaMA-Factory export (vla_world/export) packs
    exactly the conversations our trainer packs.
    """
    out = []
    for index, ((sample_token, _), group) in enumerate(conversation_groups(examples).items()):
        order = np.random.default_rng([seed, index]).permutation(len(group))
        out.append((sample_token, [group[i] for i in order]))
    return out


def has_focus(tokens: PerceptionTokens, turn: Turn) -> bool:
    try:
        select_features(tokens, turn.focus_track_id)
    except FocusNotDetected:
        return False
    return True


def split_by_length(builder: SequenceBuilder, inp: PlannerInput, tokens: PerceptionTokens, turns: list[Turn],
                    max_length: int) -> list[EncodedSample]:
    """Greedy: add turns to the current conversation until the next would pass `max_length` tokens.

    A sequence's length is its first turn's single-turn length plus each later turn's own length,
    so no growing conversation is re-encoded to measure it.
    """
    def first_length(turn: Turn) -> int:
        length = len(builder.encode(inp, tokens, turn.question, turn.answer, turn.focus_track_id).input_ids)
        if length > max_length:
            raise ValueError(f"sample {inp.sample_token}: one question needs {length} tokens > max_length "
                             f"{max_length}; raise data.max_length in the stage config")
        return length

    if not turns:
        return []
    chunks, length = [[turns[0]]], first_length(turns[0])
    for turn in turns[1:]:
        extra = len(builder.follow_up(tokens, turn)[0])
        if length + extra > max_length:
            chunks.append([turn])
            length = first_length(turn)
        else:
            chunks[-1].append(turn)
            length += extra
    return [builder.encode_conversation(inp, tokens, chunk) for chunk in chunks]
