"""The collision guard (planning.collision_guard): forecasts, re-timing, the choice rule, golden scenes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planning.collision_guard import (
    SLOWER_FRACTIONS,
    PerceivedAgents,
    choose_candidate,
    forecast_occupancy,
    guard_candidate_name,
    guard_candidates,
    guard_plan,
    retimed,
)
from planning.metrics import box_collisions
from planning.occupancy import GRID_CELLS
from vla_world.data.records import DETECTION_CLASSES, FUTURE_SECONDS

CAR, CONE = DETECTION_CLASSES.index("car"), DETECTION_CLASSES.index("traffic_cone")
STRAIGHT = np.stack([np.zeros(6), 2.0 * FUTURE_SECONDS * 2], axis=1)  # 4 m/s ahead: y = 2, 4, ..., 12 m


def agents(*rows: tuple[float, float, float, float, int]) -> PerceivedAgents:
    """Agents from (x, y, vx, vy, class) rows; every box 1.9 m wide, 4.5 m long, heading forward (yaw pi/2)."""
    boxes = np.array([[x, y, 0.0, 1.9, 4.5, 1.6, np.pi / 2] for x, y, *_ in rows]).reshape(-1, 7)
    velocities = np.array([[vx, vy] for _, _, vx, vy, _ in rows]).reshape(-1, 2)
    return PerceivedAgents(boxes, velocities, np.array([c for *_, c in rows], np.int64))


def test_a_free_plan_is_returned_unchanged():
    plan, chosen = guard_plan(STRAIGHT, None, agents((10.0, 5.0, 0.0, 0.0, CAR)))  # a parked car 10 m to the right
    assert chosen == 0 and np.array_equal(plan, STRAIGHT)


def test_no_agents_keeps_the_plan():
    plan, chosen = guard_plan(STRAIGHT, STRAIGHT * 0, agents())
    assert chosen == 0 and np.array_equal(plan, STRAIGHT)


def test_a_stopped_car_ahead_makes_the_plan_brake():
    # the plan reaches y = 12 m; a stopped car centred 11 m ahead blocks the last steps only; so does the prior,
    # the same plan here, so the guard falls back to braking
    car = agents((0.0, 11.0, 0.0, 0.0, CAR))
    plan, chosen = guard_plan(STRAIGHT, STRAIGHT, car)
    assert chosen > 1
    assert np.array_equal(plan, retimed(STRAIGHT, SLOWER_FRACTIONS[chosen - 2]))
    assert not box_collisions(plan[None], forecast_occupancy(car)[None], "uniad").any()
    assert guard_candidate_name(chosen).startswith("the plan's path at")
    no_prior, chosen = guard_plan(STRAIGHT, None, car)
    assert np.array_equal(no_prior, retimed(STRAIGHT, SLOWER_FRACTIONS[chosen - 1]))


def test_the_prior_comes_before_braking():
    # a stopped car 11 m ahead: braking would free the plan too, but the prior, 3 to 8 m to the left, is tried first
    prior = np.stack([-np.linspace(3.0, 8.0, 6), np.zeros(6)], axis=1)
    plan, chosen = guard_plan(STRAIGHT, prior, agents((0.0, 11.0, 0.0, 0.0, CAR)))
    assert chosen == 1 and np.array_equal(plan, prior) and guard_candidate_name(1) == "the CTRA prior"


def test_static_clutter_is_not_guarded():
    plan, chosen = guard_plan(STRAIGHT, None, agents((0.0, 11.0, 0.0, 0.0, CONE)))
    assert chosen == 0 and np.array_equal(plan, STRAIGHT)


def test_a_car_that_moves_away_is_no_conflict():
    # 8 m ahead now, but driving away at 6 m/s: it stays ahead of a 4 m/s plan
    _, chosen = guard_plan(STRAIGHT, None, agents((0.0, 8.0, 0.0, 6.0, CAR)))
    assert chosen == 0


def test_forecast_moves_each_box_by_velocity_times_time():
    occupancy = forecast_occupancy(agents((-20.0, 0.0, 4.0, 0.0, CAR)))  # 4 m/s to the right
    for step, seconds in enumerate(FUTURE_SECONDS):
        cols = np.nonzero(occupancy[step].any(axis=0))[0]
        centre = (cols.min() + cols.max()) / 2 * 0.5 - 50.0  # column index -> x metres (UniAD layout)
        assert centre == pytest.approx(-20.0 + 4.0 * seconds, abs=0.5)


def test_all_colliding_picks_the_latest_first_collision_earliest_on_ties():
    occupancy = np.zeros((6, GRID_CELLS, GRID_CELLS), np.uint8)
    occupancy[:, 95:110, 95:105] = 1  # the ego's own cells at every step: everything collides at step 0
    candidates = np.zeros((3, 6, 2))
    assert choose_candidate(candidates, occupancy) == 0
    occupancy[0] = 0  # now every candidate's first hit is step 1; still the first one
    assert choose_candidate(candidates, occupancy) == 0
    candidates[2, 1:] = [30.0, 0.0]  # candidate 2 leaves the block after step 0
    assert choose_candidate(candidates, occupancy) == 2


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=12, max_size=12), st.floats(0.0, 1.0))
def test_retimed_plan_follows_the_path(values, fraction):
    plan = np.cumsum(np.array(values).reshape(6, 2), axis=0)
    slowed = retimed(plan, fraction)
    assert slowed.shape == (6, 2) and np.isfinite(slowed).all()
    np.testing.assert_allclose(retimed(plan, 1.0), plan, atol=1e-12)
    np.testing.assert_allclose(retimed(plan, 0.0), 0.0, atol=1e-12)
    np.testing.assert_allclose(retimed(plan, 0.5)[1::2], plan[:3], atol=1e-12)  # half speed: t = 1 s is the plan's 0.5 s
    # a slower plan never drives farther along the path than the plan itself
    def length(points: np.ndarray) -> float:
        return float(np.linalg.norm(np.diff(np.concatenate([np.zeros((1, 2)), points]), axis=0), axis=1).sum())
    assert length(slowed) <= length(plan) + 1e-9


def test_candidates_are_plan_prior_then_slower_plans():
    prior = np.ones((6, 2))
    candidates = guard_candidates(STRAIGHT, prior)
    assert candidates.shape == (len(SLOWER_FRACTIONS) + 2, 6, 2)
    assert np.array_equal(candidates[0], STRAIGHT) and np.array_equal(candidates[1], prior)
    assert np.array_equal(candidates[-1], retimed(STRAIGHT, SLOWER_FRACTIONS[-1]))
    assert len(guard_candidates(STRAIGHT, None)) == len(SLOWER_FRACTIONS) + 1


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(A, 7\)"):
        PerceivedAgents(np.zeros((2, 6)), np.zeros((2, 2)), np.zeros(2, np.int64))


def test_non_finite_agents_are_skipped():
    bad = agents((0.0, 11.0, 0.0, 0.0, CAR))
    bad = PerceivedAgents(bad.boxes, np.full((1, 2), np.nan), bad.classes)
    assert not forecast_occupancy(bad).any()
