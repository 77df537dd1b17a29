"""The command-copy answerer (vla_world/qa/command_copy.py) on a fixed example set with known scores."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from vla_world.data.records import (
    CMD_FORWARD,
    CMD_LEFT,
    CMD_RIGHT,
    NUM_FUTURE,
    STEP_SECONDS,
)
from vla_world.data.synthetic import synthetic_record
from vla_world.qa import build_stage_examples
from vla_world.qa.command_copy import command_answer, command_copy_answers
from vla_world.qa.evaluate import evaluate_answer_sets
from vla_world.qa.prior import fit_prior

T = STEP_SECONDS * np.arange(1, NUM_FUTURE + 1)


def four_samples():
    """Labels (vla_world.qa.labels) and what the command says about them:

    left: turn left [route turns left, road turns left]      command left: right action, reason F1 2/3
    stop: stop/slow down [obstacle: car, front car stopping]  command forward: wrong action, reason F1 0
    clear: keep forward [road is clear]                       command forward: right action, reason F1 1
    lane: turn right [route turns right, changing to the right lane]  command right: right, reason F1 2/3
    """
    theta = 5.0 * T / 10.0  # a left arc of radius 10 m at 5 m/s
    left = replace(synthetic_record(token="left"), command=CMD_LEFT,
                   ego_future=np.stack([-10 + 10 * np.cos(theta), 10 * np.sin(theta)], 1).astype(np.float32),
                   ego_future_yaw=(np.pi / 2 + theta).astype(np.float32))
    stop = synthetic_record(token="stop", agents=[("car", 0.0, 12.0, 0.0, 0.0)], command=CMD_FORWARD)
    clear = synthetic_record(token="clear", command=CMD_FORWARD)
    lane = replace(synthetic_record(token="lane"), command=CMD_RIGHT,
                   ego_future=np.stack([np.linspace(0.4, 2.5, NUM_FUTURE), 5.0 * T], 1).astype(np.float32))
    return [left, stop, clear, lane]


def action_examples(records):
    return [e for e in build_stage_examples("instruct", records) if e.kind in ("qa_action", "qa_structured")]


def test_command_copy_scores_what_the_command_explains():
    records = four_samples()
    examples = action_examples(records)
    assert [e.meta["action"] for e in examples if e.kind == "qa_action" and e.meta["granularity"] == "concise"] == \
        ["turn left", "stop/slow down", "keep forward", "turn right"]
    copy = command_copy_answers(examples, {r.sample_token: r.command for r in records}, fit_prior(examples))
    report = evaluate_answer_sets(examples, {"command-copy": copy}, meteor=False)["command-copy"]
    for group in (report["overall"], *report["per_kind"].values(), *report["per_granularity"].values()):
        assert group["action"]["accuracy"] == pytest.approx(3 / 4)
        assert group["reason_f1"] == pytest.approx((2 / 3 + 0 + 1 + 2 / 3) / 4)
        assert group["failures"] == []


def test_command_copy_keeps_the_prior_answer_around_the_action():
    prior = "Action: keep forward. Reasons: road is clear. Explanation: The ego goes on."
    assert command_answer("qa_action", CMD_LEFT, prior) == \
        "Action: turn left. Reasons: route turns left. Explanation: The ego goes on."
    assert command_answer("qa_action", CMD_RIGHT, None) == "Action: turn right. Reasons: route turns right."
    structured = json.dumps({"description": "A quiet street.", "action": "stop/slow down", "justification": ["unseen cause"]})
    assert json.loads(command_answer("qa_structured", CMD_FORWARD, structured)) == \
        {"description": "A quiet street.", "action": "keep forward", "justification": ["road is clear"]}
    assert json.loads(command_answer("qa_structured", CMD_LEFT, None))["description"] == "The route command is turn left."
    # the command says nothing about other kinds: the prior's answer stands
    assert command_answer("qa_prediction", CMD_LEFT, "It will go straight.") == "It will go straight."


def test_command_copy_needs_every_samples_command():
    records = four_samples()
    examples = action_examples(records)
    with pytest.raises(KeyError, match="no command for 1 samples"):
        command_copy_answers(examples, {r.sample_token: r.command for r in records[1:]}, {})
