"""Stage data: planning examples, kinematic-copy pseudo-examples, padding and label masking in batches."""

from __future__ import annotations

import numpy as np
import torch
from model_helpers import fake_tokens, small_model, small_records

from planning.codec import parse_trajectory
from planning.kinematic import ctra_prior
from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.model.sequence import IGNORE_INDEX
from vla_world.training.data import (
    collate,
    encode_examples,
    kinematic_copy_records,
    planning_examples,
    source_token,
)

torch.set_num_threads(1)


def test_planning_examples_skip_incomplete_futures():
    records = [synthetic_record(speed=4.0, token="a"), synthetic_record(speed=4.0, future_valid=5, token="b")]
    examples = planning_examples(records)
    assert [e.sample_token for e in examples] == ["a"]
    np.testing.assert_allclose(parse_trajectory(examples[0].answer).waypoints[:, 1], [2, 4, 6, 8, 10, 12])


def test_residual_examples_are_the_future_minus_the_prompts_prior():
    """Speeding up from a 4 m/s prior: the residual answer is the gap in cm, and parses back to the future."""
    record = synthetic_record(speed=4.0, token="a")
    record.ego_future = record.ego_future + np.array([0.0, 0.5])  # 50 cm ahead of the constant-speed rollout
    (example,) = planning_examples([record], residual=True)
    prior = ctra_prior(planner_input(record))
    assert example.answer == "<traj_start>[" + ",".join(["(0,50)"] * 6) + "]<traj_end>"
    np.testing.assert_allclose(parse_trajectory(example.answer, prior=prior).waypoints, record.ego_future, atol=0.005)
    copies = planning_examples(kinematic_copy_records(small_records(), 3, seed=0), residual=True)
    for copy in copies:  # a pseudo-record's future IS its prior: every correction is 0 cm
        assert not parse_trajectory(copy.answer, prior=np.zeros((6, 2))).waypoints.any(), copy.answer


def test_kinematic_copy_answers_are_the_prior_and_reuse_source_tokens():
    records = small_records()
    pseudo = kinematic_copy_records(records, 5, seed=0)
    assert len(pseudo) == 5 and len({p.sample_token for p in pseudo}) == 5
    for record in pseudo:
        assert source_token(record.sample_token) in {r.sample_token for r in records}
        np.testing.assert_allclose(record.ego_future, ctra_prior(planner_input(record)), atol=1e-5)
    assert kinematic_copy_records(records, 5, seed=0)[3].ego_speed == pseudo[3].ego_speed  # deterministic


def test_batches_pad_right_and_mask_padding():
    records = small_records()
    model = small_model(records)
    tokens = {r.sample_token: fake_tokens(r) for r in records}
    pseudo = kinematic_copy_records(records, 2, seed=1)
    samples, dropped = encode_examples(model.sequence_builder, planning_examples(records + pseudo), records + pseudo,
                                       tokens, 4096)
    assert len(samples) == 5 and not dropped
    batch = collate(samples, model.pad_id)
    lengths = batch["attention_mask"].sum(1)
    for i, sample in enumerate(samples):
        assert lengths[i] == len(sample.input_ids)
        assert (batch["labels"][i, lengths[i]:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][i, lengths[i]:] == model.pad_id).all()
