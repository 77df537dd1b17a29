"""The structured answer's `<visual>` block and residual `<answer>` (issue 10 parts 3 and 5): targets, decoding, eval."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from model_helpers import fake_tokens, small_model, small_records

from planning.codec import format_trajectory, parse_trajectory
from planning.kinematic import ctra_prior
from planning.structured import AnswerConfig, parse_answer
from vla_world.constrained_structured import structured_generate_ids
from vla_world.data.planner_input import planner_input
from vla_world.inference import Planner, absolute_text
from vla_world.model.sequence import PLANNING_QUESTION, PromptOptions, system_prompt
from vla_world.model.visual_tokens import VisualSpec
from vla_world.training.config import LossConfig
from vla_world.training.data import planning_examples
from vla_world.training.losses import segment_weights

torch.set_num_threads(1)
VISUAL = AnswerConfig(structured=True, visual=True)
SPEC = VisualSpec(codebook_size=24, codes_per_frame=7)


@pytest.fixture(scope="module")
def records():
    """tok0 -> tok1 -> tok2 (one scene); tok2 is the scene's last keyframe (no next frame)."""
    base = small_records()
    return [dataclasses.replace(base[0], next_sample_token="tok1"),
            dataclasses.replace(base[1], next_sample_token="tok2"), base[2]]


@pytest.fixture(scope="module")
def tokens(records):
    return {r.sample_token: fake_tokens(r) for r in records}


CODES = {"tok0": np.array([5, 5, 5, 5, 5, 5, 5]), "tok1": np.array([1, 2, 3, 4, 5, 6, 7]),
         "tok2": np.array([23, 0, 23, 0, 23, 0, 23])}


# ---------------------------------------------------------------- the training answer


def test_visual_block_holds_the_next_frames_codes_and_scene_ends_are_left_out(records, tokens):
    examples = planning_examples(records, VISUAL, tokens, frame_codes=CODES)
    assert [e.sample_token for e in examples] == ["tok0", "tok1"]  # tok2 has no next keyframe: counted, left out
    parsed = parse_answer(examples[0].answer, VISUAL.blocks())
    assert parsed.error is None and tuple(parsed.blocks) == VISUAL.blocks()
    assert parsed.blocks["visual"] == "".join(f"<vis_{c}>" for c in CODES["tok1"])  # the NEXT frame, not its own
    assert parsed.blocks["visual"] != "".join(f"<vis_{c}>" for c in CODES["tok0"])
    # the other blocks are those of the answer without <visual>
    without = planning_examples(records[:1], AnswerConfig(structured=True), tokens)[0].answer
    assert examples[0].answer.replace(f"<visual>{parsed.blocks['visual']}</visual>", "") == without
    with pytest.raises(ValueError, match="frame_codes"):
        planning_examples(records, VISUAL, tokens)
    with pytest.raises(KeyError, match="export_frame_codes"):
        planning_examples(records, VISUAL, tokens, frame_codes={"tok1": CODES["tok1"]})


def test_visual_training_example_encodes_with_k_code_labels(records, tokens):
    model = small_model(records)
    model.grow_visual(SPEC)
    example = planning_examples(records[:1], VISUAL, tokens, frame_codes=CODES)[0]
    sample = model.sequence_builder.encode(planner_input(records[0]), tokens["tok0"], example.question, example.answer)
    labels = torch.tensor([sample.labels])
    codes = model.visual_ids.codes
    assert int(torch.isin(labels, codes).sum()) == SPEC.codes_per_frame
    weights = segment_weights(labels, codes, LossConfig("segment", visual_weight=1.0, text_weight=3.0))
    visual = torch.isin(labels, codes)
    torch.testing.assert_close(weights[visual].sum(), torch.tensor(0.25))  # the visual segment's share: 1 / (1 + 3)


# ---------------------------------------------------------------- residual <answer>


def test_residual_structured_answer_carries_the_plain_residual_trajectory(records, tokens):
    record = records[1]
    prior = ctra_prior(planner_input(record))
    residual = planning_examples([record], AnswerConfig(structured=True), tokens, residual=True)[0].answer
    absolute = planning_examples([record], AnswerConfig(structured=True), tokens)[0].answer
    inside = parse_answer(residual).blocks["answer"]
    assert inside == format_trajectory(record.ego_future, prior=prior)  # exactly the plain residual answer
    assert residual.replace(inside, "") == absolute.replace(parse_answer(absolute).blocks["answer"], "")
    np.testing.assert_allclose(parse_trajectory(residual, prior).waypoints, record.ego_future, atol=0.006)
    rewritten = absolute_text(residual, prior)  # prediction files: blocks kept, <answer> in metres
    assert rewritten == absolute


def test_residual_structured_prompt_describes_blocks_and_centimetres():
    text = system_prompt(PromptOptions(answer_blocks=VISUAL.blocks(), residual_answer=True))
    assert all(f"<{b}>" in text for b in VISUAL.blocks()) and "centimetres" in text
    assert system_prompt(PromptOptions(residual_answer=True)) != text  # the plain residual prompt is unchanged


# ---------------------------------------------------------------- constrained decoding


def random_visual_model(records, seed: int, residual: bool):
    torch.manual_seed(seed)
    model = small_model(records)
    model.grow_visual(SPEC, seed=seed)
    model.prompt = dataclasses.replace(model.prompt, answer_blocks=VISUAL.blocks(), residual_answer=residual)
    with torch.no_grad():  # random weights: unconstrained, the argmax would rarely be a code where one is due
        for p in model.llm.parameters():
            p.normal_(0, 0.5)
    return model.eval()


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("seed", range(2))
def test_structured_decoding_with_visual_gives_k_codes_and_a_trajectory(records, tokens, seed, residual):
    model = random_visual_model(records, seed, residual)
    prompts = [model.sequence_builder.encode(planner_input(r), tokens[r.sample_token], PLANNING_QUESTION)
               for r in records]
    priors = [ctra_prior(planner_input(r)) for r in records] if residual else None
    ids = structured_generate_ids(model, [p.input_ids for p in prompts], [p.features for p in prompts], priors=priors)
    codes = set(model.visual_ids.codes.tolist())
    for row, prior in zip(ids, priors or [None] * len(ids)):
        start, end = row.index(model.visual_ids.start), row.index(model.visual_ids.end)
        assert end - start - 1 == SPEC.codes_per_frame and all(i in codes for i in row[start + 1:end])
        assert sum(i in codes for i in row) == SPEC.codes_per_frame  # no code outside the block
        text = model.decode(row)
        parsed = parse_answer(text, VISUAL.blocks())
        assert parsed.error is None, text
        trajectory = parse_trajectory(text, prior) if residual else parsed.trajectory
        assert trajectory.ok and trajectory.waypoints.shape == (6, 2)
    alone = [structured_generate_ids(model, [p.input_ids], [p.features], priors=None if priors is None else [q])[0]
             for p, q in zip(prompts, priors or [None] * len(prompts))]
    assert ids == alone  # rows reach <visual> at different steps; batched still equals one at a time


def test_residual_planner_plans_through_the_structured_decoder(records, tokens):
    model = random_visual_model(records, 3, residual=True)
    result = Planner(model).plan(planner_input(records[0]), tokens["tok0"])
    assert result.text.startswith("<perception>") and result.trajectory is not None
    with pytest.raises(ValueError, match="prior"):
        structured_generate_ids(model, [[1, 2, 3]], [{}])


def test_visual_block_without_frame_code_tokens_is_refused(records, tokens):
    model = small_model(records)
    model.prompt = dataclasses.replace(model.prompt, answer_blocks=VISUAL.blocks())
    prompt = model.sequence_builder.encode(planner_input(records[0]), tokens["tok0"], PLANNING_QUESTION)
    with pytest.raises(ValueError, match="world stage"):
        structured_generate_ids(model, [prompt.input_ids], [prompt.features])
