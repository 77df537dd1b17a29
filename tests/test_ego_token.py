"""The ego-state token (vla_world/model/ego_token.py): its vector on a known case, its place in the prompt,
its splice into the embeddings, checkpoints with and without it, and every planning path that builds prompts."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from model_helpers import fake_tokens, small_model, small_records

from planning.rewards import read_answer
from vla_world.checkpoint import save_checkpoint
from vla_world.config import config_from_dict
from vla_world.constrained import constrained_sample_ids
from vla_world.data.planner_input import planner_input
from vla_world.inference import Planner, predict_split
from vla_world.model.ego_token import (
    EGO_FIELDS,
    EGO_SCALES,
    EGO_WIDTH,
    ego_token_features,
)
from vla_world.model.sequence import PLANNING_QUESTION, SequenceBuilder
from vla_world.model.tokenizer import EGO_PLACEHOLDER, SPECIAL_TOKENS
from vla_world.model.vla import VLAModel
from vla_world.training.config import StageConfig
from vla_world.training.data import collate, encode_examples, planning_examples
from vla_world.training.grpo import build_prompts
from vla_world.training.model_setup import start_model
from vla_world.training.stages import stage_spec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    records = small_records()
    model = small_model(records).eval()
    model.set_ego_token(True, seed=0)
    tokens = {r.sample_token: fake_tokens(r, seed=i) for i, r in enumerate(records)}
    return records, model, tokens


def save_model(model: VLAModel, folder):
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("lm_head.weight")}
    return save_checkpoint(folder, state, None, {"stage": "planning"}, model.save_files())


def test_feature_vector_golden_case():
    # synthetic ego: 5 m/s straight ahead (+y), no acceleration or turn, past 2.5 m apart, keep forward
    record = small_records()[1]
    vector = ego_token_features(planner_input(record))
    expected = np.array([0, -1.0, 0, -0.75, 0, -0.5, 0, -0.25,  # past poses / 10 m
                         1, 1, 1, 1,  # past mask
                         0, 1.0, 0, 0, 0, 1.0,  # velocity / 5, acceleration / 2, yaw rate / 0.5, speed / 5
                         0, 0, 1,  # command one-hot: keep forward
                         0, 0.25, 0, 0.5, 0, 0.75, 0, 1.0, 0, 1.25, 0, 1.5], np.float32)  # CTRA prior / 10 m
    assert vector.dtype == np.float32 and vector.shape == (EGO_WIDTH,) == (len(EGO_FIELDS),) == EGO_SCALES.shape
    np.testing.assert_allclose(vector, expected, atol=1e-6)


def test_feature_vector_reads_no_label():
    record = small_records()[0]
    other_future = dataclasses.replace(record, ego_future=record.ego_future + 7.0, command=record.command)
    np.testing.assert_array_equal(ego_token_features(planner_input(record)),
                                  ego_token_features(planner_input(other_future)))
    with pytest.raises(TypeError, match="PlannerInput"):
        ego_token_features(record)


def test_prompt_holds_one_ego_token_with_its_vector(setup):
    records, model, tokens = setup
    inp = planner_input(records[2])
    sample = model.sequence_builder.encode(inp, tokens["tok2"], PLANNING_QUESTION)
    ids = torch.tensor(sample.input_ids)
    assert int((ids == model.placeholder_ids["ego"]).sum()) == 1
    torch.testing.assert_close(sample.features["ego"], torch.from_numpy(ego_token_features(inp))[None])
    assert f"Ego state token: {EGO_PLACEHOLDER}\nEgo states:" in model.tokenizer.decode(sample.input_ids)
    plain = SequenceBuilder(model.tokenizer, dataclasses.replace(model.prompt, ego_token=False))
    without = plain.encode(inp, tokens["tok2"], PLANNING_QUESTION)
    assert "ego" not in without.features and model.placeholder_ids["ego"] not in without.input_ids
    assert EGO_PLACEHOLDER not in SPECIAL_TOKENS  # registered after the BPE: older tokenizers keep their ids


def test_ego_position_gets_the_projected_vector(setup):
    records, model, tokens = setup
    sample = model.sequence_builder.encode(planner_input(records[0]), tokens["tok0"], PLANNING_QUESTION)
    batch = collate([sample], model.pad_id)
    position = sample.input_ids.index(model.placeholder_ids["ego"])
    with torch.no_grad():
        embeds = model.embed(batch["input_ids"], batch["features"])
        torch.testing.assert_close(embeds[0, position], model.projectors.ego(sample.features["ego"])[0])
        moved = model.embed(batch["input_ids"], [dict(sample.features, ego=sample.features["ego"] + 1.0)])
    assert not torch.allclose(moved[0, position], embeds[0, position])
    torch.testing.assert_close(moved[0, :position], embeds[0, :position])
    with pytest.raises(ValueError, match="ego: a sample's features lack them"):
        model.embed(batch["input_ids"], [{k: v for k, v in sample.features.items() if k != "ego"}])


def test_training_batch_reaches_the_ego_projector(setup):
    records, model, tokens = setup
    samples, _ = encode_examples(model.sequence_builder, planning_examples(records), records, tokens, 1536)
    batch = collate(samples, model.pad_id)
    model.zero_grad()
    model(batch["input_ids"], batch["attention_mask"], batch["features"], batch["labels"]).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projectors.ego.parameters())
    model.zero_grad()


def test_round_trip_keeps_the_ego_projector(setup, tmp_path):
    records, model, tokens = setup
    folder = save_model(model, tmp_path / "ck")
    assert json.loads((folder / "vla.json").read_text())["ego_width"] == EGO_WIDTH
    loaded = VLAModel.from_folder(folder).eval()
    assert loaded.prompt.ego_token
    sample = loaded.sequence_builder.encode(planner_input(records[1]), tokens["tok1"], PLANNING_QUESTION)
    batch = collate([sample], model.pad_id)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["input_ids"], batch["attention_mask"], batch["features"]).logits,
                                   model(batch["input_ids"], batch["attention_mask"], batch["features"]).logits)
    # every planning path builds the token: the planner API, a checkpoint run over a split
    assert Planner(loaded).plan(planner_input(records[0]), tokens["tok0"]).parse_error is None
    assert set(predict_split(folder, records, tokens=tokens, progress=False)) == {r.sample_token for r in records}


def test_a_changed_ego_vector_is_refused(setup, tmp_path):
    folder = save_model(setup[1], tmp_path / "ck")
    meta = json.loads((folder / "vla.json").read_text())
    (folder / "vla.json").write_text(json.dumps(dict(meta, ego_width=EGO_WIDTH - 1)))
    with pytest.raises(ValueError, match="ego-state vector has width 32.*retrain the planning stage"):
        VLAModel.from_folder(folder)


def planning_config(ego_token: bool) -> StageConfig:
    return config_from_dict(StageConfig, {"stage": "planning", "data": {"token_source": "oracle"},
                                          "model": {"ego_token": ego_token}})


def test_planning_stage_adds_keeps_or_drops_the_ego_projector(tmp_path):
    records = small_records()
    old = save_model(small_model(records), tmp_path / "motion")  # written without the ego token
    assert json.loads((old / "vla.json").read_text())["ego_width"] == 0
    model = start_model(planning_config(True), stage_spec("planning"), old, None, records, {})
    assert model.prompt.ego_token and model.projectors.ego_width == EGO_WIDTH
    again = start_model(planning_config(True), stage_spec("planning"), old, None, records, {})
    for a, b in zip(model.projectors.ego.parameters(), again.projectors.ego.parameters()):
        torch.testing.assert_close(a, b)  # the fresh projector's init is a function of train.seed
    plain = start_model(planning_config(False), stage_spec("planning"), old, None, records, {})
    assert not plain.prompt.ego_token and plain.projectors.ego is None
    with torch.no_grad():
        for p in model.projectors.ego.parameters():
            p.add_(0.5)  # trained weights, unlike a fresh init
    with_ego = save_model(model, tmp_path / "planning")
    kept = start_model(planning_config(True), stage_spec("planning"), with_ego, None, records, {})
    for a, b in zip(model.projectors.ego.parameters(), kept.projectors.ego.parameters()):
        torch.testing.assert_close(a, b)  # a checkpoint's own projector is kept, not re-initialised
    dropped = start_model(planning_config(False), stage_spec("planning"), with_ego, None, records, {})
    assert dropped.projectors.ego is None and not dropped.prompt.ego_token


def test_grpo_prompts_carry_the_token_and_sample_in_the_template(setup):
    records, model, tokens = setup
    cfg = config_from_dict(StageConfig, {"stage": "grpo", "data": {"token_source": "oracle"}})
    prompts = build_prompts(cfg, model, records, tokens)
    assert all(p.sample.features["ego"].shape == (1, EGO_WIDTH) for p in prompts)
    answers = constrained_sample_ids(model, [p.sample.input_ids for p in prompts],
                                     [p.sample.features for p in prompts], 1.0, 0.9, torch.Generator().manual_seed(0))
    assert all(read_answer(model.decode(a.ids)).error is None for a in answers)


def test_left_padded_batch_with_ego_tokens_equals_each_sample_alone(setup):
    from test_model_batching import compare_batch_with_alone

    records, model, tokens = setup
    samples = [model.sequence_builder.encode(planner_input(r), tokens[r.sample_token], PLANNING_QUESTION, "x")
               for r in records]
    samples[1] = model.sequence_builder.encode(planner_input(records[1]), fake_tokens(records[1], scene=6), "q", "x")
    assert len({len(s.input_ids) for s in samples}) > 1  # rows of different length: padding is exercised
    result = compare_batch_with_alone(model, samples)  # its hand splice walks model.placeholder_ids, ego included
    assert result.equal, result
