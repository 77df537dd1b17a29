"""The structured planning answer (issue 10 part 3): builder, block parser, tokens, rewards and constrained decoding."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from model_helpers import fake_tokens, small_model, small_records

from planning.rewards import ACTIONS as REWARD_ACTIONS
from planning.rewards import RewardConfig, score_answer
from planning.structured import (
    ACTIONS,
    BLOCKS,
    TAG_TOKENS,
    AnswerConfig,
    SeenAgent,
    heading_words,
    parse_answer,
    parse_blocks,
    path_distance,
    structured_answer,
)
from vla_world.constrained_structured import TEXT_CAPS, structured_generate_ids
from vla_world.data.planner_input import planner_input
from vla_world.inference import Planner
from vla_world.model.sequence import (
    PLANNING_QUESTION,
    SYSTEM_PROMPT,
    PromptOptions,
    system_prompt,
)
from vla_world.model.tokenizer import STRUCTURE_TOKENS
from vla_world.qa.vocab import ACTIONS as QA_ACTIONS
from vla_world.training.data import planning_examples

torch.set_num_threads(1)
ON = AnswerConfig(structured=True)

GOLDEN = ("<perception>pedestrian (-4.0,6.0) heading right; car (3.0,10.0) heading with us</perception>"
          "<prediction>(0.00,2.50)</prediction>"
          "<think>Medium risk from the car at (3.0,10.0), 3.0 m from the path. Stay alert.</think>"
          "<action>stop/slow down</action>"
          "<answer><traj_start>[(0.00,2.50),(0.00,5.00),(0.00,7.50),(0.00,10.00),(0.00,12.50),(0.00,15.00)]"
          "<traj_end></answer>")


@pytest.fixture(scope="module")
def records():
    return small_records()


@pytest.fixture(scope="module")
def tokens(records):
    return {r.sample_token: fake_tokens(r) for r in records}


# ---------------------------------------------------------------- the builder


def test_golden_structured_answer(records, tokens):
    """Record tok1: ego at 5 m/s straight ahead, a car 3 m right / 10 m ahead driving along, a pedestrian
    4 m left / 6 m ahead walking right (the labels say yield to it: stop/slow down); the path is x = 0,
    so the car is 3.0 m from it (medium risk, < 4 m) and the pedestrian exactly 4.0 m (not assessed)."""
    example = planning_examples([records[1]], ON, tokens)[0]
    assert example.answer == GOLDEN
    assert planning_examples([records[1]], ON, tokens, seed=0)[0].answer == GOLDEN  # deterministic


def test_plain_answer_stays_the_default(records, tokens):
    plain = planning_examples(records, AnswerConfig(), tokens)
    assert all(e.answer.startswith("<traj_start>") and "<perception>" not in e.answer for e in plain)
    assert AnswerConfig().blocks() == () and planning_examples(records) == plain


def test_each_block_is_one_flag(records, tokens):
    no_think = AnswerConfig(structured=True, think=False, perception=False)
    answer = planning_examples([records[1]], no_think, tokens)[0].answer
    assert answer == GOLDEN[GOLDEN.index("<prediction>"):GOLDEN.index("<think>")] + GOLDEN[GOLDEN.index("<action>"):]
    assert no_think.blocks() == ("prediction", "action", "answer")
    with pytest.raises(ValueError, match="blocks"):
        structured_answer(AnswerConfig(structured=True, visual=True), np.zeros((6, 2)), prediction=np.zeros(2),
                          action="keep forward")


def test_think_wording_varies_but_not_its_facts(records, tokens):
    texts = {planning_examples([records[1]], ON, tokens, seed=s)[0].answer for s in range(12)}
    assert len(texts) > 2
    for text in texts:
        think = parse_answer(text).blocks["think"]
        assert "car at (3.0,10.0)" in think and "3.0 m" in think and "edium risk" in think


def test_headings_and_path_distance():
    assert heading_words(SeenAgent("car", 0, 5, math.pi / 2)) == "heading with us"
    assert heading_words(SeenAgent("car", 0, 5, -math.pi / 2)) == "heading towards us"
    assert heading_words(SeenAgent("pedestrian", 0, 5, math.pi)) == "heading left"
    assert heading_words(SeenAgent("barrier", 0, 5, 0.0)) == "static"
    path = np.stack([np.zeros(6), np.arange(1, 7.0)], 1)
    assert path_distance(3.0, 2.0, path) == pytest.approx(3.0) and path_distance(0.0, 9.0, path) == pytest.approx(3.0)


def test_tags_actions_and_tokens_are_one_list():
    assert set(TAG_TOKENS) <= set(STRUCTURE_TOKENS)
    assert ACTIONS == QA_ACTIONS == REWARD_ACTIONS
    assert [t[1:-1] for t in TAG_TOKENS[::2]] == list(BLOCKS)


def test_system_prompt_describes_the_answer_form():
    assert system_prompt(PromptOptions()) == SYSTEM_PROMPT
    text = system_prompt(PromptOptions(answer_blocks=ON.blocks()))
    assert all(f"<{b}>" in text for b in ON.blocks()) and "<visual>" not in text
    with pytest.raises(ValueError, match="answer_blocks"):
        PromptOptions(answer_blocks=("think",))


# ---------------------------------------------------------------- the parser


def test_parser_reads_every_block_and_reports_failures():
    parsed = parse_answer(GOLDEN, ON.blocks())
    assert parsed.error is None and list(parsed.blocks) == list(ON.blocks())
    assert parsed.blocks["action"] == "stop/slow down" and parsed.trajectory.ok
    assert parse_answer(GOLDEN + "<|im_end|>").error is None
    assert "out of order" in parse_blocks(GOLDEN.replace("<action>stop/slow down</action>", "")
                                          .replace("<perception>", "<action>stop/slow down</action><perception>"))[1]
    assert "not closed" in parse_blocks(GOLDEN.replace("</think>", ""))[1]
    assert "twice" in parse_blocks(GOLDEN + "<answer>x</answer>")[1]
    assert "not a block" in parse_blocks(GOLDEN.replace("<think>", "so <think>"))[1]
    assert "expected" in parse_answer(GOLDEN, ("prediction", "answer")).error
    plain = parse_answer(GOLDEN[GOLDEN.index("<traj_start>"):GOLDEN.index("</answer>")])
    assert plain.trajectory.ok and not plain.structured and plain.error is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(
    list("<>/()[],.-0123456789 abc") + list(TAG_TOKENS) + ["<traj_start>", "<traj_end>", "<|im_end|>"]),
    max_size=40).map("".join)))
def test_parser_never_raises(text):
    parsed = parse_answer(text)
    assert parsed.error is None or isinstance(parsed.error, str)
    blocks, error = parse_blocks(text)
    assert isinstance(blocks, dict) and (error is None or isinstance(error, str))


_coord = st.floats(-60, 60, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=4, max_size=4),
       trajectory=st.lists(st.tuples(_coord, _coord), min_size=6, max_size=6),
       agents=st.lists(st.tuples(st.sampled_from(["car", "pedestrian", "traffic_cone", "truck"]), _coord, _coord,
                                 st.floats(-4, 4)), max_size=7),
       action=st.sampled_from(ACTIONS), seed=st.integers(0, 99))
def test_builder_round_trips_through_the_parser_and_the_rewards(flags, trajectory, agents, action, seed):
    config = AnswerConfig(True, *flags[:2], False, *flags[2:])
    seen = [SeenAgent(c, x, y, yaw) for c, x, y, yaw in agents]
    wp = np.array(trajectory)
    text = structured_answer(config, wp, agents=seen, prediction=wp[0], action=action, sample_token="s", seed=seed)
    parsed = parse_answer(text, config.blocks())
    assert parsed.error is None and tuple(parsed.blocks) == config.blocks()
    np.testing.assert_allclose(parsed.trajectory.waypoints, wp, atol=0.006)
    assert "".join(f"<{k}>{v}</{k}>" for k, v in parsed.blocks.items()) == text
    reward = RewardConfig(structured=True, blocks=config.blocks())
    scores = score_answer(text, _target(), reward)
    assert scores.terms["format"] == 1.0


def _target():
    from planning.rewards import RewardTarget

    return RewardTarget("s", "stp3", np.zeros((6, 2)), np.ones(6, bool), ((),) * 6, (), np.zeros((0, 2)))


def test_gt_structured_answer_scores_on_the_verifiers(records, tokens):
    """The builder's blocks are what the verifiers read: perception names the agents where they are (fake
    tokens carry the GT boxes), the prediction is the first waypoint here (constant speed)."""
    from planning.reward_targets import reward_target_of

    scores = score_answer(GOLDEN, reward_target_of(records[1]), RewardConfig(structured=True))
    assert scores.terms["format"] == 1.0 and scores.terms["accuracy"] == 1.0
    assert scores.terms["grounding"] == 1.0  # both agents named, at their positions, no hallucination
    assert scores.parts["consistency"]["prediction"] == 1.0


# ---------------------------------------------------------------- constrained decoding


@pytest.fixture(scope="module")
def structured_model(records):
    model = small_model(records)
    model.prompt = dataclasses.replace(model.prompt, answer_blocks=ON.blocks())
    return model


def _prompts(model, records, tokens):
    builder = model.sequence_builder
    return [builder.encode(planner_input(r), tokens[r.sample_token], PLANNING_QUESTION) for r in records]


def test_constrained_structured_decoding_always_parses(records, tokens, structured_model):
    structured_model = copy.deepcopy(structured_model)
    for seed in range(3):  # random weights: every answer still has its blocks, an action and 6 waypoints
        torch.manual_seed(seed)
        for p in structured_model.llm.parameters():
            p.data.normal_(0, 0.5)
        prompts = _prompts(structured_model, records, tokens)
        ids = structured_generate_ids(structured_model, [p.input_ids for p in prompts], [p.features for p in prompts])
        for row in ids:
            parsed = parse_answer(structured_model.decode(row), ON.blocks())
            assert parsed.error is None and parsed.trajectory.ok, structured_model.decode(row)
            assert parsed.blocks["action"] in ACTIONS
            tag = structured_model.tokenizer.convert_tokens_to_ids
            assert row.index(tag("</think>")) - row.index(tag("<think>")) - 1 <= TEXT_CAPS["think"]  # the cap
            scores = score_answer(structured_model.decode(row), _target(), RewardConfig(structured=True))
            assert scores.terms["format"] == 1.0 and scores.parts["consistency"]["prediction_points"] == 1


def test_batched_structured_decoding_equals_one_at_a_time(records, tokens, structured_model):
    prompts = _prompts(structured_model, records, tokens)
    batch = structured_generate_ids(structured_model, [p.input_ids for p in prompts], [p.features for p in prompts])
    alone = [structured_generate_ids(structured_model, [p.input_ids], [p.features])[0] for p in prompts]
    assert batch == alone


def test_planner_follows_the_checkpoint_answer_form(records, tokens, structured_model):
    result = Planner(structured_model).plan(planner_input(records[0]), tokens[records[0].sample_token])
    assert result.text.startswith("<perception>") and result.trajectory is not None


def test_structured_prompt_and_plan_ignore_labels(records, tokens, structured_model):
    """The boundary holds for the structured answer: labels feed only the training answer, never the prompt."""
    from test_planner_boundary import without_labels

    planner = Planner(structured_model)
    for record in records:
        real, blank = planner_input(record), planner_input(without_labels(record))
        builder = structured_model.sequence_builder
        assert builder.encode(real, tokens[record.sample_token], PLANNING_QUESTION).input_ids == \
            builder.encode(blank, tokens[record.sample_token], PLANNING_QUESTION).input_ids
        assert planner.plan(real, tokens[record.sample_token]).text == planner.plan(blank, tokens[record.sample_token]).text


def test_tags_are_single_tokens_of_the_training_sequence(records, tokens, structured_model):
    example = planning_examples([records[1]], ON, tokens)[0]
    sample = structured_model.sequence_builder.encode(planner_input(records[1]), tokens[records[1].sample_token],
                                                      example.question, example.answer)
    tag_ids = {structured_model.tokenizer.convert_tokens_to_ids(t) for t in TAG_TOKENS}
    answer_ids = [i for i in sample.labels if i != -100]
    assert sum(i in tag_ids for i in answer_ids) == 2 * len(ON.blocks())


def test_grow_vocabulary_gives_new_tags_mean_rows(records):
    from vla_world.model.tokenizer import add_special_tokens

    model = small_model(records)
    rows = model.base_llm.get_input_embeddings().weight.shape[0]
    assert model.grow_vocabulary() == 0  # the table is padded past the tokenizer: nothing to grow
    new = [f"<new_tag_{i}>" for i in range(rows - len(model.tokenizer) + 3)]  # an older checkpoint meeting new tags
    model.tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    add_special_tokens(model.tokenizer)
    assert model.grow_vocabulary() == len(model.tokenizer) - rows > 0
    weight = model.base_llm.get_input_embeddings().weight
    assert weight.shape[0] == len(model.tokenizer)
    torch.testing.assert_close(weight[-1], weight[:rows].mean(0))
    assert model.grow_vocabulary() == 0


def test_stage_config_flags():
    from tool_helpers import ROOT

    from vla_world.config import ConfigError, load_config
    from vla_world.training.config import StageConfig

    path = ROOT / "configs/planning/tiny.yaml"
    assert load_config(path, StageConfig).data.answer.blocks() == ()
    with pytest.raises(ConfigError, match="add --set model.plan_head.enabled=false"):  # the shipped plan head
        load_config(path, StageConfig, overrides={"data.answer.structured": True})
    written = {"model.plan_head.enabled": False}
    cfg = load_config(path, StageConfig, overrides={**written, "data.answer.structured": True,
                                                    "data.answer.think": False})
    assert cfg.data.answer.blocks() == ("perception", "prediction", "action", "answer")
    visual = load_config(path, StageConfig, overrides={**written, "data.answer.structured": True,
                                                       "data.answer.visual": True})
    assert visual.data.answer.blocks() == ("perception", "prediction", "visual", "think", "action", "answer")
    with pytest.raises(ConfigError, match="high_risk_m"):
        load_config(path, StageConfig, overrides={"data.answer.high_risk_m": 9.0})
