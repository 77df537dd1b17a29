"""Motion stage: each agent's 6 future waypoints in its own frame, asked through its agent token.

Own frame: origin at the agent's current box centre, +y along its current heading, +x to its
right, metres; steps t = 0.5 .. 3.0 s. A frame attached to the agent makes "keep going straight"
the same text for every agent, whatever its position and heading around the ego.

Masked steps (the instance is not annotated at that keyframe, or the scene ends) are written
`(UN,UN)` as in OpenDriveVLA, and the mask travels in meta["future_mask"] so a scorer can ignore
them; agents with fewer than `motion_min_valid_steps` annotated steps get no example at all.
Numbers are written by `planning.codec.format_points`, the one number format of every prompt and
answer (two decimals, never "-0.00", so equal futures give equal strings).
"""

from __future__ import annotations

from planning.codec import format_points
from vla_world.data.planner_input import planner_input
from vla_world.data.records import SampleRecord
from vla_world.qa import questions
from vla_world.qa.config import StageDataConfig
from vla_world.qa.facts import agent_facts, own_frame_future
from vla_world.qa.stage_example import StageExample


def motion_examples(record: SampleRecord, seed: int, config: StageDataConfig) -> list[StageExample]:
    """One example per nearby agent with enough annotated future (nearest first)."""
    inp = planner_input(record)
    examples = []
    for agent in agent_facts(record, config.max_range_m):
        if len(examples) == config.max_motion_agents:
            break
        own, mask = own_frame_future(record, agent.index)
        if int(mask.sum()) < config.motion_min_valid_steps:
            continue
        question = questions.motion_question(inp, seed, agent.track_id)
        examples.append(StageExample(record.sample_token, "motion", "agent_motion", question, format_points(own, mask),
                                     focus_track_id=agent.track_id,
                                     meta={"class": agent.cls, "future_mask": mask.tolist(), "future_own": own.round(2).tolist()}))
    return examples

