"""Text form of an ego trajectory: what the LLM writes and what we read back from it.

The planner's answer is one string in the current LiDAR_TOP frame (x right, y forward, metres),
six waypoints at t = 0.5 .. 3.0 s, two decimals, no spaces:

    <traj_start>[(0.01,2.50),(0.03,5.01),(0.05,7.52),(0.08,10.03),(0.11,12.55),(0.15,15.07)]<traj_end>

`format_trajectory` writes exactly that; `parse_trajectory` reads a model's free text and never
raises: it returns a `ParsedTrajectory` whose `waypoints` is a finite (6, 2) float array or None,
with `error` saying why not.

Repair policy (what the parser forgives, and what it refuses):
  * forgiven: missing `<traj_start>` / `<traj_end>` tags (we then take the first bracketed list
    of points in the text), whitespace anywhere, a missing closing tag, text before or after,
    integers and exponents (`3`, `1e-2`), and a third coordinate per point (z is dropped,
    since some models echo 3-D waypoints).
  * refused (an error, never padded nor truncated): a number of points other than 6, points
    with one or more than three numbers, non-finite values (nan, inf, or overflow), and text
    with no recognisable point list at all. Mixed 2-D/3-D points are refused too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vla_world.data.records import NUM_FUTURE

TRAJ_START = "<traj_start>"
TRAJ_END = "<traj_end>"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"
_POINT = re.compile(r"\(([^()]*)\)")
_POINT_LIST = re.compile(r"\[\s*\((?:[^\[\]])*\)\s*\]", re.DOTALL)
_NUMBER_ONLY = re.compile(rf"^\s*(?:{_NUMBER})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedTrajectory:
    """Result of `parse_trajectory`: exactly one of `waypoints` / `error` is None."""

    waypoints: np.ndarray | None  # (6, 2) float64, LiDAR frame, metres; None on failure
    error: str | None  # short reason when waypoints is None

    @property
    def ok(self) -> bool:
        return self.waypoints is not None


def format_trajectory(waypoints: np.ndarray) -> str:
    """(6, 2) metres in the LiDAR frame -> `<traj_start>[(x,y),...]<traj_end>` with 2 decimals."""
    wp = np.asarray(waypoints, dtype=np.float64)
    if wp.shape != (NUM_FUTURE, 2):
        raise ValueError(f"format_trajectory: expected waypoints of shape ({NUM_FUTURE}, 2), got {wp.shape}")
    if not np.isfinite(wp).all():
        raise ValueError("format_trajectory: waypoints contain nan or inf; fix the predictor, not the text")
    # Tiny negatives would print as -0.00; _fmt writes 0.00 so equal trajectories give equal strings.
    points = ",".join(f"({_fmt(x)},{_fmt(y)})" for x, y in wp)
    return f"{TRAJ_START}[{points}]{TRAJ_END}"


def _fmt(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def parse_trajectory(text: str) -> ParsedTrajectory:
    """Read six (x, y) waypoints from model text; never raises (see the repair policy above)."""
    if not isinstance(text, str):
        return _fail(f"expected text, got {type(text).__name__}")
    body = _trajectory_body(text)
    if body is None:
        return _fail("no trajectory found")
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
    if not np.isfinite(waypoints).all():
        return _fail("non-finite value")
    return ParsedTrajectory(waypoints=waypoints, error=None)


def _trajectory_body(text: str) -> str | None:
    """The bracketed point list: after <traj_start> if present, else the first one in the text."""
    start = text.find(TRAJ_START)
    if start >= 0:
        rest = text[start + len(TRAJ_START):]
        end = rest.find(TRAJ_END)
        rest = rest if end < 0 else rest[:end]
        match = _POINT_LIST.search(rest)
        return match.group(0) if match else None
    match = _POINT_LIST.search(text)
    return match.group(0) if match else None


def _fail(reason: str) -> ParsedTrajectory:
    return ParsedTrajectory(waypoints=None, error=reason)
