"""Align stage: captions for each token type (scene, each agent, the map), from ground truth.

OpenDriveVLA's hierarchical alignment teaches the projectors what scene, agent and map tokens
mean by captioning each. We write the captions from the record with templates (several phrasings
per fact, seeded choice), so they are exact and need no external caption data. The questions
come from `vla_world.qa.questions`, which reads only the planner's input.
"""

from __future__ import annotations

from collections import Counter

from vla_world.data.planner_input import planner_input
from vla_world.data.records import DETECTION_CLASSES, SampleRecord
from vla_world.qa import questions
from vla_world.qa.config import StageDataConfig
from vla_world.qa.facts import AgentFact, MapFacts, agent_facts, map_facts
from vla_world.qa.phrasing import (
    Chooser,
    article,
    bev,
    class_word,
    count,
    join,
    metres,
    motion_words,
    where,
)
from vla_world.qa.stage_example import StageExample


def caption_examples(record: SampleRecord, seed: int, config: StageDataConfig) -> list[StageExample]:
    """One scene caption, one map caption and one caption per nearby agent."""
    agents = agent_facts(record, config.max_range_m)
    layout = map_facts(record, config.max_range_m)
    inp, token = planner_input(record), record.sample_token
    choose = Chooser(seed, token, "align")  # answers' phrasing; questions have their own (vla_world.qa.questions)
    examples = [StageExample(token, "align", "scene_caption", questions.scene_caption_question(inp, seed),
                             scene_caption(record, agents, layout, choose))]
    for agent in agents[: config.max_agent_captions]:
        examples.append(StageExample(token, "align", "agent_caption", questions.agent_caption_question(inp, seed, agent.track_id),
                                     agent_caption(agent, choose), focus_track_id=agent.track_id, meta={"class": agent.cls}))
    examples.append(StageExample(token, "align", "map_caption", questions.map_caption_question(inp, seed),
                                 map_caption(layout, choose)))
    return examples


def scene_caption(record: SampleRecord, agents: list[AgentFact], layout: MapFacts, choose: Chooser) -> str:
    parts = [ego_motion(record, choose), _counts_sentence(agents, choose)]
    if agents:
        nearest = [f"{article(class_word(a.cls))} {where(a.x, a.y, choose)}" for a in agents[:3]]
        parts.append(choose.pick(("The nearest agents are ", "Closest to the ego are ")) + join(nearest) + ".")
    parts.append(_layout_sentence(layout, choose))
    return " ".join(parts)


def ego_motion(record: SampleRecord, choose: Chooser) -> str:
    speed, accel = float(record.ego_speed), float(record.ego_acceleration[1])  # y = along the ego heading
    if speed < 0.5:
        return choose.pick(("The ego vehicle is stopped.", "The ego car is standing still."))
    trend = "accelerating" if accel > 0.5 else "braking" if accel < -0.5 else "at a steady speed"
    turning = "" if abs(record.ego_yaw_rate) < 0.05 else f", turning {'left' if record.ego_yaw_rate > 0 else 'right'}"
    return choose.pick((f"The ego vehicle drives at {speed:.1f} m/s, {trend}{turning}.",
                        f"The ego car is moving at {speed:.1f} m/s ({trend}){turning}."))


def _counts_sentence(agents: list[AgentFact], choose: Chooser) -> str:
    if not agents:
        return choose.pick(("No other road users are around.", "There are no agents nearby."))
    by_class = Counter(a.cls for a in agents)
    listed = [count(by_class[c], c) for c in DETECTION_CLASSES if by_class[c]]
    return choose.pick(("Around the ego there are ", "The scene contains ")) + join(listed) + "."


def _layout_sentence(layout: MapFacts, choose: Chooser) -> str:
    sides = []
    for side, dist in (("left", layout.boundary_left_m), ("right", layout.boundary_right_m)):
        sides.append(f"the road boundary is {metres(dist)} to the {side}" if dist is not None else f"no road boundary is mapped to the {side}")
    crossing = (f"a pedestrian crossing is {metres(layout.crossing_ahead_m)} ahead" if layout.crossing_ahead_m is not None
                else "there is no pedestrian crossing ahead")
    return choose.pick(("On the road, ", "As for the layout, ")) + join(sides + [crossing]) + "."


def agent_caption(agent: AgentFact, choose: Chooser) -> str:
    name = class_word(agent.cls)
    return (choose.pick((f"This is {article(name)}", f"The object is {article(name)}"))
            + f", {where(agent.x, agent.y, choose)}, {motion_words(agent, choose)}. "
            + f"The BEV coordinate is {bev(agent.x, agent.y)}.")


def map_caption(layout: MapFacts, choose: Chooser) -> str:
    c = layout.counts
    total = sum(c.values())
    text = [choose.pick((f"The map shows {total} elements: ", f"There are {total} map elements: "))
            + join([_map_count(c["lane_divider"], "lane divider"), _map_count(c["road_boundary"], "road boundary"),
                    _map_count(c["ped_crossing"], "pedestrian crossing")]) + "."]
    text.append(f"Lane dividers: {layout.dividers_left} on the left and {layout.dividers_right} on the right of the ego.")
    text.append(_layout_sentence(layout, choose))
    return " ".join(text)


def _map_count(n: int, noun: str) -> str:
    plural = noun.replace("boundary", "boundaries") if noun.endswith("boundary") else noun + "s"
    return f"{n} {noun if n == 1 else plural}"

