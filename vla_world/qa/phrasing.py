"""Words for facts: positions, motion, counts, and a seeded chooser between phrasings.

Several phrasings per fact keep the align and instruct targets from collapsing into one fixed
sentence the LLM memorises; the chooser is seeded by (seed, sample token, purpose), so the text of
a sample does not depend on which other samples are built with it or in which order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from vla_world.qa.facts import AgentFact

T = TypeVar("T")


class Chooser:
    """Deterministic choice between phrasings for one (seed, sample, purpose)."""

    def __init__(self, seed: int, sample_token: str, purpose: str) -> None:
        # A string seed is hashed with SHA-512 by `random`, so it is stable across processes.
        self._rng = random.Random(f"{seed}|{sample_token}|{purpose}")

    def pick(self, options: Sequence[T]) -> T:
        return options[self._rng.randrange(len(options))]

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        return self._rng.sample(list(options), min(k, len(options)))


def metres(value: float) -> str:
    """`12 m` from 10 m on, `3.4 m` below: nearer things need finer words."""
    value = abs(value)
    return f"{value:.0f} m" if value >= 10 else f"{value:.1f} m"


def where(x: float, y: float, choose: Chooser) -> str:
    """Position relative to the ego in words (LiDAR frame: x right, y forward, metres)."""
    along = None if abs(y) < 1.0 else f"{metres(y)} {'ahead' if y > 0 else 'behind'}"
    across = None if abs(x) < 1.0 else f"{metres(x)} to the {'right' if x > 0 else 'left'}"
    if along and across:
        # No commas inside a position: positions are themselves joined into comma lists.
        return choose.pick((f"{along} and {across}", f"{across} and {along}"))
    if along:
        word = "ahead" if y > 0 else "behind"
        return choose.pick((f"{metres(y)} straight {word}", f"{metres(y)} directly {word}"))
    if across:
        return choose.pick((f"{across} level with the ego", f"alongside the ego {across}"))
    return "right at the ego's position"


def bev(x: float, y: float) -> str:
    return f"({x:.1f}, {y:.1f})"


def class_word(cls: str, plural: bool = False) -> str:
    word = {"construction_vehicle": "construction vehicle", "traffic_cone": "traffic cone"}.get(cls, cls)
    if not plural:
        return word
    return {"bus": "buses", "pedestrian": "pedestrians"}.get(cls, word + "s")


def count(n: int, cls: str) -> str:
    return f"{'no' if n == 0 else n} {class_word(cls, plural=n != 1)}"


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def heading_words(agent: AgentFact) -> str:
    """Direction of travel relative to the ego's heading."""
    rel = agent.heading_rel_deg
    if abs(rel) <= 30:
        return "in the same direction as the ego"
    if abs(rel) >= 150:
        return "towards the ego, in the opposite direction"
    return f"{'leftwards' if rel > 0 else 'rightwards'} across the ego's direction"


def motion_words(agent: AgentFact, choose: Chooser) -> str:
    if not agent.moving:
        return choose.pick(("stationary", "not moving", "standing still"))
    speed = f"{agent.speed:.1f} m/s"
    return choose.pick((f"moving at {speed} {heading_words(agent)}", f"travelling {heading_words(agent)} at {speed}"))


def describe_agent(agent: AgentFact, choose: Chooser) -> str:
    """Short reference such as "the car 12 m ahead and 3.0 m to the right"."""
    return f"the {class_word(agent.cls)} {where(agent.x, agent.y, choose)}"


def join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
