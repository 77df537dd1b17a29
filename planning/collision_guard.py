"""The planner's last check before it answers: is the plan free of what perception sees?

Why it exists: a learned planner regresses toward the average future, and the average of "pass
left" and "pass right" can run through a car. Planners in the field guard their output with the
scene they perceive (UniAD's occupancy optimiser, PDM-Closed's scored proposals). This guard is
the plainest such rule, written out so it can be read and tested:

  1. forecast the perceived agents by constant velocity (their decoded boxes and velocities, the
     perception output the planner is handed, never labels) at t = 0.5 .. 3.0 s;
  2. draw them into a (6, 200, 200) occupancy in UniAD's layout (`planning.occupancy`);
  3. check a list of candidate plans in order of preference with the metric's own ego-box test
     (`planning.metrics.box_collisions`, UniAD's native grid);
  4. keep the first candidate with no colliding step; when every candidate collides, the one
     whose first collision comes latest (ties: the earlier candidate).

The candidates (`guard_candidates`) are, in order, the planner's own plan, the prompt's kinematic
(CTRA) prior, and the plan's path driven slower (re-timed to a fraction of its progress: braking,
the usual evasive action). The prior comes before braking because on val it was the better
replacement: a learned plan that perception finds in conflict is most often one that strayed from
the ego's own motion, and braking moves the plan further from where the ego goes (val: prior-first
lowered L2 where braking-first raised it; docs/model.md, "Collision guard"). A plan that perception
finds free is returned unchanged, so the guard only ever replaces plans it can name a perceived
conflict for.

Frames and units: the current LiDAR_TOP frame (x right, y forward, metres; yaw CCW from +x),
velocities m/s, plans (6, 2) at t = 0.5 .. 3.0 s.

    agents = PerceivedAgents(boxes, velocities, classes)     # perception output, not labels
    plan, chosen = guard_plan(plan, prior, agents)            # chosen: 0 = the plan itself
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planning.metrics import box_collisions
from planning.occupancy import GRID_CELLS, rasterize_box
from vla_world.data.records import DETECTION_CLASSES, FUTURE_SECONDS, NUM_FUTURE

# static clutter is outside the collision metric's occupancy (vehicles and humans only), so it is not guarded
UNGUARDED_CLASSES = frozenset({"barrier", "traffic_cone"})
SLOWER_FRACTIONS = (0.75, 0.5, 0.25)  # the re-timed candidates: this share of the plan's progress at each step


@dataclass(frozen=True)
class PerceivedAgents:
    """The agents perception reports for one keyframe (LiDAR frame, module doc)."""

    boxes: np.ndarray  # (A, 7) x, y, z, w, l, h, yaw
    velocities: np.ndarray  # (A, 2) m/s
    classes: np.ndarray  # (A,) int index into records.DETECTION_CLASSES

    def __post_init__(self) -> None:
        a = len(self.boxes)
        if np.shape(self.boxes) != (a, 7) or np.shape(self.velocities) != (a, 2) or np.shape(self.classes) != (a,):
            raise ValueError(f"PerceivedAgents: boxes {np.shape(self.boxes)}, velocities {np.shape(self.velocities)}, "
                             f"classes {np.shape(self.classes)}; expected (A, 7), (A, 2), (A,)")

    def guarded(self) -> PerceivedAgents:
        """The agents the guard checks against: vehicles and humans, with finite boxes and velocities."""
        names = np.array([DETECTION_CLASSES[int(c)] for c in self.classes], dtype=object)
        keep = ~np.isin(names, list(UNGUARDED_CLASSES)) if len(names) else np.zeros(0, bool)
        keep &= np.isfinite(self.boxes).all(axis=1) & np.isfinite(self.velocities).all(axis=1)
        return PerceivedAgents(self.boxes[keep], self.velocities[keep], self.classes[keep])


def forecast_occupancy(agents: PerceivedAgents) -> np.ndarray:
    """(6, 200, 200) uint8: the guarded agents moved at constant velocity to t = 0.5 .. 3.0 s (UniAD layout)."""
    frames = np.zeros((NUM_FUTURE, GRID_CELLS, GRID_CELLS), np.uint8)
    agents = agents.guarded()
    for step, seconds in enumerate(FUTURE_SECONDS):
        for box, velocity in zip(agents.boxes, agents.velocities):
            moved = np.asarray(box, np.float64).copy()
            moved[:2] += velocity * seconds
            rasterize_box(moved, frames[step])
    return frames


def retimed(plan: np.ndarray, fraction: float) -> np.ndarray:
    """(6, 2): the same path, `fraction` of the way along it at each step (linear between the origin and the waypoints)."""
    times = np.concatenate([[0.0], FUTURE_SECONDS])
    path = np.concatenate([np.zeros((1, 2)), np.asarray(plan, np.float64)])
    slowed = fraction * FUTURE_SECONDS
    return np.stack([np.interp(slowed, times, path[:, axis]) for axis in range(2)], axis=1)


def guard_candidates(plan: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """(K, 6, 2) in order of preference: the plan, the prior (when given), the plan re-timed slower."""
    rows = [np.asarray(plan, np.float64)] + ([] if prior is None else [np.asarray(prior, np.float64)])
    return np.stack(rows + [retimed(plan, f) for f in SLOWER_FRACTIONS])


def guard_candidate_name(index: int, has_prior: bool = True) -> str:
    """What candidate `index` of `guard_candidates(plan, prior)` is, in words (for reports)."""
    if index == 0:
        return "the plan as decoded"
    if has_prior and index == 1:
        return "the CTRA prior"
    return f"the plan's path at {SLOWER_FRACTIONS[index - 1 - has_prior]:.0%} of its progress"


def choose_candidate(candidates: np.ndarray, occupancy: np.ndarray) -> int:
    """Index of the first candidate with no colliding step, else of the one whose first collision is latest."""
    hits = box_collisions(candidates, np.broadcast_to(occupancy, (len(candidates), *occupancy.shape)), "uniad")
    free = ~hits.any(axis=1)
    if free.any():
        return int(np.argmax(free))
    first_hit = hits.argmax(axis=1)  # every row has a hit here
    return int(np.argmax(first_hit))  # argmax keeps the earliest candidate among ties


def guard_plan(plan: np.ndarray, prior: np.ndarray | None, agents: PerceivedAgents) -> tuple[np.ndarray, int]:
    """The plan to answer with and the index of the candidate it is (0: `plan` itself, unchanged)."""
    occupancy = forecast_occupancy(agents)
    if not occupancy.any():
        return np.asarray(plan), 0
    candidates = guard_candidates(plan, prior)
    chosen = choose_candidate(candidates, occupancy)
    return (np.asarray(plan) if chosen == 0 else candidates[chosen]), chosen
