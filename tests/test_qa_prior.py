"""The no-model prior answerer (vla_world/qa/prior.py) on hand cases with known answers."""

from __future__ import annotations

from collections import Counter

import pytest

from vla_world.qa.examples import StageExample
from vla_world.qa.prior import (
    MAX_CANDIDATES,
    candidate_answers,
    consensus_answer,
    fit_prior,
    prior_answers,
    word_f1,
    words,
)


def example(kind: str, answer: str, granularity: str | None = "concise", n: int = 0) -> StageExample:
    meta = {"id": f"s/instruct/{kind}/{n}"}
    if granularity:
        meta["granularity"] = granularity
    return StageExample("s", "instruct", kind, "q?", answer, meta=meta)


def test_word_f1_on_hand_cases():
    assert word_f1(words("the car stops"), words("The car goes.")) == pytest.approx(2 * 2 / 6)
    assert word_f1(words("12.5 m/s"), words("12.5 m/s")) == 1.0  # numbers and units stay whole words
    assert word_f1(words(""), words("")) == 1.0 and word_f1(words("a"), words("")) == 0.0


def test_consensus_is_the_most_frequent_answer_when_one_dominates():
    # scores: "a b" 2*1 + 1*0.5 + 0 = 2.5; "a c" 2*0.5 + 1 + 0 = 2; "d" 1
    assert consensus_answer(["a b", "a c", "a b", "d"]) == "a b"


def test_consensus_prefers_the_typical_answer_over_a_frequent_outlier():
    # "x": 2*1 = 2. Each "a b ?": 1 + 2 * (2/3) = 2.33, a three-way tie that goes to the first seen.
    assert consensus_answer(["x", "a b c", "x", "a b d", "a b e"]) == "a b c"


def test_consensus_needs_answers():
    with pytest.raises(ValueError, match="no answers"):
        consensus_answer([])


def test_candidates_keep_the_most_frequent_half_and_spread_the_rest():
    answers = ["common"] * 5 + [f"rare {i}" for i in range(200)]
    candidates = candidate_answers(Counter(answers))
    assert len(candidates) == MAX_CANDIDATES and candidates[0] == "common"
    assert candidates[MAX_CANDIDATES // 2 - 1] == "rare 30"  # the first half: ranked order
    # the other 169 start at "rare 31"; 32 picks with stride 169/32 end at index int(31 * 169 / 32) = 163
    assert candidates[MAX_CANDIDATES // 2] == "rare 31" and candidates[-1] == "rare 194"


def test_fit_prior_answers_per_kind_and_granularity():
    train = [example("qa_prediction", "It will go straight."), example("qa_prediction", "It will stop."),
             example("qa_prediction", "It will go straight."),
             example("qa_prediction", "The car goes straight ahead.", "detailed"),
             example("scene_caption", "A quiet road.", None)]
    table = fit_prior(train)
    assert table == {("qa_prediction", "concise"): "It will go straight.",
                     ("qa_prediction", "detailed"): "The car goes straight ahead.",
                     ("scene_caption", None): "A quiet road."}
    val = [example("qa_prediction", "It will turn left.", n=0), example("qa_prediction", "x", "detailed", n=1),
           example("qa_attention", "None.", n=2)]
    assert prior_answers(table, val) == {"s/instruct/qa_prediction/0": "It will go straight.",
                                         "s/instruct/qa_prediction/1": "The car goes straight ahead.",
                                         "s/instruct/qa_attention/2": ""}  # unseen group: empty answer
