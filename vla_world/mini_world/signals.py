"""Fixed-time traffic-light plans: each junction arm gets its own green, then all pedestrians walk.

Why one arm at a time plus an all-pedestrian phase: no two green movements ever cross, so the
simulator needs no conflict resolution inside junctions, and crossing pedestrians never meet a
green vehicle (vehicles still yield to anyone on their path). Times are seconds from the scene
start.
"""

from __future__ import annotations

from dataclasses import dataclass

GREEN_SECONDS = 6.0
ALL_RED_SECONDS = 1.5
WALK_SECONDS = 8.0
WALK = -2  # phase label: pedestrians cross, all vehicle lights red
ALL_RED = -1


@dataclass(frozen=True)
class SignalPlan:
    """A cyclic plan: `phases` = [(label, seconds)] with labels = arm index or WALK; phase 0 starts at `anchor`."""

    phases: tuple[tuple[int, float], ...]
    anchor: float

    @property
    def cycle(self) -> float:
        return sum(duration + ALL_RED_SECONDS for _, duration in self.phases)

    def state(self, t: float) -> int:
        """Green arm index, WALK, or ALL_RED at time t."""
        u = (t - self.anchor) % self.cycle
        for label, duration in self.phases:
            if u < duration:
                return label
            u -= duration
            if u < ALL_RED_SECONDS:
                return ALL_RED
            u -= ALL_RED_SECONDS
        return ALL_RED

    def walk_remaining(self, t: float) -> float:
        """Seconds of WALK left at time t (0 when not in the walk phase)."""
        u = (t - self.anchor) % self.cycle
        for label, duration in self.phases:
            if u < duration:
                return duration - u if label == WALK else 0.0
            u -= duration + ALL_RED_SECONDS
        return 0.0


def standard_plan(arms: list[int], anchor: float, first_arm: int | None = None, first_green: float = GREEN_SECONDS) -> SignalPlan:
    """Arms in CCW order starting at `first_arm` (green for `first_green` s), then the walk phase."""
    order = sorted(arms)
    if first_arm is not None:
        k = order.index(first_arm)
        order = order[k:] + order[:k]
    phases = [(arm, first_green if i == 0 and first_arm is not None else GREEN_SECONDS) for i, arm in enumerate(order)]
    return SignalPlan(tuple(phases) + ((WALK, WALK_SECONDS),), anchor)
