"""Text form of an ego trajectory: what the LLM writes and what we read back from it.

The planner's answer is one string in the current LiDAR_TOP frame (x right, y forward, metres),
six waypoints at t = 0.5 .. 3.0 s, two decimals, no spaces:

    <traj_start>[(0.01,2.50),(0.03,5.01),(0.05,7.52),(0.08,10.03),(0.11,12.55),(0.15,15.07)]<traj_end>

`format_trajectory` writes exactly that; `parse_trajectory` reads a model's free text and never
raises on it: it returns a `ParsedTrajectory` whose `waypoints` is a finite (6, 2) float array or
None, with `error` saying why not.

Residual answers (a planner trained with `model.residual_answer`): the answer is the correction to
the kinematic prior its prompt shows, in whole centimetres, same tags and brackets:

    <traj_start>[(0,-3),(1,-8),(2,-15),(3,-24),(5,-35),(6,-47)]<traj_end>

`format_trajectory(wp, prior=p)` writes it and `parse_trajectory(text, prior=p)` reads it back to
metres: waypoint = prior + residual / 100, with the prior taken as the prompt prints it (two
decimals), so a residual answer carries exactly the precision of an absolute one. Why: a copy of
the prior is then the answer of all zeros, and every other number is short (1-3 digits instead of
4-5 tokens of "12.34"); the prior is the planner's own input (`PlannerInput`), never a label.

Where the answer is (the parser reads only the answer, never the first list it meets): a
structured output can hold several bracketed point lists (an echoed history, a `<prediction>`
block of another agent, a reasoning step), so
  1. if the text has an `<answer>` block, only its inside is read (to `</answer>`, or to the end
     when that is missing); two `<answer>` blocks are refused as ambiguous;
  2. inside that, if there is a `<traj_start>`, only the span from it to `<traj_end>` (or to the
     end when that is missing) is read, and it must hold exactly one point list; two
     `<traj_start>` tags, or two lists between the tags, are refused as ambiguous;
  3. with no `<traj_start>`, exactly one point list may be present (the forgiven untagged
     answer); two or more are refused as ambiguous rather than guessed.
A point list is `[` `(...)` ... `]`, whatever the points hold (so `[(UN,UN),...]` counts).
Closed `<prediction>...</prediction>` blocks (other agents' forecasts, as in OpenDriveVLA's motion
answers) are never read, so a lone agent forecast is never taken for the ego's plan.

Repair policy (what the parser forgives, and what it refuses):
  * forgiven: missing `<traj_start>` / `<traj_end>` tags when the text holds a single point list,
    a missing closing tag, whitespace anywhere, text before or after, integers and exponents
    (`3`, `1e-2`), and a third coordinate per point (z is dropped, since some models echo 3-D
    waypoints).
  * refused (an error, never padded nor truncated): an ambiguous answer (rules above), a number
    of points other than 6, points with one or more than three numbers, non-finite values (nan,
    inf, or overflow), and text with no recognisable point list at all. Mixed 2-D/3-D points are
    refused too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vla_world.data.records import NUM_FUTURE

TRAJ_START = "<traj_start>"
TRAJ_END = "<traj_end>"
ANSWER_START = "<answer>"
ANSWER_END = "</answer>"
PREDICTION_START = "<prediction>"
PREDICTION_END = "</prediction>"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"
_POINT = re.compile(r"\(([^()]*)\)")
_POINT_LIST = re.compile(r"\[\s*\((?:[^\[\]])*\)\s*\]", re.DOTALL)
_NUMBER_ONLY = re.compile(rf"^\s*(?:{_NUMBER})\s*$", re.IGNORECASE)
_PREDICTION_BLOCK = re.compile(re.escape(PREDICTION_START) + ".*?" + re.escape(PREDICTION_END), re.DOTALL)


@dataclass(frozen=True)
class ParsedTrajectory:
    """Result of `parse_trajectory`: exactly one of `waypoints` / `error` is None."""

    waypoints: np.ndarray | None  # (6, 2) float64, LiDAR frame, metres; None on failure
    error: str | None  # short reason when waypoints is None

    @property
    def ok(self) -> bool:
        return self.waypoints is not None


def format_trajectory(waypoints: np.ndarray, prior: np.ndarray | None = None) -> str:
    """(6, 2) metres in the LiDAR frame -> `<traj_start>[(x,y),...]<traj_end>` with 2 decimals; with
    `prior` ((6, 2) metres), the residual answer: waypoints - prior in whole centimetres (module doc)."""
    wp = _checked(waypoints, "waypoints")
    if prior is None:
        return f"{TRAJ_START}{format_points(wp)}{TRAJ_END}"
    residual = hundredths(wp) - hundredths(_checked(prior, "prior"))
    return TRAJ_START + "[" + ",".join(f"({x},{y})" for x, y in residual.tolist()) + "]" + TRAJ_END


def hundredths(values: np.ndarray) -> np.ndarray:
    """Integer hundredths of each value as `format_number` prints it (the prompt's and the answer's precision)."""
    flat = [round(float(format_number(v)) * 100) for v in np.asarray(values, dtype=np.float64).ravel()]
    return np.array(flat, dtype=np.int64).reshape(np.shape(values))


def _checked(points: np.ndarray, name: str) -> np.ndarray:
    wp = np.asarray(points, dtype=np.float64)
    if wp.shape != (NUM_FUTURE, 2):
        raise ValueError(f"trajectory codec: expected {name} of shape ({NUM_FUTURE}, 2), got {wp.shape}")
    if not np.isfinite(wp).all():
        raise ValueError(f"trajectory codec: {name} contain nan or inf; fix the predictor, not the text")
    return wp


def format_number(value: float) -> str:
    """Two decimals, and never "-0.00": equal trajectories give equal strings (the one number format of all prompts and answers)."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def format_points(points: np.ndarray, mask: np.ndarray | None = None) -> str:
    """`[(x,y),...]` with `format_number` and no spaces; points where `mask` is False print as (UN,UN)."""
    items = []
    for i, (x, y) in enumerate(np.asarray(points, dtype=np.float64)):
        known = mask is None or bool(mask[i])
        items.append(f"({format_number(x)},{format_number(y)})" if known else "(UN,UN)")
    return "[" + ",".join(items) + "]"


def parse_trajectory(text: str, prior: np.ndarray | None = None) -> ParsedTrajectory:
    """Read six (x, y) waypoints from model text; never raises on the text (see the module doc's rules).

    `prior`: the (6, 2) prior of the prompt, for a residual answer (centimetres added to it); a prior
    of the wrong shape or with nan is the caller's error (ValueError)."""
    base = None if prior is None else hundredths(_checked(prior, "prior")) / 100.0
    if not isinstance(text, str):
        return _fail(f"expected text, got {type(text).__name__}")
    body, error = _trajectory_body(text)
    if body is None:
        return _fail(error)
    points = _POINT.findall(body)
    if len(points) != NUM_FUTURE:
        return _fail(f"wrong number of points: {len(points)} instead of {NUM_FUTURE}")
    rows = []
    for i, point in enumerate(points):
        parts = point.split(",")
        if not all(_NUMBER_ONLY.match(p) for p in parts):
            return _fail(f"point {i + 1} is not a list of numbers: ({point.strip()})")
        if len(parts) not in (2, 3):
            return _fail(f"point {i + 1} has {len(parts)} coordinates instead of 2")
        rows.append([float(p) for p in parts])
    if len({len(r) for r in rows}) != 1:
        return _fail("points mix 2 and 3 coordinates")
    waypoints = np.array(rows, dtype=np.float64)[:, :2]
    if base is not None:
        waypoints = base + waypoints / 100.0
    if not np.isfinite(waypoints).all():
        return _fail("non-finite value")
    return ParsedTrajectory(waypoints=waypoints, error=None)


def _trajectory_body(text: str) -> tuple[str | None, str | None]:
    """(the one bracketed point list that is the answer, None) or (None, why there is none)."""
    scope, error = _tagged_span(_PREDICTION_BLOCK.sub(" ", text), ANSWER_START, ANSWER_END)
    if error:
        return None, error
    span, error = _tagged_span(scope, TRAJ_START, TRAJ_END)
    if error:
        return None, error
    lists = _POINT_LIST.findall(span)
    if not lists:
        return None, "no trajectory found"
    if len(lists) > 1:
        where = f"between {TRAJ_START} and {TRAJ_END}" if TRAJ_START in scope else f"and no {TRAJ_START} tag"
        return None, f"ambiguous: {len(lists)} point lists {where}"
    return lists[0], None


def _tagged_span(text: str, start_tag: str, end_tag: str) -> tuple[str, str | None]:
    """The text inside `start_tag`...`end_tag` (to the end if unclosed); all of `text` without the tag."""
    count = text.count(start_tag)
    if count == 0:
        return text, None
    if count > 1:
        return "", f"ambiguous: {count} {start_tag} tags"
    rest = text[text.index(start_tag) + len(start_tag):]
    end = rest.find(end_tag)
    return (rest if end < 0 else rest[:end]), None


def _fail(reason: str) -> ParsedTrajectory:
    return ParsedTrajectory(waypoints=None, error=reason)
