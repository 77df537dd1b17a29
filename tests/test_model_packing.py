"""Packing a sample's questions into multi-turn sequences (vla_world/model/packing.py)."""

from __future__ import annotations

import pytest
import torch
from model_helpers import fake_tokens, small_model, small_records

from vla_world.data.planner_input import planner_input
from vla_world.model.packing import conversation_groups, pack_conversations
from vla_world.model.sequence import IGNORE_INDEX, Turn
from vla_world.model.tokenizer import IM_END
from vla_world.qa.examples import StageExample

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    records = small_records()
    return records, small_model(records), {r.sample_token: fake_tokens(r) for r in records}


def question(sample: str, n: int, granularity: str = "concise", focus: int | None = None) -> StageExample:
    return StageExample(sample, "instruct", "qa_prediction", f"question {n}?", f"answer {n}.", focus,
                        {"id": f"{sample}/instruct/qa_prediction/{n}", "granularity": granularity})


def answers_of(model, sample) -> list[str]:
    supervised = model.tokenizer.decode([i for i, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])
    return [a for a in supervised.split(IM_END) if a]


def test_one_conversation_per_sample_and_granularity(setup):
    records, model, tokens = setup
    examples = [question("tok0", 0), question("tok0", 1, "detailed"), question("tok0", 2), question("tok1", 3)]
    assert conversation_groups(examples) == {("tok0", "concise"): [examples[0], examples[2]],
                                             ("tok0", "detailed"): [examples[1]], ("tok1", "concise"): [examples[3]]}
    samples, dropped = pack_conversations(model.sequence_builder, examples, records, tokens, max_length=2048)
    assert [s.sample_token for s in samples] == ["tok0", "tok0", "tok1"]
    assert sorted(answers_of(model, samples[0])) == ["answer 0.", "answer 2."]  # shuffled order, same answers
    assert answers_of(model, samples[1]) == ["answer 1."] and not dropped


def test_examples_without_granularity_make_one_conversation_per_sample():
    plain = [StageExample("tok0", "align", "agent_caption", "q?", f"a{n}", None, {"id": str(n)}) for n in range(3)]
    assert list(conversation_groups(plain)) == [("tok0", "")]


def test_turn_order_is_seeded(setup):
    records, model, tokens = setup
    examples = [question("tok0", n) for n in range(6)]
    orders = {seed: answers_of(model, pack_conversations(model.sequence_builder, examples, records, tokens, 4096,
                                                         seed)[0][0]) for seed in (0, 0, 1)}
    again = answers_of(model, pack_conversations(model.sequence_builder, examples, records, tokens, 4096, 0)[0][0])
    assert again == orders[0] and sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]


def test_undetected_focus_agents_are_dropped_and_counted(setup):
    records, model, tokens = setup
    examples = [question("tok0", 0, focus=1), question("tok0", 1, focus=99), question("tok0", 2)]
    samples, dropped = pack_conversations(model.sequence_builder, examples, records, tokens, max_length=4096)
    assert sorted(answers_of(model, samples[0])) == ["answer 0.", "answer 2."]
    assert dropped == {"focus agent not detected": 1} and samples[0].features["object"].shape[0] == 1


def test_long_conversations_continue_in_a_new_sequence(setup):
    records, model, tokens = setup
    examples = [question("tok2", n) for n in range(4)]
    builder = model.sequence_builder
    single = len(builder.encode(planner_input(records[2]), tokens["tok2"], "question 0?", "answer 0.").input_ids)
    later = len(builder.follow_up(tokens["tok2"], Turn("question 1?", "answer 1."))[0])
    # room for the first turn and one more: 4 questions -> 2 sequences of 2 turns, each within the limit
    samples, _ = pack_conversations(builder, examples, records, tokens, max_length=single + later + 1)
    assert [len(answers_of(model, s)) for s in samples] == [2, 2]
    assert all(len(s.input_ids) <= single + later + 1 for s in samples)
    with pytest.raises(ValueError, match="raise data.max_length"):
        pack_conversations(builder, examples, records, tokens, max_length=single - 1)
