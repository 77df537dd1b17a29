"""Golden, property and equivalence tests of planning.metrics (the spec: /work/shared/specs/planning_metrics.md).

Every expected number below is derived by hand in the comment next to it from the reference
formulas: ego footprint rows 97..104 x cols 98..101 at the origin, moved by floor(2y) rows and
floor(2 s x) cols; UniAD occupancy cell (row, col) covers y in [0.5 row - 50.25, 0.5 row - 49.75)
and x likewise with col.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planning.metrics import (
    CONVENTIONS,
    box_collisions,
    ego_footprint,
    planning_metrics,
)
from planning.reference_loop import reference_planning_metrics

STEPS = 6


def empty_occupancy(n: int = 1) -> np.ndarray:
    return np.zeros((n, STEPS, 200, 200), np.uint8)


def still(n: int = 1, x: float = 0.0, y: float = 0.0, dtype=np.float32) -> np.ndarray:
    """n trajectories that stay at (x, y) for all 6 steps."""
    return np.tile(np.array([x, y], dtype), (n, STEPS, 1))


def one_step_hit(point: tuple[float, float], cell: tuple[int, int], convention: str) -> bool:
    """Does the ego box at `point` hit a single obstacle at UniAD cell `cell` (row, col)?"""
    occ = empty_occupancy()
    occ[0, 0][cell] = 1
    return bool(box_collisions(still(1, *point), occ, convention)[0, 0])


# ---------------------------------------------------------------- footprint and box test

def test_footprint_is_the_32_cells_of_the_spec():
    rows, cols = ego_footprint()
    assert sorted(set(rows.tolist())) == list(range(97, 105))
    assert sorted(set(cols.tolist())) == list(range(98, 102))
    assert len(rows) == 32


@pytest.mark.parametrize(
    "point, cell, convention, expected",
    [
        # uniad: cols 98..101 at x = 0; col 101 is the box's last column, 102 just outside.
        ((0.0, 0.0), (100, 101), "uniad", True),
        ((0.0, 0.0), (100, 102), "uniad", False),
        ((0.49, 0.0), (100, 102), "uniad", False),  # floor(0.98) = 0: the box lags by up to a cell
        ((0.5, 0.0), (100, 102), "uniad", True),  # floor(1.0) = 1: cols 99..102
        ((0.0, 0.0), (104, 100), "uniad", True),  # front row 104
        ((0.0, 0.0), (105, 100), "uniad", False),
        ((0.0, 0.0), (96, 100), "uniad", False),  # rear row 97
        # stp3 (OpenDriveVLA flip): reads UniAD cols {98..101} + ceil(2x): one column off at x = 0.25.
        ((0.25, 0.0), (100, 102), "uniad", False),
        ((0.25, 0.0), (100, 102), "stp3", True),
        ((0.0, 0.0), (100, 102), "stp3", False),
        # stp3_original (ST-P3's own left-positive grid, col' = 200 - col): reads {99..102} + ceil(2x).
        ((0.0, 0.0), (100, 102), "stp3_original", True),
        ((0.0, 0.0), (100, 98), "stp3_original", False),
        # vad: rows 200 - (R + 2y) on its front-first grid = UniAD rows R + ceil(2y): one row off at y = 0.25.
        ((0.0, 0.25), (105, 100), "uniad", False),
        ((0.0, 0.25), (105, 100), "vad", True),
        ((0.0, 0.0), (105, 100), "vad", False),
        ((0.25, 0.0), (100, 102), "vad", False),  # columns as UniAD
    ],
)
def test_box_hits_one_cell_in_or_out(point, cell, convention, expected):
    assert one_step_hit(point, cell, convention) is expected


@pytest.mark.parametrize("convention", ["uniad", "stp3"])
def test_off_grid_box_is_clamped_onto_the_border(convention):
    # 80 m ahead: rows 97+160.. clip to 199; an obstacle in the top row at col 100 is "hit".
    assert one_step_hit((0.0, 80.0), (199, 100), convention)
    # 80 m to the left: cols clip to UniAD col 0 (the flip maps its col 199 back to UniAD col 0).
    assert one_step_hit((-80.0, 0.0), (100, 0), convention)
    assert not one_step_hit((-80.0, 0.0), (100, 1), convention)


# ---------------------------------------------------------------- L2, masks, sample sets

def l2_case():
    """Sample A: error (3, 4) = 5 m at every step. Sample B: error t m at step t, steps 5-6 masked."""
    gt = np.zeros((2, STEPS, 2), np.float32)
    gt[:, :, 1] = np.arange(1, 7) * 2.0
    pred = gt.copy()
    pred[0] += np.array([3.0, 4.0], np.float32)
    pred[1, :, 1] += np.arange(1, 7)
    mask = np.ones((2, STEPS), np.int64)
    mask[1, 4:] = 0
    return pred, gt, mask


def test_uniad_l2_is_the_masked_value_at_1_2_3_s():
    res = planning_metrics(*l2_case(), empty_occupancy(2), "uniad")
    # per step: (5 + t) / 2 for t <= 4, then (5 + 0) / 2: the masked steps count 0 error but stay in N.
    assert res["L2_per_step"] == pytest.approx([3.0, 3.5, 4.0, 4.5, 2.5, 2.5])
    assert (res["L2_1s"], res["L2_2s"], res["L2_3s"]) == pytest.approx((3.5, 4.5, 2.5))
    assert res["L2_avg"] == pytest.approx(3.5)
    assert res["num_samples"] == 2


def test_stp3_l2_is_the_mean_up_to_1_2_3_s():
    res = planning_metrics(*l2_case(), empty_occupancy(2), "stp3")
    # mean(3, 3.5) ; mean(3 .. 4.5) ; mean of all six = 20 / 6
    assert (res["L2_1s"], res["L2_2s"], res["L2_3s"]) == pytest.approx((3.25, 3.75, 20 / 6))
    assert res["L2_avg"] == pytest.approx((3.25 + 3.75 + 20 / 6) / 3)


@pytest.mark.parametrize("convention", ["stp3_original", "vad"])
def test_full_future_conventions_drop_incomplete_samples_and_ignore_the_mask(convention):
    res = planning_metrics(*l2_case(), empty_occupancy(2), convention)
    assert res["num_samples"] == 1  # sample B has only 4 future steps
    assert (res["L2_1s"], res["L2_2s"], res["L2_3s"], res["L2_avg"]) == pytest.approx((5.0, 5.0, 5.0, 5.0))


def test_uniad_accepts_its_own_per_coordinate_mask():
    pred, gt, mask = l2_case()
    res2 = planning_metrics(pred, gt, mask, empty_occupancy(2), "uniad")
    res3 = planning_metrics(pred, gt, np.repeat(mask[..., None], 2, -1), empty_occupancy(2), "uniad")
    assert res2["L2_per_step"] == res3["L2_per_step"]


# ---------------------------------------------------------------- collision rate and GT exclusion

def collision_case():
    """3 samples. Obstacle at UniAD cell (100, 103) (x in [1.25, 1.75), y ~ 0) in every frame.

    GT stays at the origin (box cols 98..101: free). pred: sample 0 at x = 1.0 (cols 100..103: hit
    at every step); sample 1 at x = 0 (free); sample 2 at x = 1.0 but its GT box collides with a
    second obstacle at (100, 99) in steps 1-3 only, so only its steps 4-6 count.
    """
    occ = empty_occupancy(3)
    occ[:, :, 100, 103] = 1
    occ[2, :3, 100, 99] = 1
    gt = still(3)
    pred = still(3)
    pred[[0, 2], :, 0] = 1.0
    return pred, gt, np.ones((3, STEPS)), occ


def test_uniad_collision_rate_with_gt_exclusion():
    res = planning_metrics(*collision_case(), "uniad")
    # steps 1-3: sample 0 only -> 1/3; steps 4-6: samples 0 and 2 -> 2/3 (N stays 3 throughout)
    assert res["col_per_step"] == pytest.approx([1 / 3] * 3 + [2 / 3] * 3)
    assert (res["col_1s"], res["col_2s"], res["col_3s"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))
    assert res["gt_collision_steps"] == 3
    assert res["gt_collision_samples"] == 1  # sample 2


def test_stp3_collision_rate_is_the_mean_up_to():
    res = planning_metrics(*collision_case(), "stp3")
    # same hits on the flipped grid (x = 1.0 is a whole cell); up to 1 s: 1/3, 2 s: (2/3 + 2*2/3)/4 ...
    assert res["col_per_step"] == pytest.approx([1 / 3] * 3 + [2 / 3] * 3)
    assert (res["col_1s"], res["col_2s"], res["col_3s"]) == pytest.approx((1 / 3, 5 / 12, 1 / 2))


def test_vad_averages_per_valid_sample():
    pred, gt, mask, occ = collision_case()
    mask[1, 5] = 0  # sample 1 (no collision) loses its last step: VAD skips it in sum and count
    res = planning_metrics(pred, gt, mask, occ, "vad")
    # samples 0 and 2: per-step hit rates 1/2 (steps 1-3), 1 (steps 4-6)
    assert res["num_samples"] == 2
    assert (res["col_1s"], res["col_2s"], res["col_3s"]) == pytest.approx((1 / 2, 5 / 8, 3 / 4))
    assert "obj_col_1s" not in res  # VAD's point lookup is ~25 m off in its code: not reported


def test_point_collision_adds_the_raw_value_and_truncates_toward_zero():
    occ = empty_occupancy(2)
    occ[:, 0, 99, 0] = 2  # the left-most column; the value 2 is added as is (spec §7.13)
    pred = still(2, y=0.0)
    pred[0, :, 0] = -50.2  # (-50.2 + 49.75) / 0.5 = -0.9 -> trunc 0: on the grid
    pred[1, :, 0] = -50.3  # -1.1 -> trunc -1: off the grid, point test ignores it
    gt = still(2, x=10.0)
    res = planning_metrics(pred, gt, np.ones((2, STEPS)), occ, "uniad")
    assert res["obj_col_per_step"][0] == pytest.approx(2 / 2)
    assert res["col_per_step"][0] == pytest.approx(2 / 2)  # both boxes are clamped onto col 0


def test_point_index_is_computed_in_float32_for_float32_input():
    # y just below 0.25: in float32 (y + 49.75) rounds to 50.0 -> row 100; in float64 it is row 99.
    y = np.nextafter(np.float32(0.25), np.float32(0))
    occ = empty_occupancy()
    occ[0, 0, 100, 99] = 1
    gt = still(1, x=20.0)
    as32 = planning_metrics(still(1, y=y), gt, np.ones((1, STEPS)), occ, "uniad")
    as64 = planning_metrics(still(1, y=y, dtype=np.float64), gt.astype(np.float64), np.ones((1, STEPS)), occ, "uniad")
    assert as32["obj_col_per_step"][0] == 1.0
    assert as64["obj_col_per_step"][0] == 0.0


def test_ignore_frames_never_count_as_collisions():
    pred, gt, mask, occ = collision_case()
    occ[:, 4:] = 255
    mask[:, 4:] = 0
    res = planning_metrics(pred, gt, mask, occ, "uniad")
    assert res["col_per_step"][4:] == [0.0, 0.0]
    assert res["gt_collision_steps"] == 3 + 2 * 3
    assert res["gt_collision_samples"] == 1  # ignore frames are not obstacles


# ---------------------------------------------------------------- failed samples (the evaluator's failure policy)

def test_a_failed_sample_collides_at_every_counted_step():
    pred, gt, mask, occ = collision_case()
    # sample 1 stands still collision-free; as a failure it collides at all 6 steps. Sample 2's
    # steps 1-3 stay uncounted (its GT box collides there), sample 0 already hits everywhere.
    res = planning_metrics(pred, gt, mask, occ, "uniad", failed=np.array([False, True, True]))
    assert res["col_per_step"] == pytest.approx([2 / 3] * 3 + [3 / 3] * 3)
    # point test: sample 0's point (x = 1.0, col 101) misses the obstacle at col 103, so only failures count
    assert res["obj_col_per_step"] == pytest.approx([1 / 3] * 3 + [2 / 3] * 3)
    assert res["num_failed"] == 2
    assert res["L2_per_step"] == planning_metrics(pred, gt, mask, occ, "uniad")["L2_per_step"]  # L2 of pred as given


@pytest.mark.parametrize("convention", ["uniad", "stp3"])
def test_failures_are_not_counted_in_ignore_frames(convention):
    pred, gt, mask, occ = collision_case()
    occ[:, 4:] = 255  # frames past the scene end: no step there counts, failed or not
    mask[:, 4:] = 0
    res = planning_metrics(pred, gt, mask, occ, convention, failed=np.ones(3, bool))
    # steps 1-3: samples 0 and 1 (sample 2's GT collides); step 4: all three; steps 5-6: ignored
    assert res["col_per_step"] == pytest.approx([2 / 3] * 3 + [1.0, 0.0, 0.0])


def test_failed_must_be_one_flag_per_sample():
    with pytest.raises(ValueError, match=r"failed has shape \(2,\)"):
        planning_metrics(still(1), still(1), np.ones((1, STEPS)), empty_occupancy(), "uniad", failed=np.zeros(2, bool))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), convention=st.sampled_from(CONVENTIONS),
       failing=st.lists(st.booleans(), min_size=8, max_size=8))
def test_turning_answers_into_failures_never_lowers_a_collision_rate(seed, convention, failing):
    pred, gt, mask, occ = random_case(seed, n=8)
    failed = np.array(failing)
    as_scored = np.where(failed[:, None, None], np.float32(0), pred)  # what the evaluator passes: zeros
    real = planning_metrics(pred, gt, mask, occ, convention)
    with_failures = planning_metrics(as_scored, gt, mask, occ, convention, failed=failed)
    standing = planning_metrics(as_scored, gt, mask, occ, convention)  # the old policy: failures stand still
    for key in ("col_per_step", "col_1s", "col_2s", "col_3s", "col_avg", "obj_col_per_step", "obj_col_avg"):
        if key in real:
            assert np.all(np.asarray(with_failures[key]) >= np.asarray(real[key]) - 1e-12), key
            assert np.all(np.asarray(with_failures[key]) >= np.asarray(standing[key]) - 1e-12), key
    assert with_failures["L2_per_step"] == standing["L2_per_step"]  # L2: the stand-still L2, as before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), convention=st.sampled_from(CONVENTIONS),
       failing=st.lists(st.booleans(), min_size=8, max_size=8), shrink=st.floats(0.0, 1.0))
def test_failing_never_beats_an_answer_at_least_as_good_as_standing_still(seed, convention, failing, shrink):
    # L2 can only be guaranteed against answers no worse than standing still (a failure has no
    # answer to score): such an answer lies within |gt| of the GT at every step. Here every answer
    # is the GT pulled towards the origin by `shrink` (error shrink * |gt| <= |gt|).
    _, gt, mask, occ = random_case(seed, n=8)
    pred = (gt * (1 - shrink)).astype(np.float32)
    failed = np.array(failing)
    as_scored = np.where(failed[:, None, None], np.float32(0), pred)
    real = planning_metrics(pred, gt, mask, occ, convention)
    with_failures = planning_metrics(as_scored, gt, mask, occ, convention, failed=failed)
    for key in ("L2_1s", "L2_2s", "L2_3s", "L2_avg", "col_1s", "col_2s", "col_3s", "col_avg"):
        assert with_failures[key] >= real[key] - 1e-6, key


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_vectorised_equals_the_reference_loop_with_failures(convention):
    pred, gt, mask, occ = random_case(11, n=40)
    failed = np.random.default_rng(5).random(40) < 0.3
    fast = planning_metrics(pred, gt, mask, occ, convention, failed=failed)
    slow = reference_planning_metrics(pred, gt, mask, occ, convention, failed=failed)
    assert fast.keys() == slow.keys()
    for key in ("col_per_step", "num_samples", "num_failed", "gt_collision_steps", "obj_col_per_step"):
        assert fast.get(key) == slow.get(key), key


# ---------------------------------------------------------------- properties

def random_case(seed: int, n: int = 3, scale: float = 30.0):
    """Random trajectories (some off the grid), masks with 255 tails, and boxy occupancy."""
    rng = np.random.default_rng(seed)
    gt = (np.cumsum(rng.normal(0, 1, (n, STEPS, 2)), 1) * scale / 5).astype(np.float32)
    pred = (gt + rng.normal(0, 2, gt.shape)).astype(np.float32)
    mask = np.ones((n, STEPS), np.int64)
    occ = empty_occupancy(n)
    for i in range(n):
        valid = STEPS if i == 0 else int(rng.integers(3, STEPS + 1))  # sample 0 has the full future
        mask[i, valid:] = 0
        occ[i, valid:] = 255
        for _ in range(6):
            r, c = rng.integers(80, 120, 2)
            occ[i, :valid, r : r + rng.integers(1, 6), c : c + rng.integers(1, 6)] = 1
    return pred, gt, mask, occ


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), scale=st.floats(0.5, 80.0), convention=st.sampled_from(CONVENTIONS))
def test_gt_trajectory_scores_zero_collisions(seed, scale, convention):
    _, gt, mask, occ = random_case(seed, scale=scale)
    res = planning_metrics(gt, gt, mask, occ, convention)
    assert res["col_avg"] == 0.0 and res["L2_avg"] == 0.0
    assert res.get("obj_col_avg", 0.0) == 0.0


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_equals_the_reference_loop(convention, seed):
    pred, gt, mask, occ = random_case(seed, n=40)
    fast = planning_metrics(pred, gt, mask, occ, convention)
    slow = reference_planning_metrics(pred, gt, mask, occ, convention)
    assert fast.keys() == slow.keys()
    for key in ("col_per_step", "num_samples", "gt_collision_steps", "gt_collision_samples", "obj_col_per_step"):
        assert fast.get(key) == slow.get(key), key  # the same counts over the same N
    for key in ("col_1s", "col_2s", "col_3s"):  # VAD sums per-sample means: same value, other rounding
        assert fast[key] == pytest.approx(slow[key], rel=1e-12, abs=0), key
    np.testing.assert_allclose(fast["L2_per_step"], slow["L2_per_step"], atol=1e-6)
    assert fast["L2_avg"] == pytest.approx(slow["L2_avg"], abs=1e-6)


# coordinates on and next to cell edges (multiples of 0.25 m, +- one float32 ulp), on and off the grid
edge_coordinate = st.builds(
    lambda quarter, nudge: np.float32(quarter * 0.25) if nudge == 0 else np.nextafter(np.float32(quarter * 0.25), np.float32(nudge * np.inf)),
    st.integers(-240, 240),
    st.sampled_from([-1, 0, 1]),
)


@settings(max_examples=30, deadline=None)
@given(points=st.lists(st.tuples(edge_coordinate, edge_coordinate), min_size=24, max_size=24), seed=st.integers(0, 2**31), convention=st.sampled_from(CONVENTIONS))
def test_vectorised_equals_the_reference_loop_on_cell_edges(points, seed, convention):
    _, _, mask, occ = random_case(seed, n=2)
    traj = np.array(points, np.float32).reshape(2, 2, STEPS, 2)
    fast = planning_metrics(traj[0], traj[1], mask, occ, convention)
    slow = reference_planning_metrics(traj[0], traj[1], mask, occ, convention)
    assert fast["col_per_step"] == slow["col_per_step"]
    assert fast.get("obj_col_per_step") == slow.get("obj_col_per_step")
    assert fast["gt_collision_steps"] == slow["gt_collision_steps"]


def test_conventions_differ_where_they_must():
    pred, gt, mask, occ = random_case(7, n=60)
    res = {c: planning_metrics(pred, gt, mask, occ, c) for c in CONVENTIONS}
    assert res["uniad"]["L2_per_step"] == res["stp3"]["L2_per_step"]  # same masked per-step values ...
    assert res["uniad"]["L2_1s"] != res["stp3"]["L2_1s"]  # ... read "at" vs "up to"
    assert res["stp3_original"]["num_samples"] < res["stp3"]["num_samples"]
    assert res["stp3_original"]["L2_per_step"] == res["vad"]["L2_per_step"]  # same samples, no mask


def test_strided_and_bool_occupancy_give_the_same_numbers():
    pred, gt, mask, occ = random_case(4, n=6)
    doubled = np.repeat(occ, 2, axis=0)[::2]  # a non-contiguous view: the fancy-index path
    assert not doubled.flags.c_contiguous
    for convention in CONVENTIONS:
        expected = planning_metrics(pred, gt, mask, occ, convention)
        assert planning_metrics(pred, gt, mask, doubled, convention) == expected
    no_ignore = np.where(occ == 255, 0, occ)  # bool grids cannot hold 255
    assert planning_metrics(pred, gt, mask, no_ignore.astype(bool), "uniad")["col_per_step"] == planning_metrics(pred, gt, mask, no_ignore, "uniad")["col_per_step"]


def test_inputs_are_never_mutated():
    pred, gt, mask, occ = random_case(3, n=5)
    before = [a.copy() for a in (pred, gt, mask, occ)]
    for convention in CONVENTIONS:
        planning_metrics(pred, gt, mask, occ, convention)
    for a, b in zip((pred, gt, mask, occ), before):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- readable errors

@pytest.mark.parametrize(
    "change, message",
    [
        ({"convention": "nuplan"}, "unknown"),
        ({"occupancy": np.zeros((1, STEPS, 100, 100), np.uint8)}, "occupancy has shape"),
        ({"pred": np.full((1, STEPS, 2), np.nan, np.float32)}, "not finite at sample 0"),
        ({"gt_mask": np.full((1, STEPS), 2)}, "0/1"),
        ({"pred": np.zeros((1, 5, 2), np.float32)}, "pred has shape"),
        ({"convention": "vad", "gt_mask": np.zeros((1, STEPS))}, "none"),
    ],
)
def test_bad_input_raises_a_readable_error(change, message):
    args = {"pred": still(1), "gt": still(1), "gt_mask": np.ones((1, STEPS)), "occupancy": empty_occupancy(), "convention": "uniad"}
    args.update(change)
    with pytest.raises(ValueError, match=message):
        planning_metrics(**args)
