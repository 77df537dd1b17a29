"""Closed-loop episodes (vla_world/mini_world/interactive.py, planning/closed_loop.py, tools/eval_closed_loop.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from planning.closed_loop import planner_input_at, route_command, run_episode
from planning.closed_loop_video import write_episode_gif
from vla_world.data.records import CMD_FORWARD
from vla_world.mini_world.interactive import (
    EPISODE_BEHAVIOURS,
    InteractiveTraffic,
    episode_setup,
)

DURATION = 8.0  # closed-loop seconds per test episode (the tool's default is 12)


def _still(inp):
    return np.zeros((6, 2))


def _straight_at_speed(inp):
    return np.stack([np.zeros(6), 12.0 * 0.5 * np.arange(1, 7)], axis=1)


@pytest.fixture(scope="module")
def episodes():
    return [episode_setup(i, DURATION + 2.0) for i in range(len(EPISODE_BEHAVIOURS))]


@pytest.fixture(scope="module")
def expert_runs(episodes):
    return [run_episode(e, None, "expert", DURATION) for e in episodes]


def test_expert_completes_its_routes_without_collisions(expert_runs):
    for run in expert_runs:
        m = run.metrics
        assert (m.collisions_at_fault, m.collisions_not_at_fault, m.red_lights, m.offroad_s) == (0, 0, 0, 0.0), run.episode
        assert m.route_completion == 1.0 and m.driving_score == 1.0


def test_standing_still_makes_no_progress_and_no_fault(episodes, expert_runs):
    for episode, expert in zip(episodes, expert_runs):
        m = run_episode(episode, _still, "still", DURATION, expert.metrics.progress_m).metrics
        assert m.collisions_at_fault == 0 and m.red_lights == 0 and m.offroad_s == 0.0
        assert m.progress_m < 15.0  # only its braking distance from the warm-up speed
        assert m.route_completion < 0.5 or expert.metrics.progress_m < 20.0  # the stop scenario's expert waits too


def test_driving_straight_at_speed_fails_the_turns(episodes, expert_runs):
    for episode, expert in zip(episodes, expert_runs):
        behaviour = episode.setup.behaviour
        m = run_episode(episode, _straight_at_speed, "straight", DURATION, expert.metrics.progress_m).metrics
        if behaviour.endswith("right"):  # a kerb-side turn: straight on runs off the road or into someone
            assert m.offroad_s > 0 or m.collisions_at_fault > 0, episode.name
        if behaviour == "left":  # across the junction onto the road ahead: on the road, but off its route
            assert m.route_completion < 0.8, episode.name
        if behaviour == "stop":  # through the red light
            assert m.red_lights >= 1 or m.collisions_at_fault > 0, episode.name


def test_runs_are_deterministic(episodes):
    from planning.kinematic import ctra_prior

    first = run_episode(episodes[1], ctra_prior, "ctra", 3.0).metrics
    assert run_episode(episodes[1], ctra_prior, "ctra", 3.0).metrics == first


def test_the_planner_input_is_built_from_the_past(episodes):
    episode = episodes[2]  # straight through a green junction
    traffic = InteractiveTraffic(episode.setup.traffic)
    run = run_episode(episode, None, "expert", 0.5)
    inp = planner_input_at(episode, run.frames[:-1], run.frames[-2].ego, traffic.t, 0)
    assert inp.ego_past_mask.all() and np.all(np.diff(inp.ego_past[:, 1]) > 0)  # driving forward: y grows
    assert abs(inp.ego_past[-1, 0]) < 0.5 and inp.ego_past[-1, 1] < 0  # the last past pose is right behind
    assert inp.ego_velocity[1] == pytest.approx(inp.ego_speed, rel=0.05)
    assert route_command(episode, inp.lidar2global, inp.ego_speed) == inp.command == CMD_FORWARD


def test_episode_gif(episodes, tmp_path):
    run = run_episode(episodes[0], _still, "still", 1.0)
    path = write_episode_gif(episodes[0], run, tmp_path / "ep.gif", with_camera=False)
    assert path.stat().st_size > 1000


def test_eval_closed_loop_tool(tmp_path):
    from tools.eval_closed_loop import main

    assert main(["--episodes", "1", "--duration", "2", "--planners", "expert", "cv", "still", "kinematic",
                 "--baselines", str(tmp_path / "none"), "--out", str(tmp_path), "--quiet"]) == 0
    data = json.loads((tmp_path / "closed_loop.json").read_text())
    assert [r["planner"] for r in data["rows"]] == ["Expert (IDM)", "Constant velocity", "Stand still"]
    assert data["rows"][0]["mean"]["route_completion"] == 1.0
    assert "| Stand still |" in (tmp_path / "closed_loop.md").read_text()


def test_sensor_feed_renders_the_cameras_and_lidar_where_the_ego_is(episodes, tmp_path):
    from planning.closed_loop import SensorFeed
    from vla_world.data.records import CAMERAS

    episode = episodes[2]
    traffic = InteractiveTraffic(episode.setup.traffic)
    run = run_episode(episode, None, "expert", 0.5)
    inp = planner_input_at(episode, run.frames[:-1], run.frames[-2].ego, traffic.t, 3)
    filled = SensorFeed(tmp_path, image_size=(96, 54)).fill(inp, episode, traffic, run.frames[-2].ego, "VLA")
    assert len(filled.camera_paths) == len(CAMERAS) and all((tmp_path / p).stat().st_size > 500 for p in filled.camera_paths)
    assert (tmp_path / filled.lidar_path).stat().st_size > 1000
    assert filled.camera_image_size.tolist() == [[96, 54]] * len(CAMERAS)
    front = filled.camera_sensor2lidar[0, :3, 3]  # CAM_FRONT sits ahead of the LiDAR (y forward in its frame)
    assert front[1] > 0.5 and abs(front[0]) < 0.2
    assert np.array_equal(filled.ego_past, inp.ego_past) and filled.command == inp.command  # only sensors change


def test_record_of_an_input_carries_it_and_no_labels(episodes):
    from tools.eval_closed_loop import record_of
    from vla_world.data.planner_input import planner_input

    run = run_episode(episodes[0], None, "expert", 0.5)
    inp = planner_input_at(episodes[0], run.frames[:-1], run.frames[-2].ego, 2.5, 0)
    record = record_of(inp)
    again = planner_input(record)
    assert again.sample_token == inp.sample_token and np.array_equal(again.ego_past, inp.ego_past)
    assert record.num_agents == 0 and not record.ego_future_mask.any() and len(record.map_polylines) == 0


def test_episode_names_differ_across_episode_sets():
    # sensor files are named after the episode: two sets must never share a file (the image cache keys on it)
    assert episode_setup(0, 3.0, seed=0).name != episode_setup(0, 3.0, seed=1).name
