"""The controller and the pseudo-simulation score (planning/tracking.py, planning/pdm_score.py, pdm_eval.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import shapely

from planning.kinematic import ctra_rollout
from planning.pdm_eval import evaluate_pdm, pdm_markdown, pdm_scene, summarise_pdm
from planning.pdm_score import (
    FAILED,
    PdmResult,
    _comfort,
    box_corners,
    scorable,
    score_plan,
)
from planning.predictions import Predictions, save_predictions
from planning.tracking import EgoState, track
from vla_world.data.drivable_area import DrivableAreas
from vla_world.data.targets import PlanningTargets

TRACKING_ERROR_M = 0.25  # the stated bound: kinematically feasible plans are followed within this


@pytest.mark.parametrize("speed", [0.0, 3.0, 8.0, 14.0])
@pytest.mark.parametrize("yaw_rate", [0.0, 0.2, -0.3])
@pytest.mark.parametrize("accel", [0.0, 1.5, -2.0])
def test_controller_follows_feasible_plans_within_the_stated_error(speed, yaw_rate, accel):
    plan = ctra_rollout(np.array([0.0, speed]), np.array([0.0, accel]), yaw_rate)
    rollout = track(plan, EgoState(speed, accel))
    assert np.linalg.norm(rollout.at_plan_times() - plan, axis=1).max() < TRACKING_ERROR_M
    assert rollout.xy.shape == (31, 2) and np.all(rollout.speed >= 0)


def test_controller_cannot_stop_instantly_nor_reverse():
    rollout = track(np.zeros((6, 2)), EgoState(10.0))
    assert rollout.xy[-1, 1] > 5.0  # 10 m/s needs metres to stop at the 8 m/s^2 limit
    assert rollout.speed[-1] == 0.0 and np.all(np.diff(rollout.xy[:, 1]) >= -1e-9)


def test_box_corners_golden():
    corners = box_corners(np.array([1.0, 2.0]), np.array(np.pi / 2), 4.0, 2.0)
    expected = np.array([[0.0, 4.0], [2.0, 4.0], [2.0, 0.0], [0.0, 0.0]])
    assert corners == pytest.approx(expected, abs=1e-12)


def test_pdms_formula_and_failure_scores_zero():
    assert PdmResult(1, 1, 1, 1, 1).score == 1.0
    assert PdmResult(1, 1, 0.5, 1, 0).score == pytest.approx((5 + 2.5) / 12)
    assert PdmResult(0.5, 1, 1, 1, 1).score == 0.5
    assert FAILED.score == 0.0


def _straight_scene(agent_y: float | None = None, category: str = "vehicle.car", speed: float = 10.0):
    """Ego driving straight at `speed` on a wide road; optionally one agent parked at (0, agent_y)."""
    future = np.stack([np.zeros(6), speed * 0.5 * np.arange(1, 7)], axis=1)
    boxes = np.array([[0.0, agent_y, 0.0, 1.9, 4.5, 1.6, np.pi / 2]]) if agent_y is not None else np.zeros((0, 7))
    steps = np.repeat(np.arange(6), len(boxes)).astype(np.int8)
    targets = PlanningTargets(
        sample_token="s", command=2, ego_past_mask=np.ones(4, bool), ego_future=future, ego_future_yaw=np.full(6, np.pi / 2),
        ego_future_mask=np.ones(6, bool), agent_track_id=np.arange(len(boxes), dtype=np.int32),
        agent_class=np.zeros(len(boxes), np.int8), agent_box=boxes, agent_future=np.zeros((len(boxes), 6, 2)),
        agent_future_yaw=np.zeros((len(boxes), 6)), agent_future_mask=np.zeros((len(boxes), 6), bool),
        future_box_step=steps, future_box=np.repeat(boxes, 6, axis=0), future_box_category=np.array([category] * len(steps)),
        future_box_track_id=np.zeros(len(steps), np.int32), future_box_visibility=np.full(len(steps), 4, np.int8),
        context_track_ids=np.zeros(0, np.int32))
    road = shapely.box(-6.0, -20.0, 6.0, 80.0)
    return targets, EgoState(speed), road


def test_logged_straight_drive_scores_one():
    targets, start, road = _straight_scene()
    assert score_plan(targets.ego_future, start, targets, road).as_dict() == {
        "NC": 1.0, "DAC": 1.0, "EP": 1.0, "TTC": 1.0, "C": 1.0, "PDMS": 1.0}


def test_driving_into_a_parked_car_is_an_at_fault_collision():
    targets, start, road = _straight_scene()
    blocked = _straight_scene(agent_y=30.0)[0]
    # the logged ego passes through the car too: annotation overlap, not counted (module doc) ...
    assert score_plan(targets.ego_future, start, blocked, road).NC == 1.0
    # ... but when the logged ego brakes before it, a plan that brakes is safe and one that drives on is not
    braking = ctra_rollout(np.array([0.0, 10.0]), np.array([0.0, -2.5]), 0.0)
    other = replace(blocked, ego_future=braking)
    assert score_plan(braking, start, other, road).NC == 1.0
    assert score_plan(targets.ego_future, start, other, road).NC == 0.0
    assert score_plan(targets.ego_future, start, other, road).TTC == 0.0


def test_static_object_collision_halves_nc():
    braking = ctra_rollout(np.array([0.0, 10.0]), np.array([0.0, -2.5]), 0.0)
    targets, start, road = _straight_scene(agent_y=30.0, category="movable_object.trafficcone")
    targets = replace(targets, ego_future=braking, agent_class=np.array([9], np.int8))
    straight = np.stack([np.zeros(6), 5.0 * np.arange(1, 7)], axis=1)
    assert score_plan(straight, start, targets, road).NC == 0.5


def test_leaving_the_road_and_standing_still():
    targets, start, road = _straight_scene()
    swerve = targets.ego_future + np.array([[0.0, 0], [1, 0], [3, 0], [6, 0], [9, 0], [12, 0]])
    assert score_plan(swerve, start, targets, road).DAC == 0.0
    still = score_plan(np.zeros((6, 2)), start, targets, road)
    assert still.NC == 1.0 and still.EP < 0.4  # stopping from 10 m/s (jerk-limited) still rolls ~10 m of 30
    assert _comfort(track(np.zeros((6, 2)), start)) == 0.0  # an 8 m/s^2 stop is not comfortable


def test_incomplete_futures_are_not_scored():
    targets, _, _ = _straight_scene()
    assert scorable(targets)
    assert not scorable(replace(targets, ego_future_mask=np.array([1, 1, 1, 1, 0, 0], bool)))


@pytest.fixture(scope="module")
def scenes(mini_world, mini_records):
    areas = DrivableAreas(mini_world)
    return [pdm_scene(r, areas) for r in mini_records["val"]]


def test_ground_truth_is_safe_and_scores_one_where_comfortable(scenes, mini_records):
    rows = evaluate_pdm(scenes, {}, with_gt=True, progress=False)
    gt = rows[0].scores
    assert gt["NC"] == gt["DAC"] == gt["EP"] == gt["TTC"] == 1.0
    for scene in scenes[:12]:
        if scorable(scene.targets) and _comfort(track(scene.targets.ego_future, scene.start)):
            assert score_plan(scene.targets.ego_future, scene.start, scene.targets, scene.drivable).score == 1.0


def test_failed_answers_score_zero_and_runs_summarise(scenes, mini_records):
    tokens = [s.targets.sample_token for s in scenes]
    gt = {s.targets.sample_token: s.targets.ego_future for s in scenes}
    broken = Predictions(failures={t: "no trajectory found" for t in tokens})
    rows = evaluate_pdm(scenes, {"GT copy": [Predictions(trajectories=gt, meta={"seed": 0}),
                                             Predictions(trajectories=gt, meta={"seed": 1})],
                                 "Broken": broken}, progress=False)
    summary = {r.method: r for r in summarise_pdm(rows)}
    assert summary["GT copy"].num_runs == 2 and summary["GT copy"].std["PDMS"] == 0.0
    assert summary["Broken"].mean["PDMS"] == 0.0 and summary["Broken"].failed_mean == summary["Broken"].num_samples
    assert "| GT copy (2 seeds) |" in pdm_markdown(rows)


def test_eval_tool_writes_the_pdms_table(mini_world, mini_records, tmp_path):
    from tools.eval_planning import main

    still = {r.sample_token: np.zeros((6, 2)) for r in mini_records["val"]}
    save_predictions(tmp_path / "still.json", still)
    assert main(["--dataroot", str(mini_world), "--pred", str(tmp_path / "still.json"), "--with-gt",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "eval" / "pdms.json").read_text())
    assert [r["method"] for r in rows] == ["still", "GT (sanity)"]
    assert rows[0]["scores"]["EP"] < rows[1]["scores"]["EP"] == 1.0
    assert "## Pseudo-simulation (PDMS)" in (tmp_path / "eval" / "report.md").read_text()
