"""Instruct stage: driving QA about perception, prediction, attention and the ego's action.

Each question is asked twice about the same sample, as two separate entries (Drive-VLM's
split-entry hybrid granularity): a "detailed" answer that explains, and a "concise" one a co-pilot
would say. The question ends with a fixed mode phrase so the model can tell which one is wanted.
Action answers use the fixed vocabulary of `vla_world.qa.vocab` so the metrics can score them;
`qa_structured` holds description, action and justification as one JSON object (papers 001/003).
Questions come from `vla_world.qa.questions` (the planner's input only); answers and labels from
the record (`vla_world.qa.labels`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from vla_world.data.planner_input import PlannerInput, planner_input
from vla_world.data.records import DETECTION_CLASSES, SampleRecord
from vla_world.qa import labels, questions, vocab
from vla_world.qa.captions import ego_motion, scene_caption
from vla_world.qa.config import StageDataConfig
from vla_world.qa.facts import (
    AgentFact,
    MapFacts,
    agent_facts,
    end_speed,
    map_facts,
    own_frame_future,
    valid_prefix,
)
from vla_world.qa.phrasing import (
    Chooser,
    article,
    bev,
    class_word,
    count,
    describe_agent,
    join,
    metres,
    motion_words,
    where,
)
from vla_world.qa.stage_example import GRANULARITIES, StageExample

MODE_SUFFIX = {"detailed": " Explain in detail.", "concise": " Answer briefly."}
MAX_LISTED = 5  # agents named one by one in a detailed answer; the rest are counted


@dataclass
class Asked:
    """One question with its detailed and concise answers (two StageExamples)."""

    kind: str
    question: str
    answers: dict[str, str]  # granularity -> answer
    focus_track_id: int | None = None
    meta: dict = field(default_factory=dict)


def driving_qa_examples(record: SampleRecord, seed: int, config: StageDataConfig) -> list[StageExample]:
    """Perception, prediction, attention, action and structured QA, each detailed and concise."""
    agents = agent_facts(record, config.max_range_m)
    inp = planner_input(record)  # what the questions may read; the answers read the record
    choose = Chooser(seed, record.sample_token, "instruct")  # answers' phrasing; each question has its own
    layout = map_facts(record, config.max_range_m)
    important = labels.attention(record, agents)
    asked = _perception(inp, seed, agents, choose) + _prediction(inp, seed, record, agents, config, choose)
    asked.append(_attention(questions.attention_question(inp, seed), important, choose))
    action = labels.ego_action(record, agents)
    if action is not None:  # fewer than 2 annotated future steps: no label to teach or score
        reasons = labels.ego_reasons(record, action, agents)
        asked.append(_action(questions.action_question(inp, seed), record, important, action, reasons, choose))
        asked.append(_structured(questions.structured_question(inp, seed), record, agents, layout, action, reasons,
                                 choose))
    return [StageExample(record.sample_token, "instruct", a.kind, a.question + MODE_SUFFIX[g], a.answers[g],
                         a.focus_track_id, {**a.meta, "granularity": g})
            for a in asked for g in GRANULARITIES]


def _perception(inp: PlannerInput, seed: int, agents: list[AgentFact], choose: Chooser) -> list[Asked]:
    cls, question = questions.count_question(inp, seed)
    of_class = [a for a in agents if a.cls == cls]
    listed = [where(a.x, a.y, choose) for a in of_class[:MAX_LISTED]]
    more = f", and {len(of_class) - MAX_LISTED} more" if len(of_class) > MAX_LISTED else ""
    counted = {"concise": f"{count(len(of_class), cls).capitalize()}.",
               "detailed": f"There {'is' if len(of_class) == 1 else 'are'} {count(len(of_class), cls)} around the ego"
                           + (": " + "; ".join(listed) + more if listed else "") + "."}
    nearest = questions.nearest_question(inp, seed)
    return [Asked("qa_perception", question, counted, meta={"question_type": "count", "class": cls, "count": len(of_class)}),
            Asked("qa_perception", nearest, _nearest(agents, choose), meta={"question_type": "nearest"})]


def _nearest(agents: list[AgentFact], choose: Chooser) -> dict[str, str]:
    if not agents:
        return {"concise": "None nearby.", "detailed": "There is no road user within the perception range."}
    a = agents[0]
    name = article(class_word(a.cls))
    return {"concise": f"{name.capitalize()}, {where(a.x, a.y, choose)}.",
            "detailed": f"The closest road user is {name}, {where(a.x, a.y, choose)} (BEV {bev(a.x, a.y)}), {motion_words(a, choose)}."}


def _prediction(inp: PlannerInput, seed: int, record: SampleRecord, agents: list[AgentFact], config: StageDataConfig,
                choose: Chooser) -> list[Asked]:
    # Moving agents first: parked cars would otherwise fill the quota with "stay stopped".
    ranked = sorted(agents, key=lambda a: (not a.moving, a.distance))
    asked = []
    for agent in ranked:
        if len(asked) == config.max_prediction_questions:
            break
        intent = labels.agent_intent(record, agent)
        if intent is None:
            continue
        own, mask = own_frame_future(record, agent.index)
        end = own[valid_prefix(mask) - 1]
        seconds = 0.5 * valid_prefix(mask)
        detailed = (f"{describe_agent(agent, choose).capitalize()} is {motion_words(agent, choose)}. Over the next {seconds:.1f} s "
                    f"it will {intent}, ending {_own_frame_words(end)}.")
        question = questions.prediction_question(inp, seed, agent.track_id)
        asked.append(Asked("qa_prediction", question, {"detailed": detailed, "concise": f"It will {intent}."},
                           agent.track_id, {"intent": intent}))
    return asked


def _own_frame_words(end: np.ndarray) -> str:
    """End point in the agent's own frame (x right, y its heading), metres."""
    if np.hypot(*end) < 1.0:
        return "about where it is now"
    along = f"{metres(end[1])} {'forward' if end[1] >= 0 else 'backward'}"
    if abs(end[0]) < 1.0:
        return f"{along} of where it is now"
    return f"{along} and {metres(end[0])} to its {'right' if end[0] > 0 else 'left'}"


def _attention(question: str, items: list[labels.Attention], choose: Chooser) -> Asked:
    meta = {"important_track_ids": [i.fact.track_id for i in items]}
    if not items:
        return Asked("qa_attention", question, {"concise": "None: the way ahead is clear.",
                "detailed": "No road user needs special attention: no vehicle leads in the ego's lane, no one enters "
                            "the ego's path within 3 s and no pedestrian is crossing ahead."}, meta=meta)
    named = [describe_agent(i.fact, choose) for i in items]
    detailed = " ".join(f"{n.capitalize()} matters: {join(i.why)}." for n, i in zip(named[:MAX_LISTED], items))
    return Asked("qa_attention", question, {"concise": join(named[:MAX_LISTED]).capitalize() + ".", "detailed": detailed}, meta=meta)


def _action(question: str, record: SampleRecord, important: list[labels.Attention], action: str, reasons: list[str],
            choose: Chooser) -> Asked:
    label = vocab.action_sentence(action, reasons)
    answers = {"concise": label, "detailed": f"{label} Explanation: {_explanation(record, important, choose)}"}
    return Asked("qa_action", question, answers, meta={"action": action, "reasons": reasons})


def _explanation(record: SampleRecord, important: list[labels.Attention], choose: Chooser) -> str:
    n = valid_prefix(record.ego_future_mask)
    end = record.ego_future[n - 1]
    v_end = end_speed(record.ego_future[:n])
    lateral = "" if abs(end[0]) < 1.0 else f" and {metres(end[0])} to the {'right' if end[0] > 0 else 'left'}"
    text = (f"The ego goes from {record.ego_speed:.1f} m/s now to {v_end:.1f} m/s in {0.5 * n:.1f} s, "
            f"covering {metres(end[1])} forward{lateral}.")
    if important:
        text += f" Key agent: {describe_agent(important[0].fact, choose)}, because {important[0].why[0]}."
    return text


def _structured(question: str, record: SampleRecord, agents: list[AgentFact], layout: MapFacts, action: str,
                reasons: list[str], choose: Chooser) -> Asked:
    by_class = Counter(a.cls for a in agents)
    short = ego_motion(record, choose) + " " + (
        ("Nearby: " + join([count(by_class[c], c) for c in DETECTION_CLASSES if by_class[c]]) + ".") if agents else "No agents nearby.")
    answers = {g: vocab.structured_answer(text, action, reasons)
               for g, text in (("detailed", scene_caption(record, agents, layout, choose)), ("concise", short))}
    return Asked("qa_structured", question, answers, meta={"action": action, "reasons": reasons})
