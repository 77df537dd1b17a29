"""Questions read the planner's input only (vla_world/qa/questions.py): labels never change a question.

A question is part of the prompt. Building the examples from records whose labels are wrecked
(futures nan, current boxes moved) must give the same questions, id for id; the answers may change.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_qa_labels import with_crosswalk

from vla_world.data.records import CMD_RIGHT
from vla_world.data.synthetic import synthetic_record
from vla_world.qa import STAGES, build_stage_examples


def busy_scenes():
    """Samples with cars, pedestrians and a crosswalk, some braking, turning or near a scene end."""
    agents = [("car", 0.0, 12.0, 0.0, 0.0), ("car", 3.5, 20.0, 0.0, 6.0), ("pedestrian", 6.5, 13.0, -1.2, 0.0),
              ("pedestrian", -4.0, 6.0, 0.0, 1.0), ("bicycle", -2.0, -8.0, 0.0, 4.0), ("truck", -3.5, 25.0, 0.0, -5.0)]
    records = []
    for i in range(4):
        record = synthetic_record(speed=2.0 + 2 * i, agents=agents[i:] + agents[:i], token=f"busy{i}",
                                  future_valid=6 - i, command=CMD_RIGHT if i == 2 else 2)
        records.append(with_crosswalk(record, 10.0 + i, 13.5 + i))
    return records


def without_futures(record):
    """The record with every future label replaced by nan (masks kept: which examples exist may use them)."""
    return replace(record, ego_future=np.full_like(record.ego_future, np.nan),
                   ego_future_yaw=np.full_like(record.ego_future_yaw, np.nan),
                   agent_future=np.full_like(record.agent_future, np.nan),
                   agent_future_yaw=np.full_like(record.agent_future_yaw, np.nan),
                   future_box=np.full_like(record.future_box, np.nan))


def with_moved_boxes(record, shift_m: float = 0.3):
    """The record with every current box moved sideways (ground truth of now that a prompt must not read)."""
    boxes = record.agent_box.copy()
    boxes[:, 0] += shift_m
    return replace(record, agent_box=boxes)


def questions_of(stage, records):
    return {e.example_id: (e.question, e.focus_track_id) for e in build_stage_examples(stage, records, seed=3)}


@pytest.mark.parametrize("stage", STAGES)
def test_questions_do_not_read_the_future(stage):
    records = busy_scenes()
    real = questions_of(stage, records)
    assert real and questions_of(stage, [without_futures(r) for r in records]) == real


@pytest.mark.parametrize("stage", STAGES)
def test_questions_do_not_read_the_ground_truth_boxes_of_now(stage):
    records = busy_scenes()
    assert questions_of(stage, [with_moved_boxes(r) for r in records]) == questions_of(stage, records)


def test_the_answers_do_read_the_labels():
    """The two checks above could pass by building nothing from the records; the answers must change."""
    records = busy_scenes()
    real = {e.example_id: e.answer for e in build_stage_examples("motion", records)}
    blind = {e.example_id: e.answer for e in build_stage_examples("motion", [without_futures(r) for r in records])}
    assert real.keys() == blind.keys() and all(real[i] != blind[i] for i in real)


def test_mini_world_questions_do_not_read_the_future(mini_records):
    records = mini_records["val"]
    for stage in STAGES:
        real = questions_of(stage, records)
        assert real and questions_of(stage, [without_futures(r) for r in records]) == real, stage
