"""One stage's examples as LLaMA-Factory sharegpt conversations, and the dataset_info.json entry that reads them.

A record (one conversation about one keyframe):

    {"id": "<sample_token>/<n>", "sample_token": "...", "system": SYSTEM_PROMPT,
     "conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}, ...],
     "images": ["/abs/CAM_FRONT.jpg", ...]}                       # --vision images only

The first user turn carries what our prompt carries (vla_world.model.sequence.user_text), with the
perception blocks rendered for a model that reads no perception tokens:
  * vision "text": the detected agents and a map summary as text (vla_world.export.perception_text);
  * vision "images": one `CAMERA: <image>` line per camera in records.CAMERAS order, and the six
    paths in `images` in that order (LLaMA-Factory requires as many `<image>` markers as images).
Then ego state, history, command and kinematic prior (`context_lines`), an `Object:` line for agent
questions (the focus agent's detected box), and the question. Later turns of a packed conversation
hold only their `Object:` line and question, as `SequenceBuilder.follow_up` writes them.

Packing (`pack=True`, the instruct stage's default): one conversation per (sample, granularity) with
the turn order our trainer uses (vla_world.model.packing.shuffled_conversations), so a question's
detailed and concise answers stay separate entries. Questions about an agent perception did not
detect are dropped and counted, as our trainer drops them.

LLaMA-Factory's reader (data/README.md, src/llamafactory/data/parser.py and converter.py): the key
is `formatting` (a misspelt key silently reads the file as alpaca), `system` must be mapped in
`columns` or the per-record system prompt is ignored, and user/assistant turns must alternate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from perception.tokens import PerceptionTokens
from vla_world.data.planner_input import PlannerInput, planner_input
from vla_world.data.records import CAMERAS, SampleRecord
from vla_world.export.perception_text import object_line, perception_lines
from vla_world.model.packing import shuffled_conversations
from vla_world.model.sequence import (
    SYSTEM_PROMPT,
    FocusNotDetected,
    PromptOptions,
    context_lines,
)

VISIONS = ("text", "images")
IMAGE_MARKER = "<image>"  # LLaMA-Factory's image placeholder (src/llamafactory/extras/constants.py IMAGE_PLACEHOLDER)
TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
USER, ASSISTANT = TAGS["user_tag"], TAGS["assistant_tag"]


@dataclass(frozen=True)
class ShareGPTOptions:
    vision: str = "text"  # "text": perception output as text | "images": the six camera images
    kinematic_prior: bool = True  # the CTRA prior line, as the model config's kinematic_prior
    pack: bool = False  # one multi-turn conversation per (sample, granularity), as data.pack_questions
    seed: int = 0  # turn order of packed conversations (the trainer's train.seed)
    max_agents: int = 30  # text mode: list at most this many detected agents, nearest first

    def validate(self) -> None:
        if self.vision not in VISIONS:
            raise ValueError(f"vision {self.vision!r}: expected one of {list(VISIONS)}")
        if self.max_agents < 1:
            raise ValueError(f"max_agents {self.max_agents}: must be >= 1")


def first_user_turn(inp: PlannerInput, tokens: PerceptionTokens, question: str, focus_track_id: int | None,
                    options: ShareGPTOptions) -> str:
    """The user turn that opens a conversation; raises FocusNotDetected."""
    head = (perception_lines(tokens, options.max_agents) if options.vision == "text"
            else [f"{camera}: {IMAGE_MARKER}" for camera in CAMERAS])
    focus = object_line(tokens, focus_track_id)
    lines = [*head, *context_lines(inp, PromptOptions(kinematic_prior=options.kinematic_prior)),
             *([focus] if focus else []), question]
    return "\n".join(lines)


def later_user_turn(tokens: PerceptionTokens, question: str, focus_track_id: int | None) -> str:
    """A follow-up turn of a packed conversation: its Object line (agent questions) and question."""
    focus = object_line(tokens, focus_track_id)
    return f"{focus}\n{question}" if focus else question


def conversation_groups(examples: list, options: ShareGPTOptions) -> list[tuple[str, list]]:
    """(sample_token, examples in turn order): packed as our trainer packs, or one example each."""
    if options.pack:
        return shuffled_conversations(examples, options.seed)
    return [(e.sample_token, [e]) for e in examples]


def has_focus(tokens: PerceptionTokens, example) -> bool:
    try:
        object_line(tokens, example.focus_track_id)
    except FocusNotDetected:
        return False
    return True


def conversation(inp: PlannerInput, tokens: PerceptionTokens, turns: list, options: ShareGPTOptions) -> list[dict]:
    """The alternating human/gpt messages of one conversation (every example in `turns` must have its focus)."""
    messages = []
    for n, example in enumerate(turns):
        user = (first_user_turn(inp, tokens, example.question, example.focus_track_id, options) if n == 0
                else later_user_turn(tokens, example.question, example.focus_track_id))
        messages += [{"from": USER, "value": user}, {"from": ASSISTANT, "value": example.answer}]
    return messages


def sharegpt_rows(examples: list, records: list[SampleRecord], tokens: dict[str, PerceptionTokens],
                  options: ShareGPTOptions, dataroot: str | Path) -> tuple[list[dict], dict]:
    """The records of one stage and split, and the counts (examples, turns written, conversations, dropped)."""
    options.validate()
    by_token = {r.sample_token: r for r in records}
    rows, dropped, per_sample = [], Counter(), Counter()
    for sample_token, group in conversation_groups(examples, options):
        if sample_token not in by_token or sample_token not in tokens:
            raise KeyError(f"example names sample {sample_token}, which is not among the records/tokens of this split")
        kept = [e for e in group if has_focus(tokens[sample_token], e)]
        dropped["focus agent not detected"] += len(group) - len(kept)
        if not kept:
            continue
        inp = planner_input(by_token[sample_token])  # the prompt sees inputs only; answers come from the examples
        row = {"id": f"{sample_token}/{per_sample[sample_token]}", "sample_token": sample_token,
               "system": SYSTEM_PROMPT, "conversations": conversation(inp, tokens[sample_token], kept, options)}
        if options.vision == "images":
            row["images"] = [str((Path(dataroot) / p).resolve()) for p in inp.camera_paths]
        per_sample[sample_token] += 1
        rows.append(row)
    counts = {"examples": len(examples), "turns": sum(len(r["conversations"]) // 2 for r in rows),
              "conversations": len(rows), "dropped": dict(dropped) if sum(dropped.values()) else {}}
    return rows, counts


def dataset_info_entry(file_name: str, images: bool) -> dict:
    """The dataset_info.json entry of one exported file (LLaMA-Factory data/README.md, sharegpt)."""
    columns = {"messages": "conversations", "system": "system", **({"images": "images"} if images else {})}
    return {"file_name": file_name, "formatting": "sharegpt", "columns": columns, "tags": dict(TAGS)}


def question_answer_pairs(row: dict) -> list[tuple[str, str]]:
    """(question, answer) per turn of an exported record: the question is the last line of each user turn."""
    messages = row["conversations"]
    return [(messages[i]["value"].rsplit("\n", 1)[-1], messages[i + 1]["value"]) for i in range(0, len(messages), 2)]
