"""Kinematic short-term predictor (VLA-World supp. eqs. 3-5) on hand-computed numbers, and its fit."""

from __future__ import annotations

import numpy as np
import pytest

from planning.kinematic import (
    HORIZONS,
    KinematicParams,
    finite_difference_state,
    fit_command_templates,
    fit_kinematic,
    goal_acceleration,
    kinematic_position,
    predict_kinematic,
)
from vla_world.data.records import CMD_FORWARD, CMD_LEFT
from vla_world.data.synthetic import synthetic_record

# Past poses at t = -2.0, -1.5, -1.0, -0.5 s (only the last two matter); current pose (0, 0).
PAST = np.array([[9.0, 9.0], [9.0, 9.0], [-1.5, -7.5], [-0.5, -4.0]])
# By hand: v_t = (0 - (-0.5), 0 - (-4.0)) / 0.5 = (1, 8);  v_{t-1} = (-0.5 + 1.5, -4.0 + 7.5) / 0.5 = (2, 7)
#          a_hist = ((1 - 2) / 0.5, (8 - 7) / 0.5) = (-2, 2)
V_T, A_HIST = np.array([1.0, 8.0]), np.array([-2.0, 2.0])


def test_eq3_finite_differences():
    velocity, acceleration = finite_difference_state(PAST, np.ones(4, bool), fallback_velocity=np.zeros(2))
    np.testing.assert_allclose(velocity, V_T)
    np.testing.assert_allclose(acceleration, A_HIST)


def test_eq3_short_history_fallbacks():
    fallback = np.array([0.3, 4.0])
    velocity, acceleration = finite_difference_state(PAST, np.array([0, 0, 0, 0], bool), fallback)
    np.testing.assert_allclose(velocity, fallback)
    np.testing.assert_allclose(acceleration, 0.0)
    velocity, acceleration = finite_difference_state(PAST, np.array([0, 0, 0, 1], bool), fallback)
    np.testing.assert_allclose(velocity, V_T)
    np.testing.assert_allclose(acceleration, 0.0)


def test_eq4_goal_acceleration():
    # a_goal = 2 / tau^2 (dP - v tau) = 2 / 1 * ((3, 10) - (1, 8)) = (4, 4)
    np.testing.assert_allclose(goal_acceleration(np.array([3.0, 10.0]), V_T, tau=1.0), [4.0, 4.0])
    # tau = 0.5: 2 / 0.25 * ((1, 4) - (0.5, 4)) = (4, 0)
    np.testing.assert_allclose(goal_acceleration(np.array([1.0, 4.0]), V_T, tau=0.5), [4.0, 0.0])


def test_eq5_fused_position():
    # a_eff = 0.75 (-2, 2) + 0.25 (4, 4) = (-0.5, 2.5);  P = (1, 8) * 1 + 0.5 (-0.5, 2.5) = (0.75, 9.25)
    position = kinematic_position(V_T, A_HIST, np.array([4.0, 4.0]), fusion_weight=0.25, tau=1.0)
    np.testing.assert_allclose(position, [0.75, 9.25])


def _record_with_past(past: np.ndarray, command: int = CMD_FORWARD):
    record = synthetic_record(speed=8.0, command=command)
    record.ego_past = past.astype(np.float32)
    return record


def test_rollout_lambda_zero_is_constant_acceleration():
    params = KinematicParams(0.0, np.tile([0.0, 1.0], (3, 6, 1)))
    waypoints = predict_kinematic(_record_with_past(PAST), params)
    # tau = 0.5: (1 * 0.5 - 0.5 * 2 * 0.25, 8 * 0.5 + 0.5 * 2 * 0.25) = (0.25, 4.25); tau = 3: (3 - 9, 24 + 9)
    np.testing.assert_allclose(waypoints[0], [0.25, 4.25])
    np.testing.assert_allclose(waypoints[5], [-6.0, 33.0])


def test_rollout_lambda_one_reaches_the_ideal_displacement():
    templates = np.tile([0.0, 1.0], (3, 6, 1))
    templates[CMD_LEFT] = [-0.2, 0.9]
    waypoints = predict_kinematic(_record_with_past(PAST, CMD_LEFT), KinematicParams(1.0, templates))
    speed = np.hypot(1.0, 8.0)  # |v_t| from the finite difference
    np.testing.assert_allclose(waypoints, speed * HORIZONS[:, None] * np.array([[-0.2, 0.9]]))


def test_template_fit_by_hand():
    # One left-turn record, v_t = (0, 4): step k has tau = k / 2, s tau = 2k and GT (-0.2k, 2k),
    # so the least-squares template is g / (s tau) = (-0.1, 1) at every step.
    record = synthetic_record(speed=4.0, command=CMD_LEFT)
    k = np.arange(1, 7)
    record.ego_future = np.stack([-0.2 * k, 2.0 * k], 1).astype(np.float32)
    templates = fit_command_templates([record])
    np.testing.assert_allclose(templates[CMD_LEFT], np.tile([-0.1, 1.0], (6, 1)), atol=1e-6)
    # Unseen commands keep the straight-ahead template.
    np.testing.assert_allclose(templates[CMD_FORWARD], np.tile([0.0, 1.0], (6, 1)))


def test_fit_picks_intention_when_history_misleads():
    # Constant-speed GT, but the pose at -1.0 s implies a speed of 8 m/s before, so a_hist != 0
    # and only lambda = 1 (pure intention) is exact.
    records = []
    for i, speed in enumerate((4.0, 6.0, 9.0)):
        record = synthetic_record(speed=speed, token=f"s{i}")
        record.ego_past[-2] = (0.0, -speed * 0.5 - 4.0)
        records.append(record)
    params = fit_kinematic(records)
    assert params.fusion_weight == 1.0
    assert params.train_l2 == pytest.approx(0.0, abs=1e-5)
    assert params.num_train_samples == 3


def test_params_json_round_trip(tmp_path):
    templates = np.random.default_rng(0).normal(size=(3, 6, 2))
    params = KinematicParams(0.35, templates, num_train_samples=12, train_l2=0.5)
    loaded = KinematicParams.load(params.save(tmp_path / "params.json"))
    assert loaded.fusion_weight == 0.35 and loaded.num_train_samples == 12
    np.testing.assert_allclose(loaded.command_templates, templates, atol=1e-5)


def test_fit_without_records_is_a_readable_error():
    with pytest.raises(ValueError, match="no training records"):
        fit_kinematic([])
