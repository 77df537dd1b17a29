"""Tests of planning.occupancy: hand-drawn boxes, per-convention content, 255 frames, and GT = 0 collisions.

Cell arithmetic used below (UniAD layout): column = round((x + 50) / 0.5), row = round((y + 50) / 0.5),
and cv2.fillPoly fills an axis-aligned rectangle including its corner cells.
"""

from __future__ import annotations

import numpy as np
import pytest
from nuscenes.utils.data_classes import Box
from pyquaternion import Quaternion

from planning.metrics import CONVENTIONS, planning_metrics
from planning.occupancy import (
    IGNORE_VALUE,
    box_bottom_corners,
    rasterize_box,
    rasterize_occupancy,
    rasterize_targets,
)
from vla_world.data.synthetic import synthetic_record
from vla_world.data.targets import planning_targets, planning_targets_of


def filled_cells(grid: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(*np.nonzero(grid == 1)))


def rectangle(rows: range, cols: range) -> set[tuple[int, int]]:
    return {(r, c) for r in rows for c in cols}


def test_hand_drawn_box_covers_the_cells_computed_by_hand():
    # 4 m long along the heading (+y, yaw = pi/2) and 2 m wide, centred at (0, 10):
    # x in [-1, 1] -> cols 98..102; y in [8, 12] -> rows 116..124.
    grid = rasterize_box(np.array([0.0, 10.0, 0.0, 2.0, 4.0, 1.5, np.pi / 2]), np.zeros((200, 200), np.uint8))
    assert filled_cells(grid) == rectangle(range(116, 125), range(98, 103))


def test_yaw_zero_puts_the_length_along_x():
    # same box, heading +x: x in [-2, 2] -> cols 96..104, y in [9, 11] -> rows 118..122.
    grid = rasterize_box(np.array([0.0, 10.0, 0.0, 2.0, 4.0, 1.5, 0.0]), np.zeros((200, 200), np.uint8))
    assert filled_cells(grid) == rectangle(range(118, 123), range(96, 105))


def test_overlapping_boxes_fill_their_union():
    record = synthetic_record(5.0, [("car", 0.0, 10.0, 0.0, 0.0), ("car", 1.0, 11.0, 0.0, 0.0)])
    frame = rasterize_targets(planning_targets(record), "uniad")[0]
    # each parked car alone: x +-0.95, y +-2.3 around its centre
    first_step = record.future_box[record.future_box_step == 0]
    first = rasterize_box(first_step[0], np.zeros((200, 200), np.uint8))
    second = rasterize_box(first_step[1], np.zeros((200, 200), np.uint8))
    assert filled_cells(frame) == filled_cells(first) | filled_cells(second)
    assert filled_cells(first) & filled_cells(second)  # they do overlap


@pytest.mark.parametrize("yaw", [0.0, 0.3, -2.0, np.pi / 2])
def test_corners_match_the_devkit_box(yaw):
    box = np.array([1.0, 2.0, 0.5, 1.8, 4.5, 1.5, yaw])
    devkit = Box(box[:3], box[3:6], Quaternion(axis=[0, 0, 1], angle=yaw)).bottom_corners()[:2].T
    ours = box_bottom_corners(box)
    assert sorted(map(tuple, np.round(ours, 9))) == sorted(map(tuple, np.round(devkit, 9)))


def mixed_record(future_valid: int = 6):
    """A car ahead (track 0), a pedestrian to the right (track 1) and a police car (track 2)."""
    record = synthetic_record(5.0, [("car", 0.0, 10.0, 0.0, 2.0), ("pedestrian", 5.0, 5.0, 0.0, 0.0), ("car", -8.0, 0.0, 0.0, 0.0)], future_valid)
    record.future_box_category = np.where(record.future_box_track_id == 2, "vehicle.emergency.police", record.future_box_category)
    return record


def test_uniad_draws_the_moving_car_at_its_future_position():
    frames = rasterize_targets(planning_targets(mixed_record()), "uniad")
    # step 0 (t = 0.5 s): car at (0, 11), 1.9 m x 4.6 m, heading +y: x in [-0.95, 0.95] -> cols 98..102,
    # y in [8.7, 13.3] -> rows round(117.4) = 117 .. round(126.6) = 127. Nothing else is a UniAD vehicle.
    assert filled_cells(frames[0]) == rectangle(range(117, 128), range(98, 103))


def test_content_per_convention():
    record = mixed_record()
    pedestrian_cell = (110, 110)  # (x, y) = (5, 5)
    police_cell = (100, 84)  # (x, y) = (-8, 0)
    uniad, stp3, vad = (rasterize_targets(planning_targets(record), c)[0] for c in ("uniad", "stp3", "vad"))
    assert uniad[pedestrian_cell] == 0 and uniad[police_cell] == 0  # vehicles of the 7 classes only
    assert stp3[pedestrian_cell] == 1 and stp3[police_cell] == 1  # every vehicle.* and human.*
    assert vad[pedestrian_cell] == 1 and vad[police_cell] == 1
    record.context_track_ids = np.array([0, 2], np.int32)  # the pedestrian was not seen in the context frames
    assert rasterize_targets(planning_targets(record), "stp3")[0][pedestrian_cell] == 0
    assert rasterize_targets(planning_targets(record), "vad")[0][pedestrian_cell] == 1


def test_frames_past_the_scene_end_are_all_255():
    frames = rasterize_occupancy(planning_targets_of([mixed_record(future_valid=4)]), "uniad")[0]
    assert (frames[4:] == IGNORE_VALUE).all()
    assert set(np.unique(frames[:4]).tolist()) == {0, 1}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_gt_trajectory_scores_zero_on_rasterised_records(convention):
    # the GT ego drives at 5 m/s and closes in on the car ahead (2 m/s): its box overlaps it by 3 s.
    records = [mixed_record(), mixed_record(future_valid=3)]
    occupancy = rasterize_occupancy(planning_targets_of(records), convention)
    gt = np.stack([r.ego_future for r in records])
    mask = np.stack([r.ego_future_mask for r in records])
    assert planning_metrics(gt, gt, mask, occupancy, convention)["col_avg"] == 0.0
    # standing still at the origin, the ego box (rows 97..104, cols 98..101) misses everything drawn:
    # the car ahead (rows >= 117), the pedestrian (cols 109..111) and the police car (cols 82..86).
    assert planning_metrics(np.zeros_like(gt), gt, mask, occupancy, convention)["col_avg"] == 0.0


def test_planning_into_an_obstacle_is_a_collision():
    record = synthetic_record(0.0, [("car", 0.0, 10.0, 0.0, 0.0)])  # parked car 10 m ahead, ego stands
    occupancy = rasterize_occupancy([planning_targets(record)], "uniad")
    pred = np.zeros((1, 6, 2), np.float32)
    pred[0, :, 1] = 10.0  # drive onto the car
    res = planning_metrics(pred, record.ego_future[None], record.ego_future_mask[None], occupancy, "uniad")
    assert res["col_per_step"] == [1.0] * 6


def test_bad_record_and_convention_raise_readable_errors():
    record = mixed_record()
    with pytest.raises(ValueError, match="unknown"):
        rasterize_occupancy([planning_targets(record)], "nuplan")
    record.future_box_step = record.future_box_step[:-1]
    with pytest.raises(ValueError, match="future_box_step has"):
        rasterize_targets(planning_targets(record), "uniad")


def test_records_are_refused_with_the_fix():
    # the occupancy is what plans are scored against: it takes labels (PlanningTargets), never a record
    with pytest.raises(TypeError, match=r"planning_targets\(record\)"):
        rasterize_occupancy([mixed_record()], "uniad")


def test_tiny_mini_world_end_to_end(mini_records):
    records = mini_records["val"]
    gt = np.stack([r.ego_future for r in records])
    mask = np.stack([r.ego_future_mask for r in records])
    occupancy = {c: rasterize_occupancy(planning_targets_of(records), c) for c in CONVENTIONS}
    for convention, occ in occupancy.items():
        assert occ.shape == (len(records), 6, 200, 200) and occ.dtype == np.uint8
        assert ((occ == IGNORE_VALUE).all(axis=(2, 3)) == ~mask).all()  # 255 exactly past the scene end
        assert set(np.unique(occ[mask]).tolist()) <= {0, 1}
        assert planning_metrics(gt, gt, mask, occ, convention)["col_avg"] == 0.0
        standing = planning_metrics(np.zeros_like(gt), gt, mask, occ, convention)
        assert 0.0 <= standing["col_avg"] <= 1.0 and standing["L2_avg"] > 0.0
    # content: UniAD's 7 vehicle classes and ST-P3's context-seen agents are subsets of VAD's vehicles + humans
    live = occupancy["vad"][mask] == 1
    assert not ((occupancy["uniad"][mask] == 1) & ~live).any()
    assert not ((occupancy["stp3"][mask] == 1) & ~live).any()


def test_records_are_never_mutated():
    record = mixed_record(future_valid=5)
    before = {name: getattr(record, name).copy() for name in ("future_box", "future_box_step", "future_box_category", "context_track_ids", "ego_future_mask")}
    for convention in CONVENTIONS:
        rasterize_occupancy([planning_targets(record)], convention)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(record, name), value)
