"""Sequence builder: placeholders per perception token, prompt masking, ego text, focus objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import fake_tokens, small_model, small_records

from planning.codec import format_points, format_trajectory
from planning.kinematic import ctra_rollout
from vla_world.data.planner_input import planner_input
from vla_world.model.sequence import (
    IGNORE_INDEX,
    PLANNING_QUESTION,
    FocusNotDetected,
    Turn,
)
from vla_world.model.tokenizer import IM_END, PLACEHOLDERS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    records = small_records()
    return records, small_model(records)


def test_placeholders_match_token_counts(setup):
    records, model = setup
    tokens = fake_tokens(records[0], scene=5, maps=3)
    sample = model.sequence_builder.encode(planner_input(records[0]), tokens, PLANNING_QUESTION, "x")
    ids = torch.tensor(sample.input_ids)
    expected = {"scene": 5, "agent": 2, "map": 3, "object": 0}
    for kind, count in expected.items():
        assert int((ids == model.placeholder_ids[kind]).sum()) == count
        assert sample.features[kind].shape == (count, tokens.width)


def test_labels_mask_the_whole_prompt(setup):
    records, model = setup
    answer = format_trajectory(records[1].ego_future)
    sample = model.sequence_builder.encode(planner_input(records[1]), fake_tokens(records[1]), PLANNING_QUESTION, answer)
    supervised = [i for i, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX]
    assert model.tokenizer.decode(supervised) == answer + IM_END
    assert all(label == IGNORE_INDEX for label in sample.labels[:sample.prompt_length])
    prompt = model.tokenizer.decode(sample.input_ids[:sample.prompt_length])
    assert prompt.endswith("<|im_start|>assistant\n") and prompt.startswith("<|im_start|>system\n")


def test_prompt_states_ego_history_command(setup):
    records, model = setup
    sample = model.sequence_builder.encode(planner_input(records[1]), fake_tokens(records[1]), PLANNING_QUESTION)
    text = model.tokenizer.decode(sample.input_ids)
    # synthetic ego: 5 m/s straight ahead (+y), so the past is 2.5 m behind every 0.5 s
    assert "velocity (vx,vy) (0.00,5.00) m/s" in text
    assert "[(0.00,-10.00),(0.00,-7.50),(0.00,-5.00),(0.00,-2.50)]" in text
    assert "Mission goal: keep forward" in text
    assert "[(0.00,2.50),(0.00,5.00),(0.00,7.50),(0.00,10.00),(0.00,12.50),(0.00,15.00)]" in text  # CTRA prior
    assert sample.labels == [IGNORE_INDEX] * len(sample.input_ids)  # no answer given


def test_focus_agent_gets_object_block(setup):
    records, model = setup
    tokens = fake_tokens(records[0])
    sample = model.sequence_builder.encode(planner_input(records[0]), tokens, "What is this object?", "a pedestrian", focus_track_id=1)
    assert torch.equal(sample.features["object"], tokens.agents[1:2])
    assert PLACEHOLDERS["object"] in model.tokenizer.decode(sample.input_ids)
    with pytest.raises(FocusNotDetected):
        model.sequence_builder.encode(planner_input(records[0]), tokens, "q", "a", focus_track_id=99)


def test_fmt_points_masks_and_signs():
    pts = np.array([[-0.001, 1.234], [2.0, -3.456]])
    assert format_points(pts) == "[(0.00,1.23),(2.00,-3.46)]"
    assert format_points(pts, np.array([False, True])) == "[(UN,UN),(2.00,-3.46)]"


def test_ctra_turns_and_brakes():
    # a quarter circle: 5 m/s with yaw rate pi/6 rad/s for 3 s -> radius 30/pi, ends at (-R, R)
    radius = 5.0 / (np.pi / 6)
    end = ctra_rollout(np.array([0.0, 5.0]), np.zeros(2), np.pi / 6)[-1]
    np.testing.assert_allclose(end, [-radius, radius], atol=0.05)
    # braking at 2 m/s^2 from 2 m/s stops after 1 s (1 m) and stays there
    stop = ctra_rollout(np.array([0.0, 2.0]), np.array([0.0, -2.0]), 0.0)
    np.testing.assert_allclose(stop[-1], [0.0, 1.0], atol=0.05)


def test_conversation_starts_with_the_single_turn_sequence_and_supervises_every_answer(setup):
    records, model = setup
    tokens = fake_tokens(records[0])
    builder = model.sequence_builder
    turns = [Turn("How many cars?", "1 car."), Turn("What will it do?", "It will stop.", focus_track_id=1),
             Turn("And this one?", "It will go straight.", focus_track_id=0)]
    single = builder.encode(planner_input(records[0]), tokens, turns[0].question, turns[0].answer)
    packed = builder.encode_conversation(planner_input(records[0]), tokens, turns)
    assert packed.input_ids[:len(single.input_ids)] == single.input_ids
    supervised = [i for i, label in zip(packed.input_ids, packed.labels) if label != IGNORE_INDEX]
    assert model.tokenizer.decode(supervised) == f"1 car.{IM_END}It will stop.{IM_END}It will go straight.{IM_END}"
    # object tokens in turn order, one placeholder each
    assert torch.equal(packed.features["object"], torch.cat([tokens.agents[1:2], tokens.agents[0:1]]))
    assert packed.input_ids.count(model.placeholder_ids["object"]) == 2
    text = model.tokenizer.decode(packed.input_ids)
    assert text.count("<|im_start|>user\n") == 3 and text.count("<|im_start|>assistant\n") == 3
    assert "<|im_end|>\n<|im_start|>user\nObject: <object_start><OBJECT><object_end>\nWhat will it do?" in text


def test_conversation_runs_through_the_model_and_rejects_bad_turns(setup):
    records, model = setup
    tokens = fake_tokens(records[1])
    packed = model.sequence_builder.encode_conversation(planner_input(records[1]), tokens, [Turn("q1", "a"), Turn("q2", "b", 1)])
    ids = torch.tensor([packed.input_ids])
    out = model(ids, torch.ones_like(ids), [packed.features], torch.tensor([packed.labels]))
    assert torch.isfinite(out.loss)
    with pytest.raises(FocusNotDetected):
        model.sequence_builder.encode_conversation(planner_input(records[1]), tokens, [Turn("q1", "a"), Turn("q2", "b", 99)])
    with pytest.raises(ValueError, match="at least one turn"):
        model.sequence_builder.encode_conversation(planner_input(records[1]), tokens, [])
