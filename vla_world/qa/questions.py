"""Every question the QA stages ask, written from the `PlannerInput` only (plus the focus agent's id).

Why a module of its own, with that type: a question is part of the prompt, and the prompt must
not carry labels. The builders used to write questions from the `SampleRecord`, which holds the
futures and the ground-truth boxes; three things leaked through that door:

  * the prediction question named the agent by its ground-truth class and position ("What will
    the car 12 m ahead and 3.0 m to the right do?"), and the motion question by its class:
    ground truth of now, in text, next to a token that perception may have placed elsewhere;
  * the counting question picked its class among the classes present 3 times in 4, so asking
    "How many buses ...?" said there probably is one;
  * every wording was drawn from one random stream per sample shared with the answers, so which
    wording a question got depended on how many draws the answers before it had made, and those
    answers read the futures (e.g. the attention answer's length).

Here each question has its own chooser, seeded by (seed, sample token, stage, question slot), and
reads nothing but the `PlannerInput` and, for an agent question, the focus agent's track id
(whose token the model gets in an `<object>` block). `tests/test_qa_examples.py` builds examples
from records whose futures are nan and checks every question is unchanged.
"""

from __future__ import annotations

from vla_world.data.planner_input import PlannerInput
from vla_world.data.records import DETECTION_CLASSES
from vla_world.qa.phrasing import Chooser, class_word

SCENE_QUESTIONS = (
    "Describe the driving scene around the ego vehicle.",
    "What does the scene around the ego car look like?",
    "Give a caption of the current traffic scene.",
)
AGENT_QUESTIONS = (
    "Please provide a caption and the BEV coordinate for this object.",
    "Describe this object: what is it, where is it and how is it moving?",
    "What is this object and where is it relative to the ego?",
)
MAP_QUESTIONS = (
    "Describe the map elements around the ego vehicle.",
    "What is the road layout around the ego car?",
    "Please provide a caption for the map.",
)
# Half the counting questions ask about the two commonest road users, half about any class; the
# choice never looks at the scene, so "no buses" is as learnable an answer as "2 buses".
COMMON_CLASSES = ("car", "pedestrian")
NEAREST_QUESTIONS = ("What is the closest road user to the ego vehicle?", "Which object is nearest to the ego car?")
PREDICTION_QUESTIONS = (
    "What will this road user do in the next 3 seconds?",
    "Predict the behaviour of this road user over the next 3 seconds.",
)
ATTENTION_QUESTIONS = (
    "Which road users should the ego vehicle pay attention to, and why?",
    "What are the important objects for the ego's next 3 seconds?",
)
ACTION_QUESTIONS = ("What should the ego vehicle do next, and why?",
                    "Which driving action fits this scene, and for what reason?")
STRUCTURED_QUESTION = ("Describe the scene, choose the driving action and justify it. Reply in JSON with the keys "
                       "\"description\", \"action\" and \"justification\".")
MOTION_QUESTIONS = (
    "Predict the future trajectory of this object for the next 3 seconds, in its own frame.",
    "Where will this object be over the next 3 seconds? Give 6 waypoints in its own frame.",
)


def _chooser(inp: PlannerInput, seed: int, stage: str, slot: str) -> Chooser:
    return Chooser(seed, inp.sample_token, f"{stage}/question/{slot}")


def scene_caption_question(inp: PlannerInput, seed: int) -> str:
    return _chooser(inp, seed, "align", "scene").pick(SCENE_QUESTIONS)


def agent_caption_question(inp: PlannerInput, seed: int, track_id: int) -> str:
    return _chooser(inp, seed, "align", f"agent/{track_id}").pick(AGENT_QUESTIONS)


def map_caption_question(inp: PlannerInput, seed: int) -> str:
    return _chooser(inp, seed, "align", "map").pick(MAP_QUESTIONS)


def count_question(inp: PlannerInput, seed: int) -> tuple[str, str]:
    """(class asked about, question); the class is drawn without looking at the scene."""
    choose = _chooser(inp, seed, "instruct", "count")
    cls = choose.pick(COMMON_CLASSES) if choose.pick((True, False)) else choose.pick(DETECTION_CLASSES)
    return cls, choose.pick((f"How many {class_word(cls, True)} are around the ego vehicle?",
                             f"Count the {class_word(cls, True)} near the ego car."))


def nearest_question(inp: PlannerInput, seed: int) -> str:
    return _chooser(inp, seed, "instruct", "nearest").pick(NEAREST_QUESTIONS)


def prediction_question(inp: PlannerInput, seed: int, track_id: int) -> str:
    return _chooser(inp, seed, "instruct", f"prediction/{track_id}").pick(PREDICTION_QUESTIONS)


def attention_question(inp: PlannerInput, seed: int) -> str:
    return _chooser(inp, seed, "instruct", "attention").pick(ATTENTION_QUESTIONS)


def action_question(inp: PlannerInput, seed: int) -> str:
    return _chooser(inp, seed, "instruct", "action").pick(ACTION_QUESTIONS)


def structured_question(inp: PlannerInput, seed: int) -> str:
    return STRUCTURED_QUESTION


def motion_question(inp: PlannerInput, seed: int, track_id: int) -> str:
    return _chooser(inp, seed, "motion", f"agent/{track_id}").pick(MOTION_QUESTIONS)
