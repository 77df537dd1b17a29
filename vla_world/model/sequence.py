"""The sequence builder: one ChatML prompt per (planner input, perception tokens, question), and its labels.

The prompt is built by hand (no chat template), identical in training and inference:

    <|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n
    <|im_start|>user\n
    Scene information: <scene_start><SCENE>xS<scene_end>\n
    Object-wise tracking information: <agent_start><AGENT>xA<agent_end>\n
    Map information: <map_start><MAP>xM<map_end>\n
    Ego state token: <EGO>\n                                  (PromptOptions.ego_token)
    Ego states: velocity (vx,vy) ... m/s, acceleration ..., yaw rate ..., speed ...\n
    Historical trajectory (last 2 seconds): [(x,y),(x,y),(x,y),(x,y)]\n
    Mission goal: keep forward\n
    Kinematic prior (CTRA, next 3 seconds): [(x,y),...]\n      (when enabled)
    Object: <object_start><OBJECT><object_end>\n               (agent questions only)
    {question}<|im_end|>\n
    <|im_start|>assistant\n{answer}<|im_end|>

Each placeholder (`<SCENE>`, `<AGENT>`, `<MAP>`, `<OBJECT>`) is one token repeated once per
perception token; `vla_world.model.vla` replaces their embeddings with the projected tokens in
order. `<EGO>` (one, with `PromptOptions.ego_token`) receives the projected ego-state vector
(`vla_world.model.ego_token`, built here from the PlannerInput, so every caller of `encode` gets
it). Labels are -100 on the whole prompt; only the answer and its closing `<|im_end|>` are
supervised. All numbers are in the current LiDAR frame (x right, y forward), metres, 2 decimals;
with `PromptOptions.residual_answer` the system prompt says the planning answer is the correction
to the prompt's kinematic prior in whole centimetres (`planning.codec`, "Residual answers").

The prompt is a function of `PlannerInput` (no labels) and the perception tokens only, so no
prompt can see the future (tests/test_planner_boundary.py builds it from records whose futures are
NaN and gets the same ids).

`encode_conversation` packs several questions about one sample into one training sequence
(ChatML turns): the first turn is exactly what `encode` writes, each later user turn holds only
its `Object:` line (agent questions) and its question, and every answer is supervised. The long
prompt is then paid once per sample instead of once per question (see vla_world/model/packing.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerFast

from perception.tokens import PerceptionTokens
from planning.codec import format_number, format_points
from planning.kinematic import ctra_prior
from planning.structured import BLOCKS, system_prompt_format
from vla_world.data.planner_input import PlannerInput
from vla_world.model.ego_token import ego_token_features
from vla_world.model.tokenizer import EGO_PLACEHOLDER, IM_END, IM_START, PLACEHOLDERS

IGNORE_INDEX = -100

SYSTEM_INTRO = "You are VLA-World, a driving planner. Coordinates: x to the right, y forward, metres; you are at (0,0). "
SYSTEM_OUTRO = " Answer other questions in plain text."
SYSTEM_PROMPT = SYSTEM_INTRO + system_prompt_format(()) + SYSTEM_OUTRO  # the plain answer's (the default)
RESIDUAL_FORMAT = ("Plan 3 seconds as 6 waypoints, one every 0.5 s, written as corrections to the kinematic prior in "
                   "whole centimetres: <traj_start>[(dx1,dy1),(dx2,dy2),(dx3,dy3),(dx4,dy4),(dx5,dy5),(dx6,dy6)]"
                   "<traj_end>.")
RESIDUAL_SYSTEM_PROMPT = SYSTEM_INTRO + RESIDUAL_FORMAT + SYSTEM_OUTRO  # residual answers (planning.codec)
PLANNING_QUESTION = "Plan the ego trajectory for the next 3 seconds."
# the world stage's question (paper 004's future-frame pretraining); its answer is a <visual> block
WORLD_QUESTION = "Imagine the front camera 0.5 s ahead."


class FocusNotDetected(LookupError):
    """The question is about an agent that perception did not produce a token for."""


@dataclass(frozen=True)
class PromptOptions:
    kinematic_prior: bool = True  # add the CTRA rollout of the ego state as text (planning.kinematic.ctra_prior)
    # the planning answer's blocks (planning.structured.AnswerConfig.blocks); () = the plain trajectory.
    # The system prompt describes them, and decoding follows them (vla_world.inference)
    answer_blocks: tuple[str, ...] = ()
    # planning answers are the correction to that rollout in centimetres (planning.codec, "Residual answers")
    residual_answer: bool = False
    # one <EGO> token after the map block: the ego state as a float vector through the ego projector
    # (vla_world.model.ego_token); the text lines stay
    ego_token: bool = False

    def __post_init__(self) -> None:
        blocks = tuple(self.answer_blocks)  # a list when read back from vla.json
        unknown = [b for b in blocks if b not in BLOCKS]
        if unknown or (blocks and blocks[-1] != "answer"):
            raise ValueError(f"PromptOptions.answer_blocks={blocks!r}: names from {BLOCKS}, ending with 'answer'")
        object.__setattr__(self, "answer_blocks", blocks)
        if self.residual_answer and not self.kinematic_prior:
            raise ValueError("model.residual_answer: true needs model.kinematic_prior: true (the answer corrects the "
                             "prior the prompt shows)")


def system_prompt(options: PromptOptions) -> str:
    """The system turn: the plain answer's (SYSTEM_PROMPT), the residual one's, or one describing the blocks
    (whose `<answer>` is residual when `residual_answer`)."""
    if options.residual_answer and not options.answer_blocks:
        return RESIDUAL_SYSTEM_PROMPT
    return SYSTEM_INTRO + system_prompt_format(options.answer_blocks, options.residual_answer) + SYSTEM_OUTRO


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
    # "scene" (S, D), "agent" (A, D), "map" (M, D), "object" (0|1, D); "ego" (1, E) with PromptOptions.ego_token
    features: dict[str, torch.Tensor]

    @property
    def prompt_length(self) -> int:
        return next((i for i, label in enumerate(self.labels) if label != IGNORE_INDEX), len(self.labels))


def ego_state_text(inp: PlannerInput) -> str:
    vx, vy = inp.ego_velocity
    ax, ay = inp.ego_acceleration
    return (f"Ego states: velocity (vx,vy) ({format_number(vx)},{format_number(vy)}) m/s, "
            f"acceleration (ax,ay) ({format_number(ax)},{format_number(ay)}) m/s^2, "
            f"yaw rate {format_number(inp.ego_yaw_rate)} rad/s, speed {format_number(inp.ego_speed)} m/s")


def token_block(kind: str, count: int) -> str:
    """`<kind_start>` + `count` placeholders + `<kind_end>`."""
    return f"<{kind}_start>{PLACEHOLDERS[kind] * count}<{kind}_end>"


def user_text(inp: PlannerInput, counts: dict[str, int], question: str, options: PromptOptions,
              with_object: bool = False) -> str:
    """The user turn; `counts` gives how many placeholders each block holds."""
    def block(kind: str) -> str:
        return token_block(kind, counts[kind])

    lines = [
        f"Scene information: {block('scene')}",
        f"Object-wise tracking information: {block('agent')}",
        f"Map information: {block('map')}",
        *([f"Ego state token: {EGO_PLACEHOLDER}"] if options.ego_token else []),
        *context_lines(inp, options),
    ]
    if with_object:
        lines.append(f"Object: {block('object')}")
    lines.append(question)
    return "\n".join(lines)


def context_lines(inp: PlannerInput, options: PromptOptions) -> list[str]:
    """The text lines of the user turn after the perception blocks: ego state, history, command, prior.

    A function of its own so other renderings of the prompt (vla_world/export: LLaMA-Factory data with
    perception as text or camera images) carry exactly this information.
    """
    lines = [
        ego_state_text(inp),
        f"Historical trajectory (last 2 seconds): {format_points(inp.ego_past, inp.ego_past_mask)}",
        f"Mission goal: {inp.command_text}",
    ]
    if options.kinematic_prior:
        lines.append(f"Kinematic prior (CTRA, next 3 seconds): {format_points(ctra_prior(inp))}")
    return lines


def chatml_prompt(user: str, system: str = SYSTEM_PROMPT) -> str:
    return (f"{IM_START}system\n{system}{IM_END}\n"
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
    """Turns (planner input, tokens, question[, answer]) into ids, labels and features."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, options: PromptOptions | None = None):
        self.tokenizer = tokenizer
        self.options = options or PromptOptions()

    def prompt_text(self, inp: PlannerInput, features: dict[str, torch.Tensor], question: str) -> str:
        counts = {k: int(v.shape[0]) for k, v in features.items()}
        return chatml_prompt(user_text(inp, counts, question, self.options, with_object=counts["object"] > 0),
                             system_prompt(self.options))

    def encode(self, inp: PlannerInput, tokens: PerceptionTokens, question: str, answer: str | None = None,
               focus_track_id: int | None = None) -> EncodedSample:
        """Ids of prompt (+ answer + <|im_end|>); labels mask the prompt. Raises FocusNotDetected."""
        if not isinstance(inp, PlannerInput):
            raise TypeError(f"SequenceBuilder.encode takes a PlannerInput (vla_world.data.planner_input), got "
                            f"{type(inp).__name__}: prompts must not see labels")
        features = select_features(tokens, focus_track_id)
        if self.options.ego_token:
            features["ego"] = torch.from_numpy(ego_token_features(inp))[None]
        prompt_ids = self._ids(self.prompt_text(inp, features, question))
        answer_ids = self._ids(answer + IM_END) if answer is not None else []
        return EncodedSample(
            sample_token=inp.sample_token,
            input_ids=prompt_ids + answer_ids,
            labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
            features=features,
        )

    def encode_conversation(self, inp: PlannerInput, tokens: PerceptionTokens, turns: list[Turn]) -> EncodedSample:
        """One sequence holding every turn; labels supervise each answer + <|im_end|>. Raises FocusNotDetected."""
        if not turns:
            raise ValueError(f"sample {inp.sample_token}: a conversation needs at least one turn")
        first = self.encode(inp, tokens, turns[0].question, turns[0].answer, turns[0].focus_track_id)
        ids, labels, objects = list(first.input_ids), list(first.labels), [first.features["object"]]
        for turn in turns[1:]:
            turn_ids, turn_labels, focus = self.follow_up(tokens, turn)
            ids += turn_ids
            labels += turn_labels
            objects.append(focus)
        features = {**first.features, "object": torch.cat(objects)}
        return EncodedSample(sample_token=inp.sample_token, input_ids=ids, labels=labels, features=features)

    def follow_up(self, tokens: PerceptionTokens, turn: Turn) -> tuple[list[int], list[int], torch.Tensor]:
        """Ids, labels and object token of a later turn (it follows an answer's <|im_end|>)."""
        focus = select_features(tokens, turn.focus_track_id)["object"]
        object_line = f"Object: {token_block('object', len(focus))}\n" if len(focus) else ""
        prompt_ids = self._ids(f"\n{IM_START}user\n{object_line}{turn.question}{IM_END}\n{IM_START}assistant\n")
        answer_ids = self._ids(turn.answer + IM_END)
        return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids, focus

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def collate(samples: list[EncodedSample], pad_id: int) -> dict:
    """Right-padded (B, T) input_ids / attention_mask / labels + the lists of per-sample features and tokens."""
    width = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        ids[i, :n] = torch.tensor(s.input_ids)
        labels[i, :n] = torch.tensor(s.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "features": [s.features for s in samples],
            "sample_tokens": [s.sample_token for s in samples]}
