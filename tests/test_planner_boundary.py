"""The boundary between what a planner sees (`PlannerInput`) and what it is scored on (`PlanningTargets`).

Golden property: blank every label of a record (ego and agent futures, future boxes, the GT boxes
of now) with NaN and every planner and prompt gives the same answer, bit for bit. If any planner
or prompt builder read a label, the NaNs would show up in its output (or change it).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from model_helpers import fake_tokens, small_model, small_records

from planning.baselines import (
    EgoMLPConfig,
    constant_velocity,
    predict_ego_mlp,
    train_ego_mlp,
)
from planning.kinematic import ctra_prior, fit_kinematic, predict_kinematic
from vla_world.data.planner_input import PlannerInput, planner_input
from vla_world.data.records import SampleRecord
from vla_world.data.targets import PlanningTargets, planning_targets
from vla_world.inference import Planner
from vla_world.model.sequence import PLANNING_QUESTION

torch.set_num_threads(1)

LABEL_FIELDS = ("ego_future", "ego_future_yaw", "agent_future", "agent_future_yaw", "future_box", "agent_box",
                "agent_velocity", "agent_category", "agent_class", "agent_instance", "map_polylines",
                "next_sample_token", "next_front_camera_path")


def without_labels(record: SampleRecord) -> SampleRecord:
    """The same keyframe with every future (and every GT box) replaced by NaN."""
    nan = {name: np.full_like(getattr(record, name), np.nan, dtype=np.float32)
           for name in ("ego_future", "ego_future_yaw", "agent_future", "agent_future_yaw", "future_box", "agent_box",
                        "agent_velocity")}
    return dataclasses.replace(record, **nan, map_polylines=[p * np.nan for p in record.map_polylines],
                               next_sample_token="LEAK", next_front_camera_path="LEAK.jpg")


def inputs_equal(a: PlannerInput, b: PlannerInput) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(PlannerInput))


@pytest.fixture(scope="module")
def records():
    return small_records()


def test_planner_input_has_no_label_field():
    fields = {f.name for f in dataclasses.fields(PlannerInput)}
    assert not fields & set(LABEL_FIELDS)
    assert {"ego_future", "future_box", "context_track_ids", "next_sample_token",
            "next_front_camera_path"} <= {f.name for f in dataclasses.fields(PlanningTargets)}


def test_inputs_from_nan_labels_are_identical(records):
    for record in records:
        assert inputs_equal(planner_input(record), planner_input(without_labels(record)))
        assert not np.isnan(planning_targets(record).ego_future).any()


def test_the_nan_probe_changes_what_labels_feed(records):
    """The probe is strong enough to fail: targets built from the blanked record do change."""
    blank = planning_targets(without_labels(records[1]))
    assert np.isnan(blank.ego_future).all() and np.isnan(blank.agent_future).all()


def test_baseline_plans_ignore_labels(records):
    params = fit_kinematic(records)
    mlp = train_ego_mlp(records, EgoMLPConfig(epochs=2), progress=False)
    for record in records:
        real, blank = planner_input(record), planner_input(without_labels(record))
        for plan in (constant_velocity, ctra_prior, lambda i: predict_kinematic(i, params)):
            np.testing.assert_array_equal(plan(real), plan(blank))
        np.testing.assert_array_equal(predict_ego_mlp(mlp, [real])[record.sample_token],
                                      predict_ego_mlp(mlp, [blank])[record.sample_token])


def test_prompts_and_vla_plans_ignore_labels(records):
    model = small_model(records)
    builder = model.sequence_builder
    planner = Planner(model)
    for record in records:
        tokens = fake_tokens(record)
        real = builder.encode(planner_input(record), tokens, PLANNING_QUESTION)
        blank = builder.encode(planner_input(without_labels(record)), tokens, PLANNING_QUESTION)
        assert real.input_ids == blank.input_ids
        assert planner.plan(planner_input(record), tokens).text == planner.plan(
            planner_input(without_labels(record)), tokens).text


def test_prompt_builder_refuses_a_record(records):
    model = small_model(records)
    with pytest.raises(TypeError, match="PlannerInput"):
        model.sequence_builder.encode(records[0], fake_tokens(records[0]), PLANNING_QUESTION)


def test_the_command_is_the_one_known_leak(records):
    """The command comes from the GT future (the field's definition): an input that must say so."""
    import vla_world.data.planner_input as module

    assert "known leak" in module.__doc__ and "command" in module.__doc__
    assert planner_input(records[0]).command == records[0].command
