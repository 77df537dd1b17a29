"""The sequence builder: one ChatML prompt per (record, perception tokens, question), and its labels.

The prompt is built by hand (no chat template), identical in training and inference:

    <|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n
    <|im_start|>user\n
    Scene information: <scene_start><SCENE>xS<scene_end>\n
    Object-wise tracking information: <agent_start><AGENT>xA<agent_end>\n
    Map information: <map_start><MAP>xM<map_end>\n
    Ego states: velocity (vx,vy) ... m/s, acceleration ..., yaw rate ..., speed ...\n
    Historical trajectory (last 2 seconds): [(x,y),(x,y),(x,y),(x,y)]\n
    Mission goal: keep forward\n
    Kinematic prior (CTRA, next 3 seconds): [(x,y),...]\n      (when enabled)
    Object: <object_start><OBJECT><object_end>\n               (agent questions only)
    {question}<|im_end|>\n
    <|im_start|>assistant\n{answer}<|im_end|>

Each placeholder (`<SCENE>`, `<AGENT>`, `<MAP>`, `<OBJECT>`) is one token repeated once per
perception token; `vla_world.model.vla` replaces their embeddings with the projected tokens in
order. Labels are -100 on the whole prompt; only the answer and its closing `<|im_end|>` are
supervised. All numbers are in the current LiDAR frame (x right, y forward), metres, 2 decimals.

`encode_conversation` packs several questions about one sample into one training sequence
(ChatML turns): the first turn is exactly what `encode` writes, each later user turn holds only
its `Object:` line (agent questions) and its question, and every answer is supervised. The long
prompt is then paid once per sample instead of once per question (see vla_world/model/packing.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from perception.tokens import PerceptionTokens
from vla_world.data.records import SampleRecord
from vla_world.model.kinematics import kinematic_prior
from vla_world.model.tokenizer import IM_END, IM_START, PLACEHOLDERS

IGNORE_INDEX = -100

SYSTEM_PROMPT = (
    "You are VLA-World, a driving planner. Coordinates: x to the right, y forward, metres; you are at (0,0). "
    "Plan 3 seconds as 6 waypoints, one every 0.5 s: <traj_start>[(x1,y1),(x2,y2),(x3,y3),(x4,y4),(x5,y5),"
    "(x6,y6)]<traj_end>. Answer other questions in plain text."
)
PLANNING_QUESTION = "Plan the ego trajectory for the next 3 seconds."


class FocusNotDetected(LookupError):
    """The question is about an agent that perception did not produce a token for."""


@dataclass(frozen=True)
class PromptOptions:
    kinematic_prior: bool = True  # add the CTRA rollout of the ego state as text (see model/kinematics.py)


@dataclass(frozen=True)
class Turn:
    """One question/answer of a conversation about a sample; `focus_track_id` names its agent, if any."""

    question: str
    answer: str
    focus_track_id: int | None = None


@dataclass
class EncodedSample:
    """Token ids, labels and the perception tokens (width D) for each placeholder kind, in order."""

    sample_token: str
    input_ids: list[int]
    labels: list[int]
    features: dict[str, torch.Tensor]  # "scene" (S, D), "agent" (A, D), "map" (M, D), "object" (0|1, D)

    @property
    def prompt_length(self) -> int:
        return next((i for i, label in enumerate(self.labels) if label != IGNORE_INDEX), len(self.labels))


def fmt_number(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def fmt_points(points: np.ndarray, mask: np.ndarray | None = None) -> str:
    """[(x,y),...] with 2 decimals and no spaces; masked points print as (UN,UN)."""
    items = []
    for i, (x, y) in enumerate(np.asarray(points, dtype=np.float64)):
        known = mask is None or bool(mask[i])
        items.append(f"({fmt_number(x)},{fmt_number(y)})" if known else "(UN,UN)")
    return "[" + ",".join(items) + "]"


def ego_state_text(record: SampleRecord) -> str:
    vx, vy = record.ego_velocity
    ax, ay = record.ego_acceleration
    return (f"Ego states: velocity (vx,vy) ({fmt_number(vx)},{fmt_number(vy)}) m/s, "
            f"acceleration (ax,ay) ({fmt_number(ax)},{fmt_number(ay)}) m/s^2, "
            f"yaw rate {fmt_number(record.ego_yaw_rate)} rad/s, speed {fmt_number(record.ego_speed)} m/s")


def token_block(kind: str, count: int) -> str:
    """`<kind_start>` + `count` placeholders + `<kind_end>`."""
    return f"<{kind}_start>{PLACEHOLDERS[kind] * count}<{kind}_end>"


def user_text(record: SampleRecord, counts: dict[str, int], question: str, options: PromptOptions,
              with_object: bool = False) -> str:
    """The user turn; `counts` gives how many placeholders each block holds."""
    def block(kind: str) -> str:
        return token_block(kind, counts[kind])

    lines = [
        f"Scene information: {block('scene')}",
        f"Object-wise tracking information: {block('agent')}",
        f"Map information: {block('map')}",
        ego_state_text(record),
        f"Historical trajectory (last 2 seconds): {fmt_points(record.ego_past, record.ego_past_mask)}",
        f"Mission goal: {record.command_text}",
    ]
    if options.kinematic_prior:
        lines.append(f"Kinematic prior (CTRA, next 3 seconds): {fmt_points(kinematic_prior(record))}")
    if with_object:
        lines.append(f"Object: {block('object')}")
    lines.append(question)
    return "\n".join(lines)


def chatml_prompt(user: str) -> str:
    return (f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n"
            f"{IM_START}user\n{user}{IM_END}\n"
            f"{IM_START}assistant\n")


def select_features(tokens: PerceptionTokens, focus_track_id: int | None) -> dict[str, torch.Tensor]:
    """Perception tokens per placeholder kind; the focus agent's row becomes the `object` token."""
    features = {"scene": tokens.scene, "agent": tokens.agents, "map": tokens.map,
                "object": tokens.agents[:0]}
    if focus_track_id is not None:
        rows = (tokens.agent_track_ids == int(focus_track_id)).nonzero().flatten()
        if rows.numel() == 0:
            raise FocusNotDetected(f"track {focus_track_id} has no agent token")
        features["object"] = tokens.agents[rows[:1]]
    return {k: v.float() for k, v in features.items()}


class SequenceBuilder:
    """Turns (record, tokens, question[, answer]) into ids, labels and features."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, options: PromptOptions | None = None):
        self.tokenizer = tokenizer
        self.options = options or PromptOptions()

    def prompt_text(self, record: SampleRecord, features: dict[str, torch.Tensor], question: str) -> str:
        counts = {k: int(v.shape[0]) for k, v in features.items()}
        return chatml_prompt(user_text(record, counts, question, self.options, with_object=counts["object"] > 0))

    def encode(self, record: SampleRecord, tokens: PerceptionTokens, question: str, answer: str | None = None,
               focus_track_id: int | None = None) -> EncodedSample:
        """Ids of prompt (+ answer + <|im_end|>); labels mask the prompt. Raises FocusNotDetected."""
        features = select_features(tokens, focus_track_id)
        prompt_ids = self._ids(self.prompt_text(record, features, question))
        answer_ids = self._ids(answer + IM_END) if answer is not None else []
        return EncodedSample(
            sample_token=record.sample_token,
            input_ids=prompt_ids + answer_ids,
            labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
            features=features,
        )

    def encode_conversation(self, record: SampleRecord, tokens: PerceptionTokens, turns: list[Turn]) -> EncodedSample:
        """One sequence holding every turn; labels supervise each answer + <|im_end|>. Raises FocusNotDetected."""
        if not turns:
            raise ValueError(f"sample {record.sample_token}: a conversation needs at least one turn")
        first = self.encode(record, tokens, turns[0].question, turns[0].answer, turns[0].focus_track_id)
        ids, labels, objects = list(first.input_ids), list(first.labels), [first.features["object"]]
        for turn in turns[1:]:
            turn_ids, turn_labels, focus = self.follow_up(tokens, turn)
            ids += turn_ids
            labels += turn_labels
            objects.append(focus)
        features = {**first.features, "object": torch.cat(objects)}
        return EncodedSample(sample_token=record.sample_token, input_ids=ids, labels=labels, features=features)

    def follow_up(self, tokens: PerceptionTokens, turn: Turn) -> tuple[list[int], list[int], torch.Tensor]:
        """Ids, labels and object token of a later turn (it follows an answer's <|im_end|>)."""
        focus = select_features(tokens, turn.focus_track_id)["object"]
        object_line = f"Object: {token_block('object', len(focus))}\n" if len(focus) else ""
        prompt_ids = self._ids(f"\n{IM_START}user\n{object_line}{turn.question}{IM_END}\n{IM_START}assistant\n")
        answer_ids = self._ids(turn.answer + IM_END)
        return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids, focus

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
