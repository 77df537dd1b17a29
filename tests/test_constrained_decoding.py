"""Template-constrained decoding (issue #12): it always answers in the template, it returns greedy's
answer wherever greedy's follows the template, and a batch decodes as each sample alone.

Three tokenizers: the tiny byte-level BPE of this project, the real `Qwen2Tokenizer` class over a
locally trained vocabulary (Qwen2's pre-tokenizer: single digits, `-` glued to the punctuation
before it, e.g. `),(-`), and a synthetic BPE without digit splitting whose tokens cross the
template's boundaries (`12`, `5.`, `0)`, `),(-`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from model_helpers import SMALL, WIDTH, fake_tokens, small_records
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, Qwen2Tokenizer

from planning.codec import format_number, format_trajectory, parse_trajectory
from planning.kinematic import ctra_prior
from vla_world import constrained
from vla_world.constrained import (
    RADIUS,
    RESIDUAL_CAP,
    Cursor,
    TemplateVocab,
    advance,
    constrained_generate_ids,
    number_complete,
    number_hundredths,
    residual_limit,
    start_cursor,
)
from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.inference import Planner, absolute_text
from vla_world.model.llm import TinyLLMSize
from vla_world.model.sequence import (
    PLANNING_QUESTION,
    SYSTEM_PROMPT,
    EncodedSample,
    PromptOptions,
)
from vla_world.model.tokenizer import (
    IM_END,
    add_special_tokens,
    train_tokenizer,
    wrap_tokenizer,
)
from vla_world.model.vla import VLAModel
from vla_world.training.data import collate

torch.set_num_threads(1)


def demo_answers() -> list[str]:
    """Answers with negative, zero-led and two-digit numbers (so `(-`, `),(-` merges exist)."""
    t = np.arange(1, 7)[:, None]
    return [format_trajectory(np.hstack([-0.37 * t * (i + 1), (4.1 + 3 * i) * t])) for i in range(3)]


def corpus() -> list[str]:
    return [SYSTEM_PROMPT, PLANNING_QUESTION, "The car is at (3.5, -2.0) m; keep (0,0)."] + demo_answers() * 20


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    return train_tokenizer(corpus(), 500)


def qwen_style_tokenizer() -> PreTrainedTokenizerBase:
    """transformers' Qwen2Tokenizer (Qwen2.5's class and pre-tokenizer) over a vocabulary trained here."""
    model = json.loads(train_tokenizer(corpus(), 600).backend_tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    add_special_tokens(tok)  # as load_tokenizer does for a Qwen2.5 folder
    return tok


def synthetic_tokenizer() -> PreTrainedTokenizerBase:
    """Byte-level BPE with no pre-tokenizer split: tokens span digits, points and template punctuation."""
    merges = [("1", "2"), ("5", "."), (".", "0"), ("0", ")"), (")", ","), ("),", "("), ("),(", "-"), ("9", "9"),
              ("-", "1"), ("(", "-")]
    vocab = {ch: i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    bpe.decoder = decoders.ByteLevel()
    return wrap_tokenizer(bpe)


TOKENIZERS: dict[str, Callable[[], PreTrainedTokenizerBase]] = {
    "tiny": tiny_tokenizer, "qwen-style": qwen_style_tokenizer, "synthetic": synthetic_tokenizer}


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def tokenizer(request) -> PreTrainedTokenizerBase:
    return TOKENIZERS[request.param]()


def vocab_of(tok: PreTrainedTokenizerBase) -> TemplateVocab:
    return TemplateVocab(tok, tok.convert_tokens_to_ids(IM_END))


def random_waypoints(rng: np.random.Generator) -> np.ndarray:
    """Six points inside the bound, with signs, zeros and one- to two-digit integer parts."""
    scale = rng.choice([0.3, 5.0, 40.0])
    wp = rng.normal(0.0, scale, (6, 2))
    wp[rng.random((6, 2)) < 0.15] = 0.0
    norms = np.linalg.norm(wp, axis=1, keepdims=True)
    return np.where(norms > 99.0, wp / np.maximum(norms, 1.0) * 99.0, wp)


# ---- the character machine ----------------------------------------------------------------------
def test_numbers_are_exactly_format_numbers_within_the_bound():
    rng = np.random.default_rng(0)
    for value in rng.integers(-RADIUS, RADIUS + 1, 500):
        assert number_complete(format_number(value / 100), RADIUS)
    for text in ("-0.00", "01.00", "1.5", "1.505", "100.00", "+1.00", "1e2", ".50", "-", "1.", "0.0"):
        assert not number_complete(text, RADIUS), text


def test_template_accepts_formatted_answers_and_refuses_the_rest():
    rng = np.random.default_rng(1)
    for _ in range(50):
        assert advance(Cursor(), format_trajectory(random_waypoints(rng))).done
    good = format_trajectory(np.full((6, 2), 1.0))
    refused = [good.replace("(1.00,1.00),", "", 1),  # 5 points
               good.replace("[", "[(1.00,1.00),", 1),  # 7 points
               good.replace("(1.00,1.00)", "(60.00,80.00)", 1),  # on the 100 m circle: outside R = 99.99 m
               good.replace(",", ", ", 1), good.replace("1.00", "1.0", 1)]
    for text in refused:
        cursor = advance(Cursor(), text)
        assert cursor is None or not cursor.done, text


def test_the_largest_numbers_allowed_stay_inside_the_plausibility_bound(tokenizer):
    """Choose the largest allowed token every time (`-`, then `9`s): the answer still parses within 100 m."""
    vocab = vocab_of(tokenizer)
    ids, cursor = vocab.forced(Cursor())
    while not cursor.done:
        options, after = vocab.allowed(cursor)
        rank = [(vocab.texts[k].count("9"), vocab.texts[k].startswith("-"), len(vocab.texts[k])) for k in options]
        best = max(range(len(options)), key=rank.__getitem__)
        forced, cursor = vocab.forced(after[best])
        ids += [int(vocab.token_ids[options[best]])] + forced
    parsed = parse_trajectory(tokenizer.decode(ids[:-1]))
    assert parsed.ok, parsed.error
    assert np.abs(parsed.waypoints).max() > 99.0  # the walk reached the edge of the bound ...
    assert np.linalg.norm(parsed.waypoints, axis=1).max() < 100.0  # ... and no further


@pytest.mark.parametrize("name", ["tiny", "qwen-style"])
def test_every_answer_as_the_tokenizer_encodes_it_can_be_decoded(name):
    """Every template answer, tokenised as training tokenises it, is a path of the constrained decoder.

    So a model that writes the training format is never overruled (the premise of greedy equality).
    Holds for tokenizers that split digits from punctuation (Qwen2's pre-tokenizer does).
    """
    tok = TOKENIZERS[name]()
    vocab = vocab_of(tok)
    rng = np.random.default_rng(2)
    merged_sign = [t for t in vocab.texts if len(t) > 1 and t.endswith("-")]
    assert merged_sign, "the vocabulary should glue '-' to punctuation, or the forced-prefix logic is untested"
    for _ in range(40):
        target = tok(format_trajectory(random_waypoints(rng)) + IM_END, add_special_tokens=False)["input_ids"]
        assert_decoder_path(vocab, tok, target, Cursor())


# ---- models -----------------------------------------------------------------------------------
def random_prompts(model: VLAModel, seed: int, count: int = 3) -> list[EncodedSample]:
    """Planning prompts of different lengths (speeds, token counts, perception values)."""
    rng = np.random.default_rng(seed)
    records = [synthetic_record(speed=float(rng.uniform(0, 15)), token=f"r{seed}_{i}",
                                agents=[("car", float(rng.uniform(-9, 9)), float(rng.uniform(2, 30)), 0.0, 1.0)])
               for i in range(count)]
    return [model.sequence_builder.encode(planner_input(r), fake_tokens(r, scene=2 + 6 * i, maps=1 + 2 * i, seed=seed + i),
                                          PLANNING_QUESTION) for i, r in enumerate(records)]


def decode_all(model: VLAModel, prompts: list[EncodedSample]) -> list[list[int]]:
    return constrained_generate_ids(model, [p.input_ids for p in prompts], [p.features for p in prompts])


def test_random_models_always_answer_in_the_template(tokenizer):
    for seed in range(3):
        model = VLAModel.create_tiny(tokenizer, WIDTH, SMALL, seed=seed).eval()
        with torch.no_grad():  # spread the logits, so choices differ from digit to digit
            model.llm.get_input_embeddings().weight.mul_(1 + 4 * seed)
        for ids in decode_all(model, random_prompts(model, seed)):
            text = model.decode(ids)
            parsed = parse_trajectory(text)
            assert parsed.ok, f"{text}: {parsed.error}"
            assert np.isfinite(parsed.waypoints).all() and np.linalg.norm(parsed.waypoints, axis=1).max() < 100.0
            assert advance(Cursor(), text).done  # the training format itself, not just something parseable


class StepLog:
    """Records the logits every row chooses from, per step, and how many forward passes ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.logits: list[torch.Tensor] = []
        self.passes = 0
        choose, run = constrained._choose, constrained._Stepper._run

        def logged_choose(row, logits, vocab, *pick):  # pick: the sampler's, when not greedy
            self.logits.append(logits.clone())
            return choose(row, logits, vocab, *pick)

        def counted_run(stepper, embeds, last):
            self.passes += 1
            return run(stepper, embeds, last)

        monkeypatch.setattr(constrained, "_choose", logged_choose)
        monkeypatch.setattr(constrained._Stepper, "_run", counted_run)


@pytest.fixture(scope="module")
def random_model() -> VLAModel:
    model = VLAModel.create_tiny(tiny_tokenizer(), WIDTH, SMALL, seed=3).eval()
    with torch.no_grad():
        model.llm.get_input_embeddings().weight.mul_(8.0)
    return model


def batch_and_alone_gap(model: VLAModel, prompts: list[EncodedSample], monkeypatch: pytest.MonkeyPatch
                        ) -> tuple[bool, float]:
    """(same ids?, largest logit difference at any step) between one batch and each prompt alone."""
    log = StepLog(monkeypatch)
    batched = decode_all(model, prompts)
    per_row = [log.logits[i::len(prompts)] for i in range(len(prompts))]  # rows choose in order, every step
    alone, gap = [], 0.0
    for i, prompt in enumerate(prompts):
        log.logits.clear()
        alone += decode_all(model, [prompt])
        steps = min(len(log.logits), len(per_row[i]))
        gap = max(gap, max((a - b).abs().max().item() for a, b in zip(log.logits[:steps], per_row[i][:steps])))
    return batched == alone, gap


def test_batched_decoding_equals_one_at_a_time(random_model, monkeypatch):
    prompts = random_prompts(random_model, seed=7, count=4)
    assert len({len(p.input_ids) for p in prompts}) == len(prompts), "lengths must differ, or there is no padding"
    same, gap = batch_and_alone_gap(random_model, prompts, monkeypatch)
    assert same
    assert gap < 1e-4, f"batched logits differ from the alone ones by {gap:.2e}"


def test_batch_check_sees_a_row_attending_its_holes(random_model, monkeypatch):
    """If padding and the holes of shorter forced spans were attended, the comparison above would fail."""
    real_feed = constrained._Stepper.feed

    def feed_attending_holes(stepper, blocks):
        real_feed(stepper, blocks)
        stepper.mask = torch.ones_like(stepper.mask)

    monkeypatch.setattr(constrained._Stepper, "feed", feed_attending_holes)
    _, gap = batch_and_alone_gap(random_model, random_prompts(random_model, seed=7, count=4), monkeypatch)
    assert gap > 1e-3


def test_forced_spans_cost_no_forward_pass(random_model, monkeypatch):
    """One pass for the prompt (with `<traj_start>[(`), then one per choice except the last."""
    log = StepLog(monkeypatch)
    ids = decode_all(random_model, random_prompts(random_model, seed=5, count=1))[0]
    choices = len(log.logits)
    assert log.passes == choices
    assert choices < len(ids) - 12, "every comma and bracket should be forced"


# ---- equality with greedy on a model that learned the template ------------------------------------
@pytest.fixture(scope="module")
def trained() -> tuple[VLAModel, list[EncodedSample], list[str]]:
    """A small model trained until greedy writes three memorised answers (~200 steps, ~20 s)."""
    answers = demo_answers()
    size = TinyLLMSize(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                       max_positions=2048)
    model = VLAModel.create_tiny(tiny_tokenizer(), WIDTH, size)
    records = small_records()
    samples = [model.sequence_builder.encode(planner_input(r), fake_tokens(r, seed=i), PLANNING_QUESTION, answers[i])
               for i, r in enumerate(records)]
    batch = collate(samples, model.pad_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(400):
        loss = model(batch["input_ids"], batch["attention_mask"], batch["features"], batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.02:
            break
    prompts = [EncodedSample(s.sample_token, s.input_ids[:s.prompt_length], [], s.features) for s in samples]
    return model.eval(), prompts, answers


def test_constrained_returns_greedys_answer_where_greedy_follows_the_template(trained):
    model, prompts, answers = trained
    greedy = model.generate_ids([p.input_ids for p in prompts], [p.features for p in prompts], 112)
    for ids, answer in zip(greedy, answers):  # the premise: greedy writes the template, tokenised as in training
        assert model.decode(ids) == answer
        assert ids == model.tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert decode_all(model, prompts) == greedy
    planner = Planner(model, batch_size=2)
    assert planner.plan_texts(prompts) == Planner(model, decoding="greedy").plan_texts(prompts) == answers


def test_constrained_is_the_planner_default_and_says_what_it_needs(random_model):
    assert Planner(random_model).decoding == "constrained"
    with pytest.raises(ValueError, match="expected one of"):
        Planner(random_model, decoding="beam")
    with pytest.raises(ValueError, match="--decoding greedy --no-cache"):
        Planner(random_model, use_cache=False)
    assert Planner(random_model, use_cache=False, decoding="greedy").decoding == "greedy"


def test_bound_of_y_follows_x():
    assert Cursor(index=1, forced="", x=6000).bound == math.isqrt(RADIUS ** 2 - 6000 ** 2)
    assert Cursor(index=0, forced="").bound == RADIUS


def test_plan_tool_refuses_no_cache_with_constrained_decoding():
    from tool_helpers import load_tool

    with pytest.raises(SystemExit, match="--no-cache applies to --decoding greedy"):
        load_tool("plan").main(["--checkpoint", "x", "--sample", "y", "--no-cache"])


def test_packed_attention_equals_transformers_sdpa():
    """Folding a group's query heads into the query axis computes transformers' sdpa attention exactly."""
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    g = torch.Generator().manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=3, is_causal=True, training=False)
    query, key, value = (torch.randn(2, h, n, 8, generator=g) for h, n in ((6, 4), (2, 11), (2, 11)))
    mask = torch.rand(2, 1, 4, 11, generator=g) > 0.4
    mask[..., 0] = True  # every query attends something
    packed, _ = constrained.packed_gqa_sdpa(module, query, key, value, mask, scaling=0.3)
    reference, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    torch.testing.assert_close(packed, reference)
    assert packed.shape == (2, 4, 6, 8)


# ---- residual answers: whole centimetres added to the prompt's prior --------------------------------
REACH = (RESIDUAL_CAP - 2) / 100  # metres: the largest correction test answers make (rounding stays within the cap)


def random_prior(rng: np.random.Generator, reach: float = 40.0) -> np.ndarray:
    """A CTRA-like prior: six points along a random heading, out to `reach` metres."""
    heading = rng.uniform(0, 2 * np.pi)
    steps = np.linspace(reach / 6, reach, 6)[:, None]
    return steps * np.array([np.cos(heading), np.sin(heading)]) + rng.normal(0, 0.5, (6, 2))


def test_centimetre_numbers_are_whole_signed_integers_without_leading_zeros():
    for value in (0, 1, -1, 105, -105, 3000, -3000):
        assert number_complete(str(value), 3000, decimals=0)
        assert number_hundredths(str(value)) == value
    for text in ("-0", "01", "-01", "1.0", "-", "", "3001", "-3001", "+1", "1e2"):
        assert not number_complete(text, 3000, decimals=0), text


def test_residual_limit_keeps_prior_plus_answer_inside_the_bound():
    assert residual_limit(np.zeros((6, 2))) == RESIDUAL_CAP  # the usual case: the cap
    far = np.tile([0.0, 90.0], (6, 1))
    assert residual_limit(far) == min(700, RESIDUAL_CAP)  # (99.99 - 90) m / sqrt(2), whole metres
    assert residual_limit(np.tile([0.0, 100.0], (6, 1))) == 0  # a prior at the bound: only a copy of it


def test_template_accepts_residual_answers_and_refuses_the_rest():
    rng = np.random.default_rng(4)
    for _ in range(50):
        prior = random_prior(rng)
        answer = prior + np.clip(rng.normal(0, rng.choice([0.05, 2.0, 5.0]), (6, 2)), -REACH, REACH)
        assert advance(start_cursor(prior), format_trajectory(answer, prior=prior)).done
    zeros = format_trajectory(np.zeros((6, 2)), prior=np.zeros((6, 2)))
    for text in (zeros.replace("(0,0)", "(0.00,0)", 1), zeros.replace("(0,0)", "(-0,0)", 1),
                 zeros.replace("(0,0)", "(3001,0)", 1), zeros.replace("(0,0),", "", 1)):
        cursor = advance(start_cursor(np.zeros((6, 2))), text)
        assert cursor is None or not cursor.done, text


@pytest.mark.parametrize("name", ["tiny", "qwen-style"])
def test_every_residual_answer_as_the_tokenizer_encodes_it_can_be_decoded(name):
    tok = TOKENIZERS[name]()
    vocab = vocab_of(tok)
    rng = np.random.default_rng(5)
    for _ in range(30):
        prior = random_prior(rng)
        answer = format_trajectory(prior + np.clip(rng.normal(0, 3.0, (6, 2)), -REACH, REACH), prior=prior)
        target = tok(answer + IM_END, add_special_tokens=False)["input_ids"]
        assert_decoder_path(vocab, tok, target, start_cursor(prior))


def test_random_residual_models_always_answer_inside_the_bound(tokenizer):
    """Random models, priors near and far (95 m): prior + answer always parses, strictly inside 100 m."""
    rng = np.random.default_rng(6)
    for seed in range(2):
        model = VLAModel.create_tiny(tokenizer, WIDTH, SMALL, PromptOptions(residual_answer=True), seed=seed).eval()
        with torch.no_grad():
            model.llm.get_input_embeddings().weight.mul_(1 + 6 * seed)
        prompts = random_prompts(model, seed)
        priors = [random_prior(rng, reach) for reach in (8.0, 40.0, 95.0)]
        ids = constrained_generate_ids(model, [p.input_ids for p in prompts], [p.features for p in prompts],
                                       priors=priors)
        for row, prior in zip(ids, priors):
            text = model.decode(row)
            parsed = parse_trajectory(text, prior=prior)
            assert parsed.ok, f"{text}: {parsed.error}"
            assert np.linalg.norm(parsed.waypoints, axis=1).max() < 100.0
            assert "." not in text and advance(start_cursor(prior), text).done


def test_a_residual_planner_needs_the_priors_and_plans_prior_plus_answer(tokenizer):
    model = VLAModel.create_tiny(tokenizer, WIDTH, SMALL, PromptOptions(residual_answer=True), seed=1).eval()
    prompts = random_prompts(model, seed=2, count=2)
    with pytest.raises(ValueError, match="one prior per prompt"):
        constrained_generate_ids(model, [p.input_ids for p in prompts], [p.features for p in prompts])
    record = synthetic_record(speed=6.0, token="plan0")
    inp = planner_input(record)
    result = Planner(model).plan(inp, fake_tokens(record))
    prior = ctra_prior(inp)
    np.testing.assert_allclose(result.trajectory, parse_trajectory(result.text, prior=prior).waypoints)
    assert absolute_text(result.text, prior) == format_trajectory(result.trajectory)
    assert absolute_text("no answer", prior) == "no answer" and absolute_text(result.text, None) == result.text


def assert_decoder_path(vocab, tok, target: list[int], cursor) -> None:
    """`target` (an encoded answer + <|im_end|>) is a path of the constrained decoder from `cursor`: every
    token the model would choose is allowed there, and the forced spans are exactly the target's."""
    ids, cursor = vocab.forced(cursor)
    while not cursor.done:
        assert target[:len(ids)] == ids
        options, after = vocab.allowed(cursor)
        chosen = [k for k in options if int(vocab.token_ids[k]) == target[len(ids)]]
        assert chosen, f"token {tok.decode([target[len(ids)]])!r} after {tok.decode(ids)!r} is not allowed"
        forced, cursor = vocab.forced(after[options.index(chosen[0])])
        ids += [target[len(ids)]] + forced
    assert ids == target
