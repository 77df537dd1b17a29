"""QA metrics on hand cases with known answers, and the answer parsers under random input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_world.qa import vocab
from vla_world.qa.metrics import (
    action_metrics,
    parse_answer,
    parse_structured,
    reason_f1,
    sample_f1,
    text_metrics,
)

REFS = {"a": "the car 12 m ahead is stopping for a pedestrian",
        "b": "there are 3 cars and 1 truck around the ego vehicle",
        "c": "the road boundary is 4.5 m to the left of the ego"}


def test_identical_answers_score_bleu_one():
    scores = text_metrics(REFS, dict(REFS), meteor=False)
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(1.0)
    assert isinstance(scores["CIDEr"], float) and scores["CIDEr"] > 0
    assert scores["METEOR"].startswith("unavailable")


def test_a_wrong_answer_scores_lower():
    hyps = {**REFS, "a": "a bus is parked far behind the ego"}
    assert text_metrics(REFS, hyps, meteor=False)["BLEU-4"] < 0.9


def test_action_accuracy_and_macro_f1_on_a_hand_table():
    gt = ["keep forward", "keep forward", "stop/slow down", "turn left"]
    pred = ["keep forward", "stop/slow down", "stop/slow down", None]  # None: unreadable answer
    # accuracy 2/4. forward: TP 1, FP 0, FN 1 -> F1 2/3; stop: TP 1, FP 1, FN 0 -> 2/3;
    # left: TP 0, FN 1 -> 0; right: no GT and no prediction -> left out. macro = (2/3 + 2/3 + 0) / 3 = 4/9.
    result = action_metrics(gt, pred)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["per_class_f1"] == pytest.approx({"keep forward": 2 / 3, "stop/slow down": 2 / 3, "turn left": 0.0})
    assert result["macro_f1"] == pytest.approx(4 / 9)


def test_reason_f1_per_sample_on_a_hand_table():
    gt = [["a", "b"], ["a"], [], ["c"]]
    pred = [["a"], ["a"], [], ["d"]]
    # per sample: 2*1/(2+1) = 2/3, 1, 1 (both empty), 0 -> mean (2/3 + 2) / 4 = 2/3
    assert reason_f1(gt, pred) == pytest.approx(2 / 3)
    assert sample_f1({"a"}, set()) == 0.0


def test_structured_answers_parse_or_fail_with_a_reason():
    good = json.dumps({"description": "x", "action": "Turn Left", "justification": ["road turns left"]})
    assert parse_structured("Sure: " + good) == parse_structured(good)
    assert parse_structured(good).action == "turn left" and parse_structured(good).reasons == ["road turns left"]
    for bad, why in [("no json here", "no JSON object"), ('{"action": "turn left"', "invalid JSON"),
                     ('{"action": "turn left",}', "invalid JSON"), ('{"action": "turn left"}', "missing keys"),
                     ('{"description": "", "action": "fly", "justification": []}', "unknown action"),
                     ('{"description": "", "action": "stop/slow down", "justification": "x"}', "not a list")]:
        parsed = parse_structured(bad)
        assert parsed.action is None and why in parsed.error


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_parsers_never_raise(text):
    for kind in ("qa_action", "qa_structured"):
        parsed = parse_answer(kind, text)
        assert parsed.action is None or parsed.action in vocab.ACTIONS


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(vocab.ACTIONS), st.sets(st.sampled_from(vocab.REASONS)))
def test_labels_round_trip_through_both_answer_forms(action, reasons):
    ordered = [r for r in vocab.REASONS if r in reasons]
    text = f"Action: {action}. Reasons: {'; '.join(ordered)}. Explanation: the ego keeps its lane."
    assert parse_answer("qa_action", text) == parse_answer("qa_action", text.upper().replace("ACTION:", "Action:"))
    assert (parse_answer("qa_action", text).action, parse_answer("qa_action", text).reasons) == (action, ordered)
    structured = json.dumps({"description": "d", "action": action, "justification": ordered})
    assert (parse_answer("qa_structured", structured).action, parse_answer("qa_structured", structured).reasons) == (action, ordered)


@pytest.mark.slow
def test_meteor_runs_on_java():
    scores = text_metrics(REFS, dict(REFS), meteor=True)
    assert isinstance(scores["METEOR"], float) and scores["METEOR"] > 0.9
