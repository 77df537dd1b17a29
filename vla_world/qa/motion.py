"""Motion stage: each agent's 6 future waypoints in its own frame, asked through its agent token.

Own frame: origin at the agent's current box centre, +y along its current heading, +x to its
right, metres; steps t = 0.5 .. 3.0 s. A frame attached to the agent makes "keep going straight"
the same text for every agent, whatever its position and heading around the ego.

Masked steps (the instance is not annotated at that keyframe, or the scene ends) are written
`(UN,UN)` as in OpenDriveVLA, and the mask travels in meta["future_mask"] so a scorer can ignore
them; agents with fewer than `motion_min_valid_steps` annotated steps get no example at all.
"""

from __future__ import annotations

import numpy as np

from vla_world.data.records import SampleRecord
from vla_world.qa.config import StageDataConfig
from vla_world.qa.examples import StageExample
from vla_world.qa.facts import agent_facts, own_frame_future
from vla_world.qa.phrasing import Chooser, class_word

UNKNOWN = "(UN,UN)"
MOTION_QUESTIONS = (
    "Predict the future trajectory of this {cls} for the next 3 seconds, in its own frame.",
    "Where will this {cls} be over the next 3 seconds? Give 6 waypoints in its own frame.",
)


def motion_examples(record: SampleRecord, seed: int, config: StageDataConfig) -> list[StageExample]:
    """One example per nearby agent with enough annotated future (nearest first)."""
    choose = Chooser(seed, record.sample_token, "motion")
    examples = []
    for agent in agent_facts(record, config.max_range_m):
        if len(examples) == config.max_motion_agents:
            break
        own, mask = own_frame_future(record, agent.index)
        if int(mask.sum()) < config.motion_min_valid_steps:
            continue
        question = choose.pick(MOTION_QUESTIONS).format(cls=class_word(agent.cls))
        examples.append(StageExample(record.sample_token, "motion", "agent_motion", question, format_motion(own, mask),
                                     focus_track_id=agent.track_id,
                                     meta={"class": agent.cls, "future_mask": mask.tolist(), "future_own": own.round(2).tolist()}))
    return examples


def format_motion(waypoints: np.ndarray, mask: np.ndarray) -> str:
    """`[(x,y),...,(UN,UN)]`: 2 decimals, no spaces, the style of `planning.codec.format_trajectory`."""
    points = [f"({_fmt(x)},{_fmt(y)})" if ok else UNKNOWN for (x, y), ok in zip(waypoints, mask)]
    return "[" + ",".join(points) + "]"


def _fmt(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text  # equal futures must give equal strings
