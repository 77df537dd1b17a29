"""Fixed vocabularies of the driving QA: meta-actions, their reasons, and how to find them in text.

Why a fixed vocabulary: the action/reason metrics of the BDD-OIA line of work (papers 001/003)
compare labels, not prose, so the targets must use exact phrases and the metric must be able to
find them again in a model's answer.

The 4 actions follow BDD-OIA. The 21 reasons keep BDD-OIA's count and spirit but are adapted to
what our labels can see: every reason is derived from ground-truth agents, map polylines and the
ego's future (see `vla_world.qa.labels`). Annotations carry no traffic-light state, so BDD-OIA's
light/sign reasons become one honest "unseen cause" reason for stops we cannot explain.

Written by `action_sentence` / `structured_answer` (the labels' templates, also used by the
command-copy answerer) and read back by `find_action` / `find_reasons`.
"""

from __future__ import annotations

import json
import re

KEEP_FORWARD, STOP, TURN_LEFT, TURN_RIGHT = "keep forward", "stop/slow down", "turn left", "turn right"
ACTIONS: tuple[str, ...] = (KEEP_FORWARD, STOP, TURN_LEFT, TURN_RIGHT)

# Reasons grouped by the action they justify (BDD-OIA groups them the same way).
REASONS_BY_ACTION: dict[str, tuple[str, ...]] = {
    KEEP_FORWARD: (
        "road is clear",  # nothing in the ego's corridor
        "follow traffic",  # a moving lead vehicle ahead in the corridor
        "starting from a stop",  # was (nearly) stopped and speeds up: BDD-OIA's "light turned green"
    ),
    STOP: (
        "obstacle: car",
        "obstacle: large vehicle",  # truck, bus, trailer, construction vehicle
        "obstacle: person",
        "obstacle: rider",  # bicycle, motorcycle
        "obstacle: others",  # traffic cone, barrier
        "front car is stopping",
        "front car is slower",
        "pedestrian is crossing",
        "crosswalk ahead",
        "unseen cause",  # e.g. a traffic light: no annotation shows it
    ),
    TURN_LEFT: ("route turns left", "road turns left", "changing to the left lane", "front car turning left"),
    TURN_RIGHT: ("route turns right", "road turns right", "changing to the right lane", "front car turning right"),
}
REASONS: tuple[str, ...] = tuple(r for group in REASONS_BY_ACTION.values() for r in group)
assert len(REASONS) == 21 and len(set(REASONS)) == 21

# Obstacle reason per detection class (DETECTION_CLASSES names).
OBSTACLE_REASON: dict[str, str] = {
    "car": "obstacle: car",
    "truck": "obstacle: large vehicle",
    "bus": "obstacle: large vehicle",
    "trailer": "obstacle: large vehicle",
    "construction_vehicle": "obstacle: large vehicle",
    "pedestrian": "obstacle: person",
    "bicycle": "obstacle: rider",
    "motorcycle": "obstacle: rider",
    "traffic_cone": "obstacle: others",
    "barrier": "obstacle: others",
}


def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first so that a phrase never matches inside a longer one; word boundaries so that
    # "turn left" does not match inside "turns left" or "front car turning left".
    ordered = sorted(phrases, key=len, reverse=True)
    return re.compile(r"(?<![\w])(" + "|".join(re.escape(p) for p in ordered) + r")(?![\w])", re.IGNORECASE)


_ACTION_RE = _phrase_pattern(ACTIONS)
_REASON_RE = _phrase_pattern(REASONS)


def find_action(text: str) -> str | None:
    """The first action phrase in `text` (after "Action:" when present), or None."""
    start = text.lower().find("action:")
    match = _ACTION_RE.search(text, start + 1 if start >= 0 else 0)
    return match.group(1).lower() if match else None


def find_reasons(text: str) -> list[str]:
    """Every reason phrase in `text` (after "Reasons:" when present), in vocabulary order."""
    start = text.lower().find("reasons:")
    found = {m.group(1).lower() for m in _REASON_RE.finditer(text, start + 1 if start >= 0 else 0)}
    return [r for r in REASONS if r in found]


def action_sentence(action: str, reasons: list[str] | tuple[str, ...]) -> str:
    """`Action: <action>. Reasons: <r1>; <r2>.`: the head of every qa_action answer."""
    return f"Action: {action}. Reasons: {'; '.join(reasons)}."


def structured_answer(description: str, action: str, reasons: list[str] | tuple[str, ...]) -> str:
    """The qa_structured answer: one JSON object with description, action and justification."""
    return json.dumps({"description": description, "action": action, "justification": list(reasons)})
