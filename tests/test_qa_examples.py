"""Stage examples on hand-made records: labels with known answers, determinism, granularity, splits."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from vla_world.data.records import CMD_LEFT, CMD_RIGHT, NUM_FUTURE, STEP_SECONDS
from vla_world.data.synthetic import synthetic_record
from vla_world.qa import STAGES, StageDataConfig, build_stage_examples
from vla_world.qa.driving_qa import MODE_SUFFIX
from vla_world.qa.facts import agent_facts
from vla_world.qa.labels import ego_action, ego_reasons

T = STEP_SECONDS * np.arange(1, NUM_FUTURE + 1)


def braking(record, end_positions=(2.0, 3.5, 4.5, 5.0, 5.2, 5.3)):
    """The ego brakes from 5 m/s to 0.2 m/s over 3 s, straight ahead (last step 0.1 m)."""
    future = np.stack([np.zeros(NUM_FUTURE), np.array(end_positions)], 1).astype(np.float32)
    return replace(record, ego_future=future)


def turning_left(record, radius=10.0, speed=5.0):
    """A left arc of `radius` m: centre (-radius, 0); the heading turns by s / radius."""
    theta = speed * T / radius
    future = np.stack([-radius + radius * np.cos(theta), radius * np.sin(theta)], 1).astype(np.float32)
    return replace(record, ego_future=future, ego_future_yaw=(np.pi / 2 + theta).astype(np.float32), command=CMD_LEFT)


def labels_of(record):
    agents = agent_facts(record, 50.0)
    action = ego_action(record, agents)
    return action, ego_reasons(record, action, agents)


def test_pedestrian_crossing_ahead_means_stop_for_a_person():
    # The pedestrian starts 3 m right of the lane centre and walks left at 1.2 m/s: at t = 1 s its
    # box edge is at x = 1.8 - 0.35 = 1.45 m, inside the 1.75 m corridor 8 m ahead of the ego.
    record = braking(synthetic_record(speed=5.0, agents=[("pedestrian", 3.0, 8.0, -1.2, 0.0)]))
    assert labels_of(record) == ("stop/slow down", ["obstacle: person", "pedestrian is crossing"])


def test_stopped_front_car_means_stop():
    record = braking(synthetic_record(speed=5.0, agents=[("car", 0.0, 12.0, 0.0, 0.0)]))
    assert labels_of(record) == ("stop/slow down", ["obstacle: car", "front car is stopping"])


def test_left_arc_means_turn_left_on_the_road():
    # End point x = -10 + 10 cos(1.5) = -9.3 m (left); heading change 1.5 rad = 86 deg > 30 deg.
    assert labels_of(turning_left(synthetic_record())) == ("turn left", ["route turns left", "road turns left"])


def test_small_right_offset_is_a_lane_change():
    future = np.stack([np.linspace(0.4, 2.5, NUM_FUTURE), 5.0 * T], 1).astype(np.float32)
    record = replace(synthetic_record(), ego_future=future, command=CMD_RIGHT)
    assert labels_of(record) == ("turn right", ["route turns right", "changing to the right lane"])


def test_straight_cruise_is_forward():
    assert labels_of(synthetic_record()) == ("keep forward", ["road is clear"])
    following = synthetic_record(agents=[("car", 0.0, 20.0, 0.0, 5.0)])
    assert labels_of(following) == ("keep forward", ["follow traffic"])


def test_action_examples_carry_the_labels():
    record = braking(synthetic_record(speed=5.0, agents=[("pedestrian", 3.0, 8.0, -1.2, 0.0)]))
    action_examples = [e for e in build_stage_examples("instruct", [record]) if e.kind == "qa_action"]
    assert {e.meta["granularity"] for e in action_examples} == {"detailed", "concise"}
    for e in action_examples:
        assert e.answer.startswith("Action: stop/slow down. Reasons: obstacle: person; pedestrian is crossing.")


def scenes(n=3):
    return [synthetic_record(speed=3.0 + i, agents=[("car", 2.0 * i, 10.0 + i, 0.0, 4.0), ("pedestrian", -3.0, 6.0 + i, 1.0, 0.0)],
                             token=f"s{i}", scene=f"scene-{i % 2}") for i in range(n)]


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_yields_deterministic_examples(stage):
    first = [e.to_dict() for e in build_stage_examples(stage, scenes(), seed=0)]
    again = [e.to_dict() for e in build_stage_examples(stage, scenes(), seed=0)]
    assert first and first == again
    ids = [e["meta"]["id"] for e in first]
    assert len(set(ids)) == len(ids)


def test_another_seed_changes_the_phrasing_only():
    a = build_stage_examples("align", scenes(), seed=0)
    b = build_stage_examples("align", scenes(), seed=7)
    assert [(e.kind, e.focus_track_id) for e in a] == [(e.kind, e.focus_track_id) for e in b]
    assert any(x.question != y.question or x.answer != y.answer for x, y in zip(a, b))


def test_a_sample_reads_the_same_alone_or_with_others():
    together = [e.to_dict() for e in build_stage_examples("instruct", scenes()) if e.sample_token == "s1"]
    alone = [e.to_dict() for e in build_stage_examples("instruct", scenes()[1:2])]
    assert together == alone


def test_every_instruct_question_has_a_detailed_and_a_concise_entry():
    modes = defaultdict(set)
    for e in build_stage_examples("instruct", scenes()):
        suffix = MODE_SUFFIX[e.meta["granularity"]]
        assert e.question.endswith(suffix)
        base = e.question[: -len(suffix)]
        modes[(e.sample_token, e.kind, e.focus_track_id, base)].add(e.meta["granularity"])
    kinds = {key[1] for key in modes}
    assert kinds == {"qa_perception", "qa_prediction", "qa_attention", "qa_action", "qa_structured"}
    assert all(m == {"detailed", "concise"} for m in modes.values())


def test_motion_answers_are_in_the_agents_own_frame():
    # Heading +x at 2 m/s: in its own frame (heading = +y) it moves 1 m forward per half second.
    record = synthetic_record(agents=[("car", 5.0, 10.0, 2.0, 0.0)])
    (example,) = build_stage_examples("motion", [record])
    assert example.focus_track_id == 0
    assert example.answer == "[(0.00,1.00),(0.00,2.00),(0.00,3.00),(0.00,4.00),(0.00,5.00),(0.00,6.00)]"


def test_motion_sideways_drift_goes_to_own_x():
    # Heading +x (yaw 0) while drifting +y in the LiDAR frame = towards its left = own x < 0.
    record = synthetic_record(agents=[("car", 5.0, 10.0, 2.0, 0.0)])
    record.agent_future[0] = np.stack([np.full(NUM_FUTURE, 5.0), 10.0 + T], 1)
    (example,) = build_stage_examples("motion", [record])
    assert example.answer.startswith("[(-0.50,0.00),(-1.00,0.00),")


def test_motion_masked_steps_are_unknown():
    record = synthetic_record(agents=[("car", 5.0, 10.0, 2.0, 0.0)], future_valid=4)
    (example,) = build_stage_examples("motion", [record])
    assert example.answer.endswith(",(0.00,4.00),(UN,UN),(UN,UN)]")
    assert example.meta["future_mask"] == [True] * 4 + [False] * 2


def test_the_build_logs_how_many_samples_gave_none(caplog):
    records = [synthetic_record(token="cars", agents=[("car", 5.0, 10.0, 2.0, 0.0)]), synthetic_record(token="empty")]
    with caplog.at_level(logging.INFO, logger="vla_world.qa.examples"):
        examples = build_stage_examples("motion", records)
    assert [e.sample_token for e in examples] == ["cars"]
    assert "1 examples from 2 samples (agent_motion 1); 1 samples gave none" in caplog.text


def test_unknown_stage_is_a_readable_error():
    # planning examples have one home, vla_world.training.data.planning_examples; the error says so
    assert STAGES == ("align", "instruct", "motion")
    with pytest.raises(ValueError, match="unknown stage 'planning'.*align, instruct, motion.*training.data.planning_examples"):
        build_stage_examples("planning", scenes())


def assert_no_scene_leak(train_records, val_records):
    scene_of = {r.sample_token: r.scene_token for r in train_records + val_records}
    for stage in STAGES:
        train_scenes = {scene_of[e.sample_token] for e in build_stage_examples(stage, train_records)}
        val_scenes = {scene_of[e.sample_token] for e in build_stage_examples(stage, val_records)}
        assert train_scenes and val_scenes and not train_scenes & val_scenes


def test_examples_stay_in_the_split_of_their_sample():
    records = scenes(4)
    assert_no_scene_leak([r for r in records if r.scene_name == "scene-0"], [r for r in records if r.scene_name == "scene-1"])


def test_no_scene_in_both_splits_of_the_mini_world(mini_records):
    records = mini_records
    assert_no_scene_leak(records["train"], records["val"])


def test_a_bad_config_names_the_field():
    from vla_world.config import ConfigError

    with pytest.raises(ConfigError, match="max_range_m must be > 0"):
        build_stage_examples("align", scenes(), config=StageDataConfig(max_range_m=0))


def test_range_limits_which_agents_are_described():
    record = synthetic_record(agents=[("car", 0.0, 20.0, 0.0, 0.0), ("car", 0.0, 40.0, 0.0, 0.0)])
    near = build_stage_examples("align", [record], config=StageDataConfig(max_range_m=25.0))
    assert [e.focus_track_id for e in near if e.kind == "agent_caption"] == [0]
    far = build_stage_examples("align", [record], config=StageDataConfig(max_range_m=50.0))
    assert [e.focus_track_id for e in far if e.kind == "agent_caption"] == [0, 1]


@pytest.mark.parametrize(("field", "bad"), [("max_range_m", float("nan")), ("max_range_m", -5.0),
                                           ("max_agent_captions", -1), ("max_prediction_questions", -1),
                                           ("max_motion_agents", -1), ("motion_min_valid_steps", 0),
                                           ("motion_min_valid_steps", 7)])
def test_every_setting_is_checked_and_named(field, bad):
    from vla_world.config import ConfigError, config_from_dict

    # nan: the config check's finite-number rule names it first (vla_world.config), else the field's own rule
    expected = "not a finite number" if math.isnan(bad) else "must be"
    with pytest.raises(ConfigError, match=f"configs/instruct/x.yaml: data.qa[.:] ?{field}:? .*{expected}"):
        config_from_dict(StageDataConfig, {field: bad}, "configs/instruct/x.yaml: data.qa")


def test_every_setting_has_a_comment():
    import dataclasses
    import inspect

    from vla_world.qa import config

    lines = inspect.getsource(config.StageDataConfig).splitlines()
    for f in dataclasses.fields(StageDataConfig):
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{f.name}:"))
        assert lines[at - 1].strip().startswith("#"), f"StageDataConfig.{f.name} has no comment above it"
