"""The reward verifiers (planning.rewards, planning.reward_targets): golden numbers, properties, agreement with the metric.

Frame: current LiDAR frame, x right, y forward, metres. The golden cells follow docs/metrics.md:
the UniAD ego footprint covers rows 97..104 x cols 98..101 at the origin and moves by floor(2y)
rows and floor(2x) columns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planning.codec import format_trajectory
from planning.metrics import CONVENTIONS, box_collisions
from planning.occupancy import rasterize_occupancy, rasterize_targets
from planning.reward_targets import reward_target, reward_target_of
from planning.rewards import (
    ACTIONS,
    CLASS_WORDS,
    KEEP_FORWARD,
    MOVING_SPEED_MPS,
    PLAUSIBLE_RANGE_M,
    STOP,
    TERMS,
    TURN_LEFT,
    TURN_RIGHT,
    RewardConfig,
    RewardTarget,
    encode_runs,
    named_objects,
    read_answer,
    score_answer,
    strip_end_tokens,
    trajectory_actions,
)
from vla_world.data.records import DETECTION_CLASSES
from vla_world.data.synthetic import synthetic_record
from vla_world.data.targets import planning_targets

STRUCTURED = RewardConfig(structured=True)
STRAIGHT = np.stack([np.zeros(6), 2.5 * np.arange(1, 7)], 1)  # 5 m/s straight ahead


def hand_target(occupied=((),) * 6, convention="uniad", future=STRAIGHT, agents=()) -> RewardTarget:
    classes = tuple(a[0] for a in agents)
    xy = np.array([a[1:] for a in agents], float).reshape(-1, 2)
    return RewardTarget("hand", convention, future, np.ones(6, bool), occupied, classes, xy)


def structured_text(waypoints, perception="", prediction="(0.00,2.50)", think="", action=KEEP_FORWARD) -> str:
    return (f"<perception>{perception}</perception><prediction>{prediction}</prediction><think>{think}</think>"
            f"<action>{action}</action><answer>{format_trajectory(waypoints)}</answer>")


# ---------------------------------------------------------------- constants kept equal to their homes

def test_constants_equal_their_homes_above_the_leaf():
    from planning.evaluate import PLAUSIBLE_RANGE_M as evaluator_bound
    from vla_world.qa.facts import MOVING_SPEED
    from vla_world.qa.vocab import ACTIONS as vocab_actions

    assert PLAUSIBLE_RANGE_M == evaluator_bound
    assert ACTIONS == vocab_actions
    assert MOVING_SPEED_MPS == MOVING_SPEED


def test_every_class_word_the_captions_write_is_read():
    from vla_world.qa.phrasing import class_word

    for cls in DETECTION_CLASSES:
        for plural in (False, True):
            assert CLASS_WORDS[class_word(cls, plural)] == cls


# ---------------------------------------------------------------- golden cases

def test_golden_plain_answer():
    # answer = GT + (3, 4): L2 = 5 m at every step, accuracy exp(-5 / 1 m) = 0.006738.
    # At step 2 the answer point is (3, 11.5): footprint rows 97+23..104+23 = 120..127, cols 98+6..101+6 =
    # 104..107, so an obstacle at (row 124, col 105) is hit there; the GT point (0, 7.5) covers rows
    # 112..119 x cols 98..101 and misses it. First counted collision at step 2: collision 2/6.
    occupied = [(), (), (124 * 200 + 105, 1), (), (), ()]
    target = hand_target(occupied)
    answer = STRAIGHT + np.array([3.0, 4.0])
    assert box_collisions(answer[None], target.occupancy, "uniad")[0].tolist() == [False, False, True, False, False, False]
    scores = score_answer(format_trajectory(answer), target)
    assert scores.terms["format"] == 1.0
    assert scores.terms["collision"] == pytest.approx(2 / 6)
    assert scores.terms["accuracy"] == pytest.approx(math.exp(-5.0))
    assert scores.terms["grounding"] is None and scores.terms["consistency"] is None
    # plain answer: weights 0.1 / 0.3 / 0.4 renormalised over 0.8
    assert scores.total == pytest.approx((0.1 * 1 + 0.3 * (2 / 6) + 0.4 * math.exp(-5.0)) / 0.8)
    assert scores.total == pytest.approx(0.253369, abs=1e-6)
    assert scores.parts["collision"]["first_collision_step"] == 2
    assert scores.parts["accuracy"]["l2_m"] == pytest.approx(5.0)


def test_golden_structured_answer():
    # agents now: a car at (2, 10), a pedestrian at (-3, 5), a truck at (0, 40) (beyond the 30 m range).
    # Named: car at (2.5, 10) matches (0.5 m); pedestrian at (10, 10) and a bus match nothing.
    # precision 1/3, recall (car, pedestrian) 1/2, F1 = 0.4; 2 hallucinated: 0.4 - 0.2 = 0.2.
    # prediction (0.3, 2.9) is 0.5 m from the first waypoint (0, 2.5): 1 - 0.5 / 1 = 0.5; the action
    # keep forward fits a 5 m/s straight plan: 1. Consistency 0.75.
    target = hand_target(agents=[("car", 2, 10), ("pedestrian", -3, 5), ("truck", 0, 40)])
    text = structured_text(STRAIGHT, perception="A car at (2.5, 10.0); a pedestrian at (10.00,10.00).",
                           think="Watch the bus at (0, 20).", prediction="(0.30,2.90)")
    scores = score_answer(text, target, STRUCTURED)
    assert scores.parts["grounding"]["precision"] == pytest.approx(1 / 3)
    assert scores.parts["grounding"]["recall"] == pytest.approx(0.5)
    assert scores.terms["grounding"] == pytest.approx(0.2)
    assert scores.terms["consistency"] == pytest.approx(0.75)
    assert scores.total == pytest.approx(0.1 + 0.3 + 0.4 + 0.1 * 0.2 + 0.1 * 0.75)


def test_named_objects_take_the_position_after_each_class_word():
    text = "Two cars: one at (1, 2), and a traffic cone (3.5,-4e0). A pedestrian, then a bus at (5,6)."
    assert named_objects(text) == [("car", 1.0, 2.0), ("traffic_cone", 3.5, -4.0), ("bus", 5.0, 6.0)]


@pytest.mark.parametrize("waypoints, allowed", [
    (STRAIGHT, {KEEP_FORWARD}),
    (np.zeros((6, 2)), {STOP}),  # standing still
    (np.stack([np.zeros(6), [2.5, 4.5, 6.0, 7.0, 7.5, 7.5]], 1), {STOP}),  # brakes to a stop
    (np.stack([np.zeros(6), [2.5, 5.0, 7.0, 8.5, 9.5, 10.5]], 1), {STOP, KEEP_FORWARD}),  # 5 -> 2 m/s: slows down
    (np.stack([-np.linspace(0.5, 3, 6), 2.5 * np.arange(1, 7)], 1), {TURN_LEFT}),  # 3 m to the left
    (np.stack([np.linspace(0.5, 2, 6), 2.5 * np.arange(1, 7)], 1), {TURN_RIGHT}),  # exactly 2 m: the command rule's >=
])
def test_trajectory_actions_follow_the_label_rules(waypoints, allowed):
    assert trajectory_actions(waypoints) == allowed


# ---------------------------------------------------------------- format is a gate

@pytest.mark.parametrize("text", [
    "",
    "<traj_start>[(0,2.5),(0,5),(0,7.5),(0,10),(0,12.5)]<traj_end>",  # 5 points
    "[(0,2.5),(0,5),(0,7.5),(0,10),(0,12.5),(0,15)]",  # no tags: the evaluator forgives it, the reward does not
    "Sure: <traj_start>[(0,2.5),(0,5),(0,7.5),(0,10),(0,12.5),(0,15)]<traj_end>",  # text around it
    "<traj_start>[(0,2.5),(0,5),(0,7.5),(0,10),(0,12.5),(0,150)]<traj_end>",  # beyond 100 m
    "<traj_start>[(0,2.5),(0,5),(0,7.5),(0,10),(0,12.5),(0,nan)]<traj_end>",
    "<traj_start>[(0,0),(0,0),(0,0),(0,0),(0,0),(0,0)]<traj_end><traj_start>[(0,0)]<traj_end>",
])
def test_a_format_failure_scores_zero_everywhere(text):
    target = hand_target()
    scores = score_answer(text, target)
    assert scores.terms["format"] == scores.terms["collision"] == scores.terms["accuracy"] == scores.total == 0.0
    assert scores.parts["format"]["error"]


def test_standing_still_is_an_answer_and_a_broken_answer_is_not_standing_still():
    target = hand_target()
    still = score_answer(format_trajectory(np.zeros((6, 2))), target)
    assert still.terms["collision"] == 1.0 and 0 < still.total < 1
    assert score_answer("<traj_start>[(0,0)]<traj_end>", target).total == 0.0


@pytest.mark.parametrize("text", [
    structured_text(STRAIGHT).replace("<think></think>", ""),  # a block missing
    structured_text(STRAIGHT).replace("<perception></perception>", "") + "<perception></perception>",  # out of order
    "Plan: " + structured_text(STRAIGHT),  # text before the first block
    structured_text(STRAIGHT).replace("</think>", "</think> so ", 1),  # loose text between blocks
    structured_text(STRAIGHT).replace("<answer><traj_start>", "<answer>ok <traj_start>"),
])
def test_structured_form_is_strict(text):
    assert score_answer(text, hand_target(), STRUCTURED).total == 0.0


def test_structured_answer_may_hold_other_blocks_and_end_tokens():
    text = structured_text(STRAIGHT).replace("</prediction>", "</prediction>\n<visual>v1 v2</visual>\n") + "<|im_end|>"
    scores = score_answer(text, hand_target(), STRUCTURED)
    assert scores.terms["format"] == 1.0 and scores.terms["accuracy"] == 1.0
    assert strip_end_tokens("a <|im_end|><|endoftext|> ") == "a"


def test_plain_mode_reads_no_structure():
    text = structured_text(STRAIGHT)
    assert read_answer(text).waypoints is None  # plain mode wants the bare trajectory
    assert read_answer(text, STRUCTURED).waypoints is not None


# ---------------------------------------------------------------- properties

FRAGMENTS = ["<traj_start>", "<traj_end>", "[", "]", "(", ")", ",", "0", "1.5", "-3", "1e9", "nan", "inf", " ", "car",
             "pedestrian", "<answer>", "</answer>", "<perception>", "</perception>", "<prediction>", "</prediction>",
             "<think>", "</think>", "<action>", "</action>", "turn left", "stop/slow down", "<|im_end|>", "<visual>"]


@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join)),
       st.sampled_from([RewardConfig(), STRUCTURED]))
@settings(max_examples=300, deadline=None)
def test_any_string_gives_finite_scores_in_the_unit_interval(text, config):
    target = hand_target([(), (), (124 * 200 + 105, 3), (), (), ()], agents=[("car", 2, 10), ("pedestrian", -3, 5)])
    scores = score_answer(text, target, config)
    values = [scores.total] + [v for v in scores.terms.values() if v is not None]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    assert set(scores.terms) == set(TERMS)
    if scores.terms["format"] == 0.0:  # the gate: nothing else is earned by a broken answer
        assert scores.total == 0.0 and all(v in (None, 0.0) for v in scores.terms.values())


@given(st.lists(st.tuples(st.floats(-60, 60), st.floats(-60, 60)), min_size=6, max_size=6),
       st.sampled_from([RewardConfig(), STRUCTURED]))
@settings(max_examples=100, deadline=None)
def test_every_well_formed_answer_scores_in_the_unit_interval(points, config):
    waypoints = np.array(points)
    text = structured_text(waypoints) if config.structured else format_trajectory(waypoints)
    scores = score_answer(text, hand_target([(), (), (124 * 200 + 105, 3), (), (), ()]), config)
    assert scores.terms["format"] == 1.0
    assert 0.0 <= scores.total <= 1.0


SPEED = st.floats(0.0, 15.0)
AGENT = st.tuples(st.sampled_from(["car", "truck", "pedestrian", "bicycle"]), st.floats(-20, 20), st.floats(-10, 40),
                  st.floats(-5, 5), st.floats(-5, 5))


@given(SPEED, st.lists(AGENT, max_size=4), st.integers(1, 6), st.sampled_from(CONVENTIONS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_ground_truth_scores_one_on_accuracy_and_collision(speed, agents, valid, convention):
    record = synthetic_record(speed=speed, agents=agents, future_valid=valid)
    target = reward_target_of(record, convention)
    scores = score_answer(format_trajectory(target.ego_future), target)
    assert scores.terms["accuracy"] == 1.0 and scores.terms["collision"] == 1.0 and scores.total == 1.0


@given(st.floats(3.0, 6.0), st.floats(8.0, 14.0), st.sampled_from(CONVENTIONS))
@settings(max_examples=40, deadline=None)
def test_a_trajectory_through_a_box_scores_less_than_one_around_it(x_car, y_car, convention):
    # a parked car beside the straight GT path; "through" passes x_car to its side, "around" as far the
    # other way, so both are equally far from the GT (same accuracy) and only the collision differs
    record = synthetic_record(speed=5.0, agents=[("car", x_car, y_car, 0.0, 0.0)])
    target = reward_target_of(record, convention)
    through = score_answer(format_trajectory(STRAIGHT + [x_car, 0.0]), target)
    around = score_answer(format_trajectory(STRAIGHT - [x_car, 0.0]), target)
    assert through.terms["collision"] < around.terms["collision"] == 1.0
    assert through.terms["accuracy"] == pytest.approx(around.terms["accuracy"])
    assert through.total < around.total


def test_an_earlier_collision_scores_less():
    # the answer GT + (3, 4) covers rows 110+5k..117+5k x cols 104..107 at step k; one obstacle cell
    # (114 + 5k, 105) at step k only: a first collision at step k scores k / 6
    scores = []
    for step in range(6):
        occupied = [()] * 6
        occupied[step] = ((114 + 5 * step) * 200 + 105, 1)
        scores.append(score_answer(format_trajectory(STRAIGHT + [3.0, 4.0]), hand_target(occupied)).terms["collision"])
    assert scores == pytest.approx([k / 6 for k in range(6)])


# ---------------------------------------------------------------- the target

def test_target_round_trips_through_json():
    record = synthetic_record(speed=4.0, agents=[("car", 3.0, 10.0, 0.0, 2.0), ("pedestrian", -4.0, 6.0, 1.0, 0.0)],
                              future_valid=4)
    target = reward_target_of(record, "vad")
    again = RewardTarget.from_json(target.to_json())
    assert again.to_json() == target.to_json()
    assert np.array_equal(again.occupancy, target.occupancy)
    assert again.agent_class == ("car", "pedestrian") and again.ego_future_mask.tolist() == [1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=0), "version"),
    (lambda d: d.pop("agent_xy"), "keys"),
    (lambda d: d.update(ego_future_mask=[False] * 6), "no valid step"),
    (lambda d: d.update(convention="mine"), "convention"),
    (lambda d: d.update(occupied_runs=[[0]] * 6), "occupied_runs"),
    (lambda d: d.update(agent_class=["dragon"]), "agent_class"),
    (lambda d: d.update(ego_future=[[0, 1]] * 5), "ego_future"),
])
def test_a_broken_target_names_the_field(change, message):
    data = reward_target_of(synthetic_record(agents=[("car", 3.0, 10.0, 0.0, 2.0)])).to_dict()
    change(data)
    with pytest.raises(ValueError, match=message):
        RewardTarget.from_dict(data)


def test_runs_encode_cells_exactly():
    cells = np.array([5, 6, 7, 9, 200, 201, 39999])
    assert encode_runs(cells) == (5, 3, 9, 1, 200, 2, 39999, 1)
    occupied = [encode_runs(cells)] + [()] * 5
    assert np.flatnonzero(hand_target(occupied).occupancy[0, 0]).tolist() == cells.tolist()


@pytest.mark.parametrize("field, value", [("accuracy_weight", -1.0), ("accuracy_scale_m", 0.0),
                                          ("blocks", ("answer", "think")), ("grounding_reference_agents", 0),
                                          ("hallucination_penalty", 2.0)])
def test_config_refuses_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        RewardConfig(**{field: value})


# ---------------------------------------------------------------- agreement with the metric on the test world

@pytest.mark.parametrize("convention", CONVENTIONS)
def test_collisions_agree_with_the_metric_on_the_test_world(mini_records, convention):
    """Same cells as the metric's occupancy, and the same counted collisions of a real planner's answers."""
    from planning.baselines import constant_velocity
    from vla_world.data.planner_input import planner_input

    records = [r for r in mini_records["val"] if r.ego_future_mask.any()]
    targets = [planning_targets(r) for r in records]
    occupancy = rasterize_occupancy(targets, convention)
    gt = np.stack([t.ego_future for t in targets])
    rewards = [reward_target(t, convention) for t in targets]
    for i, reward in enumerate(rewards):
        assert np.array_equal(reward.occupancy[0], occupancy[i]), f"sample {i}: cells differ from the metric's"
    plans = [np.stack([constant_velocity(planner_input(r)) for r in records])]
    # plans that drive into agent k's future centres (about a hundred counted collisions each)
    plans += [np.stack([t.agent_future[k] if len(t.agent_future) > k else t.ego_future for t in targets]) for k in (0, 2)]
    total = 0
    for plan in plans:
        pred = np.round(plan.astype(np.float64), 2)  # what the answer text holds
        counted = box_collisions(pred, occupancy, convention) & ~box_collisions(gt, occupancy, convention)
        for i, reward in enumerate(rewards):
            term = score_answer(format_trajectory(pred[i]), reward).parts["collision"]
            first = int(np.argmax(counted[i])) if counted[i].any() else None
            assert (term["first_collision_step"], term["colliding_steps"]) == (first, int(counted[i].sum())), f"sample {i}"
        total += int(counted.sum())
    assert total > 100  # the comparison saw collisions, not only empty roads


def test_ground_truths_of_the_test_world_score_one(mini_records):
    for record in mini_records["val"]:
        if record.ego_future_mask.any():
            target = reward_target_of(record)
            assert score_answer(format_trajectory(target.ego_future), target).total == 1.0, record.sample_token


def test_rasterised_frames_match_for_a_short_future():
    record = synthetic_record(agents=[("car", 0.0, 12.0, 0.0, 0.0)], future_valid=3)
    target = reward_target_of(record, "uniad")
    assert np.array_equal(target.occupancy[0], rasterize_targets(planning_targets(record), "uniad"))
