"""Template-constrained trajectory decoding: every answer parses to 6 finite waypoints within the bound.

Why: a planning answer is a fixed template with twelve numbers in it,

    <traj_start>[(x1,y1),(x2,y2),(x3,y3),(x4,y4),(x5,y5),(x6,y6)]<traj_end><|im_end|>

so free greedy decoding spends a forward pass on every bracket and comma, and loses whole answers
to a wrong point count. Here the structure is written by the decoder and the model chooses only
the numbers, in the one format the training answers use (`planning.codec.format_number`): an
optional `-`, an integer part without leading zeros, a point, exactly two decimals, never `-0.00`.

The language is a small finite-state machine over characters (`Cursor`, `advance`). Every
point lies strictly inside the evaluator's plausibility bound (`planning.evaluate.PLAUSIBLE_RANGE_M`):
in hundredths of a metre, |x| <= R and y^2 <= R^2 - x^2 with R = 9999, so the Failed column of
a constrained run is 0 by construction.

Tokens: `TemplateVocab` reads the tokenizer's vocabulary (each token's decoded string; special
and non-template tokens are never chosen) into a character trie. At a cursor, the allowed tokens
are those whose whole string the machine accepts, so multi-character tokens (`),(`, `12`, `5),(`)
work for any tokenizer: the tiny byte-level BPE, a Qwen2.5 tokenizer, a synthetic vocabulary.

Forced spans: where the text is fixed (`<traj_start>[(`, `,`, `),(`, `)]<traj_end>`), the decoder
feeds the tokenizer's own (canonical) encoding of it, as training saw it: the common token prefix
of `encode(span + c)` over every first character `c` the next number may take (a BPE may glue a
`-` to the punctuation before it, `),(-`); what that prefix leaves is chosen by the model among
the tokens that complete it. A number position with a single allowed token (the `.` after `0`,
or after two integer digits) is forced too. A forced span never costs a forward pass of its own:
it is fed together with the chosen token before it, in one pass.

Batching: rows advance in lockstep, one forward pass per step, with one KV cache. Each step feeds
every row its chosen token plus its forced span, right-padded to the longest; padded slots get
attention-mask 0 and stay in the cache as holes that are never attended, and position ids count
real tokens only (`vla_world.model.vla.padded_positions`), so every row computes what it computes
alone (tests/test_constrained_decoding.py).

Sampling (`constrained_sample_ids`, GRPO's rollouts): the same machine, but each choice is drawn
from the allowed tokens' logits at a temperature, nucleus-cut at top-p, and every answer says
which of its ids the model chose and which the template forced.

Equality with greedy: the model's choice at each step is the argmax of its logits over the
allowed tokens. When greedy's own answer is in the template (and tokenised as the tokenizer
encodes it), each of greedy's tokens is allowed, so both return the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import torch
from transformers import (
    AttentionInterface,
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from planning.codec import TRAJ_END, TRAJ_START, hundredths
from planning.evaluate import PLAUSIBLE_RANGE_M
from vla_world.data.records import NUM_FUTURE
from vla_world.model.vla import Features, VLAModel, left_pad, padded_positions

NUMBERS = 2 * NUM_FUTURE  # x and y of every waypoint
OPEN, BETWEEN_XY, BETWEEN_POINTS, CLOSE = f"{TRAJ_START}[(", ",", "),(", f")]{TRAJ_END}"
RADIUS = round(PLAUSIBLE_RANGE_M * 100) - 1  # hundredths of a metre: every point strictly inside the bound
NUMBER_CHARS = "-0123456789."
TEMPLATE_CHARS = frozenset(NUMBER_CHARS + ",()[]")
DECIMALS = 2
# residual answers: at most 9.99 m of correction per coordinate (3 digits). Chosen on val
# (docs/planning_experiments.md): a 30 m cap let a seed write 11-17 m corrections (a digit too many),
# 0.92 m -> 0.81 m val L2 with this cap, the same as 5 m; train futures need > 10 m in 4 % of samples.
RESIDUAL_CAP = 999


# ---- the number language: format_number's strings with |value| <= bound (hundredths) ----------
# Two spellings of a value in hundredths: metres with two decimals ("-1.05", absolute answers) and
# whole centimetres ("-105", residual answers, planning.codec); `decimals` says which.
def number_feasible(text: str, bound: int, decimals: int = DECIMALS) -> bool:
    """Whether `text` starts some number string (`decimals` 2 or 0) whose value is within +-`bound` hundredths."""
    negative = text.startswith("-")
    body = text[1:] if negative else text
    integer, dot, digits = body.partition(".")
    if not integer.isdigit() and integer != "":
        return False
    if len(integer) > 1 and integer[0] == "0":
        return False  # no leading zeros
    lowest = 1 if negative else 0  # never "-0.00" / "-0"
    if decimals == 0:
        return not dot and not (negative and integer == "0") and max(int(integer or 0), lowest) <= bound
    if (dot and not integer) or not (digits == "" or digits.isdigit()) or len(digits) > decimals:
        return False
    if not integer:
        return lowest <= bound
    if not dot:  # completions include integer*100 .. integer*100 + 99
        return max(int(integer) * 100, lowest) <= bound
    scale = 10 ** (decimals - len(digits))
    low = int(integer) * 100 + (int(digits) * scale if digits else 0)
    return max(low, lowest) <= min(low + scale - 1, bound)


def number_complete(text: str, bound: int, decimals: int = DECIMALS) -> bool:
    """A whole number string: two decimals written, or (centimetres) at least one digit."""
    if not number_feasible(text, bound, decimals):
        return False
    return len(text.partition(".")[2]) == DECIMALS if decimals else text.lstrip("-") != ""


def number_hundredths(text: str) -> int:
    """The value of a complete number string in hundredths ("-1.05" -> -105, centimetres "-105" -> -105)."""
    negative = text.startswith("-")
    integer, dot, decimals = text.lstrip("-").partition(".")
    value = int(integer) * 100 + int(decimals) if dot else int(integer)
    return -value if negative else value


def forced_text_before(index: int) -> str:
    """The fixed text in front of number `index` (NUMBERS: the text that closes the answer)."""
    if index == 0:
        return OPEN
    if index == NUMBERS:
        return CLOSE
    return BETWEEN_XY if index % 2 else BETWEEN_POINTS


@dataclass(frozen=True)
class Template:
    """Fixed text around (x, y) number pairs: `pieces[i]` stands before number i, the last piece closes.

    The trajectory answer is one template; the structured answer (vla_world.constrained_structured)
    adds others, such as its `<prediction>(x,y)</prediction>` point, and wraps the trajectory in
    `<answer>`.
    """

    pieces: tuple[str, ...]
    ends_turn: bool = True  # when closed, the answer ends (<|im_end|> follows)

    @property
    def numbers(self) -> int:
        return len(self.pieces) - 1


TRAJECTORY = Template(tuple(forced_text_before(i) for i in range(NUMBERS + 1)))


@dataclass(frozen=True)
class Cursor:
    """Where an answer stands in the template: fixed text still to write, or digits of a number."""

    index: int = 0  # the number being written: 0..11 (x1, y1, ..., y6); template.numbers = closing text
    forced: str = OPEN  # fixed text still to write before number `index`
    digits: str = ""  # what is written of number `index` (once `forced` is empty)
    x: int = 0  # hundredths of the current point's x (bounds its y)
    decimals: int = DECIMALS  # 2: metres "1.05" (absolute answers); 0: centimetres "105" (residual answers)
    limit: int | None = None  # residual answers: largest |number| in cm (`residual_limit`); None: the circle
    template: Template = TRAJECTORY

    @classmethod
    def start(cls, template: Template) -> Cursor:
        return cls(forced=template.pieces[0], template=template)

    @property
    def bound(self) -> int:
        """Largest |value| of number `index` in hundredths (y: inside the circle of radius RADIUS)."""
        if self.limit is not None:
            return self.limit
        return RADIUS if self.index % 2 == 0 else math.isqrt(RADIUS * RADIUS - self.x * self.x)

    @property
    def done(self) -> bool:
        return self.index == self.template.numbers and not self.forced


def step(cursor: Cursor, char: str) -> Cursor | None:
    """The cursor after writing `char`, or None when the template does not allow it there."""
    if cursor.forced:
        return replace(cursor, forced=cursor.forced[1:]) if char == cursor.forced[0] else None
    if cursor.done:
        return None
    digits = cursor.digits + char
    if number_feasible(digits, cursor.bound, cursor.decimals):  # never a separator: the number goes on
        return replace(cursor, digits=digits)
    if number_complete(cursor.digits, cursor.bound, cursor.decimals):
        value = number_hundredths(cursor.digits)
        after = replace(cursor, index=cursor.index + 1, forced=cursor.template.pieces[cursor.index + 1], digits="",
                        x=value if cursor.index % 2 == 0 else 0)
        return step(after, char)
    return None


def start_cursor(prior: np.ndarray | None = None) -> Cursor:
    """Where an answer starts: absolute metres, or (given the prompt's prior) residual centimetres."""
    return Cursor() if prior is None else Cursor(decimals=0, limit=residual_limit(prior))


def residual_limit(prior: np.ndarray) -> int:
    """Largest |residual| in cm that keeps every point prior + residual strictly inside the bound.

    |prior + r| <= |prior| + sqrt(2) max|r|, so max|r| = (RADIUS - max|prior|) / sqrt(2), floored to
    whole metres (rows of similar priors share one cursor cache) and capped at RESIDUAL_CAP; 0 (copy
    the prior) for a prior already at the bound, which no car reaches (3 s at 120 km/h is 100 m)."""
    reach = float(np.max(np.hypot(*np.asarray(hundredths(prior), dtype=np.float64).T)))
    room = int((RADIUS - math.ceil(reach)) / math.sqrt(2)) // 100 * 100
    return max(0, min(RESIDUAL_CAP, room))


def advance(cursor: Cursor | None, text: str) -> Cursor | None:
    for char in text:
        if cursor is None:
            return None
        cursor = step(cursor, char)
    return cursor


# ---- the vocabulary side ------------------------------------------------------------------------
@dataclass
class _TrieNode:
    children: dict[str, _TrieNode] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)  # candidate indices whose string ends here


class TemplateVocab:
    """The tokens that can appear in a template answer, and what the template allows at a cursor."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, eos_id: int):
        self.tokenizer = tokenizer
        self.eos_id = eos_id
        special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
        vocab = sorted(tokenizer.get_vocab().values())
        texts = tokenizer.batch_decode([[i] for i in vocab], clean_up_tokenization_spaces=False)  # the raw strings
        pairs = [(i, t) for i, t in zip(vocab, texts) if i not in special and t and set(t) <= TEMPLATE_CHARS]
        if not pairs:
            raise ValueError("tokenizer: no token spells digits or template punctuation; constrained decoding needs "
                             "a vocabulary that can write numbers (every byte-level BPE can)")
        self.token_ids = torch.tensor([i for i, _ in pairs])  # candidate index -> token id
        self.texts = [t for _, t in pairs]
        self.root = _TrieNode()
        for k, text in enumerate(self.texts):
            node = self.root
            for char in text:
                node = node.children.setdefault(char, _TrieNode())
            node.tokens.append(k)
        self._allowed: dict[Cursor, tuple[list[int], list[Cursor]]] = {}
        self._forced: dict[tuple, tuple[list[int], str]] = {}

    def allowed(self, cursor: Cursor) -> tuple[list[int], list[Cursor]]:
        """Candidate indices the template accepts at `cursor`, and the cursor after each."""
        if cursor not in self._allowed:
            found: tuple[list[int], list[Cursor]] = ([], [])
            self._walk(self.root, cursor, found)
            self._allowed[cursor] = found
        return self._allowed[cursor]

    def _walk(self, node: _TrieNode, cursor: Cursor, found: tuple[list[int], list[Cursor]]) -> None:
        for char, child in node.children.items():
            after = step(cursor, char)
            if after is None:
                continue
            found[0].extend(child.tokens)
            found[1].extend([after] * len(child.tokens))
            self._walk(child, after, found)

    def forced(self, cursor: Cursor) -> tuple[list[int], Cursor]:
        """Token ids the template fixes from `cursor` on (ending with <|im_end|> when it closes the turn), and the
        cursor after."""
        ids: list[int] = []
        while not cursor.done:
            prefix, text = self._forced_prefix(cursor) if cursor.forced else ([], "")
            if prefix:
                ids += prefix
                cursor = advance(cursor, text)
                continue
            options, after = self.allowed(cursor)
            if not options:
                raise ValueError(f"tokenizer: no token can continue the trajectory template at {cursor}; its "
                                 "vocabulary must spell every digit, '.', '-', ',', '(', ')', '[' and ']'")
            if len(options) > 1:
                break
            ids.append(int(self.token_ids[options[0]]))
            cursor = after[0]
        if cursor.done and cursor.template.ends_turn:
            ids.append(self.eos_id)
        return ids, cursor

    def _forced_prefix(self, cursor: Cursor) -> tuple[list[int], str]:
        """The canonical tokens of `cursor.forced` that do not depend on the next number's first character."""
        starts = () if cursor.index == cursor.template.numbers else tuple(
            c for c in NUMBER_CHARS if advance(replace(cursor, forced=""), c) is not None)
        key = (cursor.forced, starts)
        if key not in self._forced:
            self._forced[key] = _common_prefix(self.tokenizer, cursor.forced, starts)
        return self._forced[key]


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _common_prefix(tokenizer: PreTrainedTokenizerBase, text: str, starts: tuple[str, ...]) -> tuple[list[int], str]:
    """Tokens every `encode(text + c)` starts with that lie inside `text`, and the text they spell."""
    encodings = [_encode(tokenizer, text + c) for c in starts] or [_encode(tokenizer, text)]
    ids: list[int] = []
    spelled = ""
    for column in zip(*encodings):
        piece = tokenizer.decode([column[0]], clean_up_tokenization_spaces=False)
        if len(set(column)) > 1 or not text.startswith(spelled + piece):
            break
        ids.append(column[0])
        spelled += piece
    return ids, spelled


@lru_cache(maxsize=8)
def _vocab_for(tokenizer: PreTrainedTokenizerBase, eos_id: int) -> TemplateVocab:
    return TemplateVocab(tokenizer, eos_id)


def template_vocab(model: VLAModel) -> TemplateVocab:
    """The model's `TemplateVocab`, built once per tokenizer."""
    return _vocab_for(model.tokenizer, model.eos_id)


# ---- attention for blocks of several new tokens over a grouped-query KV cache -----------------
PACKED_SDPA = "sdpa_packed_gqa"


def packed_gqa_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                    **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, but a block of L > 1 queries with a mask never copies the KV cache.

    Why: for L > 1 with a mask (every step of a padded batch with forced spans), transformers repeats
    each cached key/value head for every query head of its group (`repeat_kv`), a copy of the whole
    cache per layer per step (measured: 20 % of a batch-16 decoding). Queries of one group share
    their key/value head, so they are folded into the query axis instead, as transformers already
    does for L = 1 (`pack_gqa`): (B, H, L, D) -> (B, H_kv, groups * L, D), the mask repeated to match.
    """
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    plain = (groups == 1 or length == 1 or attention_mask is None or attention_mask.dtype != torch.bool
             or attention_mask.shape[1] != 1 or kwargs.get("position_bias") is not None)
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    packed = query.reshape(batch, heads // groups, groups * length, dim)  # head g * groups + r -> rows r * L + l
    mask = attention_mask.repeat(1, 1, groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, length, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(PACKED_SDPA, packed_gqa_sdpa)
AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)


@contextmanager
def packed_attention(llm: PreTrainedModel) -> Iterator[None]:
    """Run `llm` with `packed_gqa_sdpa` while decoding, when it uses plain sdpa; restored afterwards."""
    previous = llm.config._attn_implementation
    if previous != "sdpa":
        yield
        return
    llm.set_attn_implementation(PACKED_SDPA)
    try:
        yield
    finally:
        llm.set_attn_implementation(previous)


# ---- batched decoding -------------------------------------------------------------------------
@dataclass
class _Row:
    ids: list[int]  # answer ids so far (ending with <|im_end|> once done)
    cursor: Cursor
    chosen: list[bool] = field(default_factory=list)  # per id: True where the model chose it, False where forced

    @property
    def done(self) -> bool:
        return self.cursor.done


class _Stepper:
    """One left-padded batch in one KV cache: feeds blocks of ids and returns each row's next hidden state."""

    def __init__(self, model: VLAModel, prompts: list[list[int]], features: list[Features]):
        self.model = model
        self.base = model.base_llm
        self.device = next(model.parameters()).device
        ids, self.mask = (t.to(self.device) for t in left_pad(prompts, model.pad_id))
        self.cache = DynamicCache(config=self.base.config)
        self.last = self._run(model.embed(ids, features), ids.shape[1] - 1)

    def feed(self, blocks: list[list[int]]) -> None:
        """Append each row's ids (right-padded within the block; empty = nothing) and keep its last hidden state."""
        width = max(len(b) for b in blocks)
        ids = torch.full((len(blocks), width), self.model.pad_id, dtype=torch.long)
        block_mask = torch.zeros((len(blocks), width), dtype=torch.long)
        for i, block in enumerate(blocks):
            ids[i, :len(block)] = torch.tensor(block, dtype=torch.long)
            block_mask[i, :len(block)] = 1
        self.mask = torch.cat([self.mask, block_mask.to(self.device)], dim=1)
        last = torch.tensor([max(len(b) - 1, 0) for b in blocks])
        self.last = self._run(self.base.get_input_embeddings()(ids.to(self.device)), last)

    def _run(self, embeds: torch.Tensor, last: int | torch.Tensor) -> torch.Tensor:
        width = embeds.shape[1]
        positions = padded_positions(self.mask)[:, -width:]
        hidden = self.base.model(inputs_embeds=embeds, attention_mask=self.mask, position_ids=positions,
                                 cache=self.cache, use_cache=True).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, torch.as_tensor(last, device=hidden.device)]


def _candidate_head(model: VLAModel, vocab: TemplateVocab) -> torch.Tensor:
    """(C, H) output-layer rows of the candidate tokens: logits of only the tokens that can be chosen."""
    head = model.base_llm.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.bias is not None:
        raise TypeError(f"constrained decoding reads the output layer as a bias-free Linear, got {type(head).__name__}; "
                        "merge LoRA adapters on the output layer first (VLAModel.merge_lora)")
    return head.weight[vocab.token_ids.to(head.weight.device)]


@torch.no_grad()
def constrained_generate_ids(model: VLAModel, prompts: list[list[int]], features: list[Features],
                             vocab: TemplateVocab | None = None,
                             priors: list[np.ndarray] | None = None) -> list[list[int]]:
    """Template answers of a left-padded batch; returns only the new ids, without the closing <|im_end|>.

    A model with residual answers (`model.prompt.residual_answer`) needs each prompt's prior
    (`planning.kinematic.ctra_prior` of its input): it bounds the centimetres so prior + answer stays
    inside the plausibility bound."""
    vocab = vocab or template_vocab(model)
    with packed_attention(model.base_llm):
        rows = _decode(model, prompts, features, vocab, _greedy, start_cursors(model, len(prompts), priors))
    return [row.ids[:-1] if row.ids and row.ids[-1] == vocab.eos_id else row.ids for row in rows]


@dataclass(frozen=True)
class SampledAnswer:
    """One sampled template answer: its ids (ending with <|im_end|>) and which of them the model chose."""

    ids: list[int]
    chosen: list[bool]  # False where the template forced the token (brackets, commas, a lone '.')


@torch.no_grad()
def constrained_sample_ids(model: VLAModel, prompts: list[list[int]], features: list[Features], temperature: float,
                           top_p: float, generator: torch.Generator | None = None,
                           vocab: TemplateVocab | None = None,
                           priors: list[np.ndarray] | None = None) -> list[SampledAnswer]:
    """Template answers sampled (not greedy) inside the template: at each choice, the allowed tokens'
    logits / `temperature`, nucleus-cut at `top_p`, then one draw from `generator` (GRPO's rollouts).
    `priors`: as for `constrained_generate_ids` (residual answers)."""
    if temperature <= 0 or not 0 < top_p <= 1:
        raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    vocab = vocab or template_vocab(model)
    with packed_attention(model.base_llm):
        rows = _decode(model, prompts, features, vocab, lambda logits: _sample(logits, temperature, top_p, generator),
                       start_cursors(model, len(prompts), priors))
    return [SampledAnswer(row.ids, row.chosen) for row in rows]


def _greedy(logits: torch.Tensor) -> int:
    return int(torch.argmax(logits))


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """One draw among `logits` (the allowed tokens) at `temperature`, keeping the smallest set with mass >= top_p."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    ordered, order = torch.sort(probs, descending=True)
    keep = (ordered.cumsum(0) - ordered) < top_p  # a token stays while the mass before it is below top_p
    ordered = ordered * keep
    pick = torch.multinomial(ordered / ordered.sum(), 1, generator=generator)
    return int(order[pick])


def start_cursors(model: VLAModel, count: int, priors: list[np.ndarray] | None) -> list[Cursor]:
    if not model.prompt.residual_answer:
        return [Cursor()] * count
    if priors is None or len(priors) != count:
        raise ValueError(f"this planner answers as a correction to its prompt's prior (residual_answer): pass one "
                         f"prior per prompt (planning.kinematic.ctra_prior), got {0 if priors is None else len(priors)} "
                         f"for {count} prompts")
    return [start_cursor(p) for p in priors]


def _decode(model: VLAModel, prompts: list[list[int]], features: list[Features], vocab: TemplateVocab,
            pick, starts: list[Cursor]) -> list[_Row]:
    rows = []
    for cursor in starts:
        ids, after = vocab.forced(cursor)
        rows.append(_Row(list(ids), after, [False] * len(ids)))
    stepper = _Stepper(model, [p + row.ids for p, row in zip(prompts, rows)], features)
    head = _candidate_head(model, vocab)
    while not all(row.done for row in rows):
        logits = stepper.last @ head.T  # (B, C)
        blocks = [[] if row.done else _choose(row, logits[i], vocab, pick) for i, row in enumerate(rows)]
        if all(row.done for row in rows):
            break  # the last choices closed every answer: nothing left to predict
        stepper.feed(blocks)
    return rows


def _choose(row: _Row, logits: torch.Tensor, vocab: TemplateVocab, pick=_greedy) -> list[int]:
    """Pick an allowed token (`pick`: index among the allowed logits), add the forced span after it;
    returns the ids to feed."""
    options, after = vocab.allowed(row.cursor)
    best = pick(logits[torch.tensor(options)])
    chosen = int(vocab.token_ids[options[best]])
    forced, row.cursor = vocab.forced(after[best])
    row.ids += [chosen] + forced
    row.chosen += [True] + [False] * len(forced)
    return [] if row.done else [chosen] + forced  # a closed answer needs no further logits
