"""Constrained decoding of the structured planning answer: every answer's blocks and trajectory parse.

Why: the structured answer (planning/structured.py) puts reasoning blocks before the trajectory,
so free decoding can lose an answer to a missing tag as easily as to a wrong point count. Here
the decoder writes the structure and the model chooses only what is its to choose, block by
block, in the order of the checkpoint's answer config (`PromptOptions.answer_blocks`):

  * `<perception>`, `<think>`: free text, greedy over the ordinary tokens (no special token, no
    `<` or `>` that could spell a tag), until the model chooses the closing tag, or the closing
    tag is forced once `TEXT_CAPS[block]` tokens are written;
  * `<prediction>`: one point `(x,y)` in the trajectory's number format, through the same number
    machine as the trajectory (`vla_world.constrained.Template`);
  * `<action>`: one of the four meta-action phrases, token by token along their encodings;
  * `<visual>`: exactly K code tokens, each the argmax over the N code tokens only (the rule of the
    world stage's decoder, `vla_world.visual_decoding`), then `</visual>` is forced; per row, since
    rows reach the block at different steps after their free text;
  * `<answer>`: the trajectory template of `vla_world.constrained`, inside `<answer>`...`</answer>`;
    a residual planner (`model.prompt.residual_answer`) writes centimetres bounded by each prompt's
    prior (`vla_world.constrained.start_cursor`), as the plain residual answer does.

Opening tags and every other fixed span are fed in the same forward pass as the token chosen
before them, as in `vla_world.constrained`; rows of a batch advance in lockstep in one KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from planning.structured import ACTIONS, TAG_TOKENS
from vla_world.constrained import (
    BETWEEN_POINTS,
    BETWEEN_XY,
    CLOSE,
    OPEN,
    TRAJECTORY,
    Cursor,
    Template,
    TemplateVocab,
    _Stepper,
    packed_attention,
    start_cursor,
)
from vla_world.constrained import _vocab_for as _template_vocab_for
from vla_world.model.vla import Features, VLAModel

# Most tokens a free-text block may take before its closing tag is forced (the training answers of
# the mini world: <perception> up to ~110 tokens with 5 agents, <think> up to ~80; measured in
# tests/test_structured_decoding.py's fixture).
TEXT_CAPS: dict[str, int] = {"perception": 128, "think": 96}
FREE_TEXT, CHOICE, POINTS, CODES = ("perception", "think"), ("action",), ("prediction", "answer"), ("visual",)
PREDICTION = Template(("<prediction>(", ",", ")</prediction>"), ends_turn=False)
ANSWER = Template((f"<answer>{OPEN}", *TRAJECTORY.pieces[1:-1], f"{CLOSE}</answer>"))
assert BETWEEN_XY in ANSWER.pieces and BETWEEN_POINTS in ANSWER.pieces


class StructuredVocab:
    """The token sets of the structured answer for one tokenizer: free text, tags, action phrases, numbers."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, eos_id: int, caps: dict[str, int] | None = None,
                 codes: tuple[int, ...] = (), codes_per_frame: int = 0):
        self.numbers: TemplateVocab = _template_vocab_for(tokenizer, eos_id)
        # <visual>: the code token ids (code i at index i) and how many a frame has (0: no visual tokens)
        self.codes, self.codes_per_frame = torch.tensor(codes, dtype=torch.long), codes_per_frame
        self.eos_id = eos_id
        self.caps = dict(TEXT_CAPS, **(caps or {}))
        vocab = tokenizer.get_vocab()
        missing = [t for t in TAG_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer: the answer tags {missing} are not tokens; the checkpoint was not trained "
                             "with data.answer.structured (vla_world/model/tokenizer.py registers them)")
        self.tag = {t: tokenizer.convert_tokens_to_ids(t) for t in TAG_TOKENS}
        special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
        ids = sorted(i for i in vocab.values() if i not in special)
        texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
        text_ids = [i for i, t in zip(ids, texts) if t and "<" not in t and ">" not in t]
        # free text: the ordinary tokens + the block's closing tag (one tensor per block, built once)
        self.free = {b: torch.tensor(text_ids + [self.tag[f"</{b}>"]]) for b in FREE_TEXT}
        self.phrases = [tuple(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in ACTIONS]

    def phrase_options(self, prefix: tuple[int, ...]) -> list[int]:
        """Next token ids of the action phrases that start with `prefix`."""
        return sorted({p[len(prefix)] for p in self.phrases if p[:len(prefix)] == prefix and len(p) > len(prefix)})

    def phrase_done(self, prefix: tuple[int, ...]) -> bool:
        return prefix in self.phrases


@lru_cache(maxsize=8)
def _vocab_for(tokenizer: PreTrainedTokenizerBase, eos_id: int, codes: tuple[int, ...] = (),
               codes_per_frame: int = 0) -> StructuredVocab:
    return StructuredVocab(tokenizer, eos_id, codes=codes, codes_per_frame=codes_per_frame)


def structured_vocab(model: VLAModel) -> StructuredVocab:
    """The model's `StructuredVocab` (with its frame-code tokens, if it has them), built once per tokenizer."""
    if model.visual is None:
        return _vocab_for(model.tokenizer, model.eos_id)
    return _vocab_for(model.tokenizer, model.eos_id, tuple(model.visual_ids.codes.tolist()),
                      model.visual.codes_per_frame)


@dataclass
class _Row:
    """One answer being written: the blocks still to come, where it stands in the current one, the ids so far."""

    blocks: list[str]
    ids: list[int] = field(default_factory=list)
    state: object = None  # free text / visual: tokens written | action: the phrase ids so far | points: a Cursor
    done: bool = False
    answer_start: Cursor | None = None  # the <answer> block's cursor: absolute metres, or residual cm bounded by a prior


def _enter(row: _Row, vocab: StructuredVocab) -> list[int]:
    """Open the next block; returns the ids that are fixed from there on."""
    block = row.blocks[0]
    if block in POINTS:
        start = Cursor.start(PREDICTION) if block == "prediction" else row.answer_start or Cursor.start(ANSWER)
        forced, row.state = vocab.numbers.forced(start)
        return forced + _after_points(row, vocab)
    if block in CODES and not vocab.codes_per_frame:
        raise ValueError("the <visual> block needs a model with frame-code tokens: train (or init) it through the "
                         "world stage (tools/train.py --stage world), or set data.answer.visual false")
    row.state = () if block in CHOICE else 0
    return [vocab.tag[f"<{block}>"]] + (_after_phrase(row, vocab) if block in CHOICE else [])


def _close(row: _Row, vocab: StructuredVocab, with_tag: bool) -> list[int]:
    """Leave the current block (writing its closing tag when `with_tag`) and open the next, if any."""
    ids = [vocab.tag[f"</{row.blocks[0]}>"]] if with_tag else []
    row.blocks.pop(0)
    if not row.blocks:
        row.done = True
        return ids
    return ids + _enter(row, vocab)


def _after_points(row: _Row, vocab: StructuredVocab) -> list[int]:
    cursor: Cursor = row.state
    if not cursor.done:
        return []
    return _close(row, vocab, with_tag=False)  # the template wrote the closing tag (and <|im_end|>)


def _after_phrase(row: _Row, vocab: StructuredVocab) -> list[int]:
    """Ids fixed after an action prefix: single continuations, then the closing tag once a phrase is complete."""
    ids: list[int] = []
    while not vocab.phrase_done(row.state):
        options = vocab.phrase_options(row.state)
        if len(options) != 1:
            return ids
        ids.append(options[0])
        row.state = (*row.state, options[0])
    return ids + _close(row, vocab, with_tag=True)


def _options(row: _Row, vocab: StructuredVocab) -> tuple[list[int], list]:
    """Token ids the model may choose now, and what each one leads to (a cursor for number blocks)."""
    block = row.blocks[0]
    if block in POINTS:
        candidates, after = vocab.numbers.allowed(row.state)
        return [int(vocab.numbers.token_ids[c]) for c in candidates], after
    if block in CHOICE:
        options = vocab.phrase_options(row.state)
        return options, options
    if block in CODES:
        return vocab.codes, []
    return vocab.free[block], []


def _take(row: _Row, chosen: int, after, vocab: StructuredVocab) -> list[int]:
    """Record the chosen token; returns the ids fixed after it."""
    block = row.blocks[0]
    if block in POINTS:
        forced, row.state = vocab.numbers.forced(after)
        return forced + _after_points(row, vocab)
    if block in CHOICE:
        row.state = (*row.state, chosen)
        return _after_phrase(row, vocab)
    if block in CODES:  # exactly K codes, then the closing tag
        row.state += 1
        return _close(row, vocab, with_tag=True) if row.state >= vocab.codes_per_frame else []
    if chosen == vocab.tag[f"</{block}>"]:
        return _close(row, vocab, with_tag=False)  # the chosen token is the closing tag
    row.state += 1
    return _close(row, vocab, with_tag=True) if row.state >= vocab.caps[block] else []


@torch.no_grad()
def structured_generate_ids(model: VLAModel, prompts: list[list[int]], features: list[Features],
                            blocks: tuple[str, ...] | None = None, vocab: StructuredVocab | None = None,
                            priors: list[np.ndarray] | None = None) -> list[list[int]]:
    """Structured answers of a left-padded batch (blocks: the model's `answer_blocks` by default); new ids only,
    without the closing <|im_end|>. A residual planner needs each prompt's prior (`priors`), as
    `vla_world.constrained.constrained_generate_ids` does."""
    blocks = tuple(blocks or model.prompt.answer_blocks)
    if not blocks or blocks[-1] != "answer":
        raise ValueError(f"structured decoding needs answer blocks ending with 'answer', got {blocks!r}")
    vocab = vocab or structured_vocab(model)
    starts = answer_cursors(model, len(prompts), priors)
    with packed_attention(model.base_llm):
        rows = _decode(model, prompts, features, blocks, vocab, starts)
    return [row.ids[:-1] if row.ids and row.ids[-1] == vocab.eos_id else row.ids for row in rows]


def answer_cursors(model: VLAModel, count: int, priors: list[np.ndarray] | None) -> list[Cursor]:
    """Each row's `<answer>` cursor: absolute metres, or (residual planner) centimetres bounded by its prior."""
    if not model.prompt.residual_answer:
        return [Cursor.start(ANSWER)] * count
    if priors is None or len(priors) != count or any(p is None for p in priors):
        raise ValueError(f"this planner answers as a correction to its prompt's prior (residual_answer): pass one "
                         f"prior per prompt (planning.kinematic.ctra_prior), got {0 if priors is None else len(priors)} "
                         f"for {count} prompts")
    return [replace(start_cursor(p), forced=ANSWER.pieces[0], template=ANSWER) for p in priors]


def _decode(model: VLAModel, prompts: list[list[int]], features: list[Features], blocks: tuple[str, ...],
            vocab: StructuredVocab, answer_starts: list[Cursor]) -> list[_Row]:
    rows = [_Row(list(blocks), answer_start=start) for start in answer_starts]
    starts = [_enter(row, vocab) for row in rows]  # the same for every row
    for row, start in zip(rows, starts):
        row.ids += start
    stepper = _Stepper(model, [p + s for p, s in zip(prompts, starts)], features)
    head = model.base_llm.get_output_embeddings().weight
    while not all(row.done for row in rows):
        logits = stepper.last @ head.T  # (B, V)
        feed = [[] if row.done else _choose(row, logits[i], vocab) for i, row in enumerate(rows)]
        if all(row.done for row in rows):
            break
        stepper.feed(feed)
    return rows


def _choose(row: _Row, logits: torch.Tensor, vocab: StructuredVocab) -> list[int]:
    options, after = _options(row, vocab)
    index = options if isinstance(options, torch.Tensor) else torch.tensor(options)
    best = int(torch.argmax(logits[index.to(logits.device)]))
    chosen = int(index[best])
    forced = _take(row, chosen, after[best] if after else None, vocab)
    row.ids += [chosen] + forced
    return [] if row.done else [chosen] + forced
