"""Trajectory codec: golden strings, the repair policy, and hypothesis round-trip / robustness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planning.codec import (
    ANSWER_END,
    ANSWER_START,
    TRAJ_END,
    TRAJ_START,
    format_points,
    format_trajectory,
    parse_trajectory,
)

GOLDEN_WP = np.array([[0.0, 2.5], [0.1, 5.0], [-0.25, 7.5], [1.0, 10.0], [1.234, 12.5], [-3.456, 15.004]])
GOLDEN_TEXT = ("<traj_start>[(0.00,2.50),(0.10,5.00),(-0.25,7.50),(1.00,10.00),(1.23,12.50),(-3.46,15.00)]"
               "<traj_end>")
SIX = "[(1,2),(3,4),(5,6),(7,8),(9,10),(11,12)]"
SIX_ARRAY = np.arange(1, 13, dtype=float).reshape(6, 2)


def test_format_golden_string():
    assert format_trajectory(GOLDEN_WP) == GOLDEN_TEXT


def test_format_writes_no_negative_zero():
    assert format_trajectory(np.full((6, 2), -0.001)).count("-") == 0


def test_format_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        format_trajectory(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="nan"):
        format_trajectory(np.full((6, 2), np.nan))


def test_parse_golden_string():
    parsed = parse_trajectory(GOLDEN_TEXT)
    assert parsed.error is None and parsed.ok
    np.testing.assert_allclose(parsed.waypoints, np.round(GOLDEN_WP, 2), atol=1e-9)
    assert parsed.waypoints.shape == (6, 2) and parsed.waypoints.dtype == np.float64


@pytest.mark.parametrize("text", [
    SIX,  # no tags
    f"Plan: {TRAJ_START}{SIX}",  # no closing tag, text before
    f"{TRAJ_START} [ (1, 2), (3,4) ,(5 ,6),(7,8),(9,10),(11,12) ] {TRAJ_END} done.",  # spaces
    f"{TRAJ_START}[(1,2,0),(3,4,0),(5,6,0),(7,8,0),(9,10,0),(11,12,0)]{TRAJ_END}",  # z dropped
    f"{TRAJ_START}[(1.0,2e0),(+3,4.),(5,6),(7,8),(9,10),(11,12)]{TRAJ_END}",  # number spellings
])
def test_repairs_that_are_accepted(text):
    parsed = parse_trajectory(text)
    assert parsed.error is None
    np.testing.assert_array_equal(parsed.waypoints, SIX_ARRAY)


@pytest.mark.parametrize("text, reason", [
    ("", "no trajectory found"),
    ("turn left and keep going", "no trajectory found"),
    (f"{TRAJ_START}{TRAJ_END}", "no trajectory found"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10)]", "wrong number of points: 5"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(11,12),(13,14)]", "wrong number of points: 7"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(nan,12)]", "non-finite value"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(1e999,12)]", "non-finite value"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(inf,12)]", "non-finite value"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(x,12)]", "point 6 is not a list of numbers"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(11)]", "point 6 has 1 coordinates"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(1,2,3,4)]", "point 6 has 4 coordinates"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(11,12,0)]", "mix 2 and 3"),
    ("[(1,2),(3,4),(5,6),(7,8),(9,10),(,12)]", "point 6 is not a list of numbers"),
])
def test_malformed_text_gives_error(text, reason):
    parsed = parse_trajectory(text)
    assert parsed.waypoints is None
    assert reason in parsed.error


def test_non_string_input_is_an_error_not_a_crash():
    parsed = parse_trajectory(None)  # type: ignore[arg-type]
    assert parsed.waypoints is None and "expected text" in parsed.error


finite_coordinate = st.floats(min_value=-1000.0, max_value=1000.0, allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(finite_coordinate, finite_coordinate), min_size=6, max_size=6))
@settings(max_examples=200, deadline=None)
def test_round_trip_within_half_a_centimetre(points):
    waypoints = np.array(points)
    parsed = parse_trajectory(format_trajectory(waypoints))
    assert parsed.error is None
    assert np.abs(parsed.waypoints - waypoints).max() <= 0.005 + 1e-9


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_never_raises_and_is_consistent(text):
    parsed = parse_trajectory(text)
    assert (parsed.waypoints is None) != (parsed.error is None)
    if parsed.waypoints is not None:
        assert parsed.waypoints.shape == (6, 2) and np.isfinite(parsed.waypoints).all()


@given(st.text(alphabet="[](),.-0123456789 e<>trajsndx", max_size=200))
@settings(max_examples=300, deadline=None)
def test_trajectory_like_text_never_raises(text):
    parsed = parse_trajectory(text)
    assert (parsed.waypoints is None) != (parsed.error is None)


@given(st.integers(min_value=0, max_value=12).filter(lambda n: n != 6))
@settings(max_examples=20, deadline=None)
def test_wrong_point_count_is_never_padded(count):
    text = TRAJ_START + "[" + ",".join(f"({i},{i})" for i in range(count)) + "]" + TRAJ_END
    parsed = parse_trajectory(text)
    assert parsed.waypoints is None
    assert parsed.error in ("no trajectory found", f"wrong number of points: {count} instead of 6")


@given(st.lists(st.tuples(finite_coordinate, finite_coordinate), min_size=6, max_size=6),
       st.integers(min_value=0, max_value=5), st.sampled_from(["drop", "nan", "word", "empty"]))
@settings(max_examples=100, deadline=None)
def test_corrupting_one_point_of_a_valid_answer_is_an_error(points, which, corruption):
    pieces = [f"({x:.2f},{y:.2f})" for x, y in points]
    if corruption == "drop":
        del pieces[which]
    else:
        x_text = pieces[which][1:].split(",")[0]
        bad_y = {"nan": "nan", "word": "far", "empty": ""}[corruption]
        pieces[which] = f"({x_text},{bad_y})"
    parsed = parse_trajectory(TRAJ_START + "[" + ",".join(pieces) + "]" + TRAJ_END)
    assert parsed.waypoints is None and parsed.error


# ---------------------------------------------------------------------------- the answer, not the first list

HISTORY = "Historical trajectory (last 2 seconds): [(UN,UN),(0.00,-6.00),(0.00,-4.00),(0.00,-2.00)]"
SIX_DECOY = "Kinematic prior (CTRA, next 3 seconds): [(0.00,1.00),(0.00,2.00),(0.00,3.00),(0.00,4.00),(0.00,5.00),(0.00,6.00)]"


@pytest.mark.parametrize("text", [
    f"{HISTORY}\n{TRAJ_START}{SIX}{TRAJ_END}",  # tags win over an earlier list
    f"<prediction>[(1,2)]</prediction> {SIX_DECOY} {TRAJ_START}{SIX}{TRAJ_END} {SIX_DECOY}",
    f"<think>{SIX_DECOY}</think>{ANSWER_START}{SIX}{ANSWER_END}",  # one untagged list inside the answer
    f"{ANSWER_START}{TRAJ_START}{SIX}{TRAJ_END}{ANSWER_END} {TRAJ_START}{SIX_DECOY}{TRAJ_END}",  # tags outside the answer
    f"{SIX_DECOY.split(': ')[1]} {ANSWER_START}Plan: {TRAJ_START}{SIX}",  # unclosed answer and trajectory
])
def test_the_answer_is_read_not_the_first_list(text):
    parsed = parse_trajectory(text)
    assert parsed.error is None
    np.testing.assert_array_equal(parsed.waypoints, SIX_ARRAY)


@pytest.mark.parametrize("text, reason", [
    (f"{HISTORY} {SIX}", "ambiguous: 2 point lists and no <traj_start> tag"),
    (f"{SIX} {SIX}", "ambiguous: 2 point lists"),
    (f"{TRAJ_START}{SIX}{SIX}{TRAJ_END}", "ambiguous: 2 point lists between <traj_start> and <traj_end>"),
    (f"{TRAJ_START}{SIX}{TRAJ_END}{TRAJ_START}{SIX}{TRAJ_END}", "ambiguous: 2 <traj_start> tags"),
    (f"{ANSWER_START}{SIX}{ANSWER_END}{ANSWER_START}{SIX}{ANSWER_END}", "ambiguous: 2 <answer> tags"),
    (f"{SIX} {ANSWER_START}I keep my lane.{ANSWER_END}", "no trajectory found"),  # the list is outside the answer
    (f"{SIX_DECOY} {TRAJ_START}{TRAJ_END}", "no trajectory found"),  # empty tags: never fall back to the decoy
])
def test_ambiguous_or_misplaced_answers_are_refused(text, reason):
    parsed = parse_trajectory(text)
    assert parsed.waypoints is None and reason in parsed.error


point = st.tuples(finite_coordinate, finite_coordinate)
agent_forecast = st.lists(point, min_size=1, max_size=8).map(lambda p: f"<prediction>{format_points(np.array(p))}</prediction>")
visible_decoy = st.one_of(  # point lists a parser that takes "the first list" would read
    st.lists(point, min_size=4, max_size=4).map(lambda p: f"Historical trajectory: {format_points(np.array(p))}"),
    st.lists(point, min_size=6, max_size=6).map(lambda p: format_points(np.array(p))),  # a bare 6-point list
)
decoy = st.one_of(agent_forecast, visible_decoy)


@given(st.lists(point, min_size=6, max_size=6), st.lists(decoy, min_size=1, max_size=4), st.booleans())
@settings(max_examples=150, deadline=None)
def test_a_formatted_answer_after_decoys_parses_back_to_itself(points, decoys, in_answer_block):
    answer = format_trajectory(np.array(points))
    text = " ".join(decoys) + " " + (f"{ANSWER_START}{answer}{ANSWER_END}" if in_answer_block else answer)
    parsed = parse_trajectory(text)
    assert parsed.error is None
    assert parse_trajectory(answer).waypoints.tolist() == parsed.waypoints.tolist()


@given(st.lists(point, min_size=6, max_size=6))
@settings(max_examples=30, deadline=None)
def test_a_lone_agent_forecast_is_never_the_ego_plan(points):
    parsed = parse_trajectory(f"<prediction>{format_points(np.array(points))}</prediction>")
    assert parsed.waypoints is None and parsed.error == "no trajectory found"


@given(st.lists(visible_decoy, min_size=2, max_size=4), st.lists(agent_forecast, max_size=3), st.booleans(), st.data())
@settings(max_examples=150, deadline=None)
def test_decoys_alone_never_parse(visible, forecasts, with_empty_answer, data):
    # two or more visible lists are ambiguous; agent forecasts are never read; an answer block
    # without a list hides everything outside it
    decoys = data.draw(st.permutations(visible + forecasts))
    text = " ".join(decoys) + (f" {ANSWER_START}Turn left at the junction.{ANSWER_END}" if with_empty_answer else "")
    parsed = parse_trajectory(text)
    assert parsed.waypoints is None and parsed.error


# ---- residual answers: centimetres added to the prompt's prior ----------------------------------
PRIOR = np.array([[0.0, 2.4], [0.1, 4.9], [0.2, 7.4], [0.4, 9.9], [0.6, 12.4], [0.9, 14.9]])
GOLDEN_RESIDUAL = "<traj_start>[(0,10),(0,10),(-45,10),(60,10),(63,10),(-436,10)]<traj_end>"


def test_residual_golden_string():
    """GOLDEN_WP - PRIOR in whole centimetres, each side rounded as the prompt and the answer print it."""
    assert format_trajectory(GOLDEN_WP, prior=PRIOR) == GOLDEN_RESIDUAL
    parsed = parse_trajectory(GOLDEN_RESIDUAL, prior=PRIOR)
    assert parsed.ok
    np.testing.assert_allclose(parsed.waypoints, np.round(GOLDEN_WP, 2), atol=1e-9)


def test_copying_the_prior_is_the_answer_of_zeros():
    assert format_trajectory(PRIOR, prior=PRIOR) == TRAJ_START + "[" + ",".join(["(0,0)"] * 6) + "]" + TRAJ_END


def test_residual_text_follows_the_same_repair_policy():
    assert parse_trajectory("<traj_start>[(1,2),(3,4)]<traj_end>", prior=PRIOR).error.startswith("wrong number")
    np.testing.assert_allclose(parse_trajectory(SIX, prior=PRIOR).waypoints, PRIOR + SIX_ARRAY / 100)


def test_a_bad_prior_is_the_callers_error():
    with pytest.raises(ValueError, match="prior"):
        parse_trajectory(GOLDEN_RESIDUAL, prior=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="prior"):
        format_trajectory(GOLDEN_WP, prior=np.full((6, 2), np.nan))


@given(st.lists(st.tuples(finite_coordinate, finite_coordinate), min_size=6, max_size=6),
       st.lists(st.tuples(finite_coordinate, finite_coordinate), min_size=6, max_size=6))
@settings(max_examples=200, deadline=None)
def test_residual_round_trip_equals_the_absolute_round_trip(points, prior_points):
    """A residual answer carries exactly what the absolute one does: the same waypoints come back."""
    wp, prior = np.array(points), np.array(prior_points)
    text = format_trajectory(wp, prior=prior)
    assert "." not in text  # whole centimetres
    np.testing.assert_allclose(parse_trajectory(text, prior=prior).waypoints,
                               parse_trajectory(format_trajectory(wp)).waypoints, atol=1e-9)
