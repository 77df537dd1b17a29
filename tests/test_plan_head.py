"""The plan head (vla_world/model/plan_head.py, vla_world/training/plan_head_fit.py): the fit on known
functions, its place in the sequence, the answer text it writes, checkpoints, decoding choice, and the
planning stage that fits it (and GRPO, which drops it)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from model_helpers import fake_tokens, small_model, small_records

from planning.collision_guard import forecast_occupancy
from planning.kinematic import ctra_prior
from planning.metrics import box_collisions
from vla_world.checkpoint import save_checkpoint
from vla_world.config import ConfigError, config_from_dict
from vla_world.data.planner_input import planner_input
from vla_world.data.records import DETECTION_CLASSES
from vla_world.inference import (
    Planner,
    checkpoint_decoding,
    head_text,
    perceived_agents,
    predict_split,
    resolve_decoding,
    to_plan_result,
)
from vla_world.model.plan_head import (
    EGO_STATE_INPUTS,
    PlanHead,
    PlanHeadConfig,
    PlanHeadSpec,
    ego_state_rows,
    fit_plan_head,
)
from vla_world.model.sequence import PLANNING_QUESTION
from vla_world.model.vla import VLAModel
from vla_world.training.config import StageConfig
from vla_world.training.data import (
    EncodedBatches,
    collate,
    encode_examples,
    planning_examples,
)
from vla_world.training.model_setup import start_model
from vla_world.training.plan_head_fit import (
    ego_states,
    fit_stage_plan_head,
    head_features,
    last_prompt_positions,
    plan_targets,
)
from vla_world.training.stages import stage_spec

torch.set_num_threads(1)
FAST = PlanHeadConfig(enabled=True, hidden=32, layers=1, members=1, epochs=300, lr=1e-2, batch_size=16, weight_decay=0.0)


@pytest.fixture(scope="module")
def setup():
    records = small_records()
    model = small_model(records).eval()
    model.prompt = replace(model.prompt, residual_answer=True)
    model.set_plan_head(PlanHeadSpec(model.base_llm.config.hidden_size, 16, 1), seed=0)
    tokens = {r.sample_token: fake_tokens(r, seed=i) for i, r in enumerate(records)}
    return records, model, tokens


def save_model(model: VLAModel, folder):
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("lm_head.weight")}
    return save_checkpoint(folder, state, None, {"stage": "planning"}, model.save_files())


def test_fit_recovers_a_linear_map_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(64, 6, generator=g) * 50 + 10  # far from unit scale: standardisation's job
    targets = (features @ torch.randn(6, 12, generator=g) / 50).reshape(-1, 6, 2)
    head = PlanHead(PlanHeadSpec(6, 32, 1))
    history = fit_plan_head(head, features, targets, FAST, seed=0)
    assert history[-1] < 0.1 * history[0] and bool(head.fitted)
    assert not any(p.requires_grad for p in head.parameters())  # frozen again: the stage optimizer never sees it
    torch.manual_seed(7)
    first = PlanHead(PlanHeadSpec(6, 32, 1))
    second = PlanHead(PlanHeadSpec(6, 32, 1))
    second.load_state_dict(first.state_dict())  # the same init
    assert fit_plan_head(first, features, targets, FAST, seed=3) == fit_plan_head(second, features, targets, FAST,
                                                                                    seed=3)
    torch.testing.assert_close(first(features), second(features), rtol=0, atol=0)  # same seed, same head


def test_members_differ_and_the_head_answers_their_mean():
    g = torch.Generator().manual_seed(1)
    features, targets = torch.randn(40, 5, generator=g), torch.randn(40, 6, 2, generator=g)
    head = PlanHead(PlanHeadSpec(5, 8, 1, members=3))
    fit_plan_head(head, features, targets, replace(FAST, epochs=5), seed=0)
    outputs = [head.member(features, k) for k in range(3)]
    assert not torch.allclose(outputs[0], outputs[1])  # own init and data order: an ensemble, not three copies
    torch.testing.assert_close(head(features), torch.stack(outputs).mean(0))


def test_constant_feature_columns_do_not_divide_by_zero():
    features = torch.cat([torch.ones(8, 1), torch.arange(8.0)[:, None]], 1)
    head = PlanHead(PlanHeadSpec(2, 8, 1))
    fit_plan_head(head, features, torch.zeros(8, 6, 2), replace(FAST, epochs=2), seed=0)
    assert torch.isfinite(head(features)).all()
    assert float(head.std[0]) == 1.0  # unit scale: a scene's first keyframe (mask 0 where train is all 1) stays O(1)
    assert abs(float(head.standardised(torch.tensor([[0.0, 3.5]]))[0, 0])) == 1.0


def test_principal_components_keep_what_varies():
    """A head with state_components k reads the hidden state's top k principal directions over the fit's rows: a
    target carried by the one direction that varies is learnt through k = 1, and the buffers reload."""
    g = torch.Generator().manual_seed(2)
    direction = torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)
    scale = torch.randn(64, 1, generator=g) * 3
    states = 5 + scale * direction + 0.01 * torch.randn(64, 8, generator=g)
    targets = (scale * torch.linspace(-1, 1, 12)).reshape(-1, 6, 2)
    head = PlanHead(PlanHeadSpec(8, 32, 1, state_components=1))
    history = fit_plan_head(head, states, targets, FAST, seed=0)
    assert history[-1] < 0.1 * history[0]
    assert abs(float(head.components[:, 0] @ direction)) > 0.99  # the direction that varies, up to sign
    again = PlanHead(PlanHeadSpec(8, 32, 1, state_components=1))
    again.load_state_dict(head.state_dict())
    torch.testing.assert_close(again(states), head(states))
    with pytest.raises(ValueError, match="state_components must be in 0..8"):
        PlanHead(PlanHeadSpec(8, state_components=9))
    few = PlanHead(PlanHeadSpec(8, 32, 1, state_components=4))  # 3 keyframes have 3 directions at most
    fit_plan_head(few, states[:3], targets[:3], replace(FAST, epochs=2), seed=0)
    assert torch.count_nonzero(few.components.abs().sum(0)) == 3 and torch.isfinite(few(states)).all()


def test_bad_fit_input_and_config_are_refused():
    with pytest.raises(ValueError, match="3 feature rows but 2 targets"):
        fit_plan_head(PlanHead(PlanHeadSpec(4)), torch.zeros(3, 4), torch.zeros(2, 6, 2), FAST)
    with pytest.raises(ValueError, match="5 input columns, the head reads 4"):
        fit_plan_head(PlanHead(PlanHeadSpec(4)), torch.zeros(3, 5), torch.zeros(3, 6, 2), FAST)
    with pytest.raises(ConfigError, match="state_components must be >= 0"):
        config_from_dict(StageConfig, {"stage": "planning", "model": {"plan_head": {"state_components": -1}}}, "x.yaml")
    with pytest.raises(ConfigError, match="epochs and batch_size must be >= 1"):
        config_from_dict(StageConfig, {"stage": "planning", "model": {"plan_head": {"epochs": 0}}}, "x.yaml")
    with pytest.raises(ConfigError, match="plan head replaces the trajectory of a plain answer"):
        config_from_dict(StageConfig, {"stage": "planning", "model": {"plan_head": {"enabled": True}},
                                       "data": {"answer": {"structured": True}}}, "x.yaml")


def test_last_prompt_positions_golden_case():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, -100, -100]])
    assert last_prompt_positions(labels).tolist() == [1, 0]
    with pytest.raises(ValueError, match="no answer labels"):
        last_prompt_positions(torch.full((1, 3), -100))


def test_training_rows_and_prompt_alone_give_the_same_hidden_state(setup):
    """The head fits on right-padded training rows (answer included) and predicts from left-padded prompts."""
    records, model, tokens = setup
    samples, _ = encode_examples(model.sequence_builder, planning_examples(records, residual=True), records, tokens,
                                 1536)
    batch = collate(samples, model.pad_id)
    with torch.no_grad():
        train_rows = model.last_prompt_hidden(batch["input_ids"], batch["attention_mask"], batch["features"],
                                              last_prompt_positions(batch["labels"]))
        prompts = [model.sequence_builder.encode(planner_input(r), tokens[r.sample_token], PLANNING_QUESTION)
                   for r in records]
        from vla_world.model.vla import left_pad

        ids, mask = left_pad([p.input_ids for p in prompts], model.pad_id)
        alone = model.last_prompt_hidden(ids, mask, [p.features for p in prompts], torch.full((3,), ids.shape[1] - 1))
    torch.testing.assert_close(train_rows, alone, atol=1e-5, rtol=1e-4)


def test_targets_are_the_correction_to_the_prompt_prior():
    records = small_records()
    targets = plan_targets(records, residual=True)
    for r in records:
        np.testing.assert_allclose(targets[r.sample_token] + ctra_prior(planner_input(r)), r.ego_future, atol=1e-5)
    absolute = plan_targets(records, residual=False)
    np.testing.assert_allclose(absolute[records[0].sample_token], records[0].ego_future)
    cut = replace(records[0], ego_future_mask=np.array([1, 1, 1, 1, 1, 0], bool))
    assert plan_targets([cut], residual=True) == {}  # no complete future, no target (as no planning example)


def test_head_text_round_trips_through_the_codec():
    prior = np.array([[0.0, 2.0 * k] for k in range(1, 7)])
    plan = np.array([[0.123, -0.456]] * 6)
    parsed = to_plan_result(head_text(plan, prior), prior)
    np.testing.assert_allclose(parsed.trajectory, prior + plan, atol=0.0051)  # whole centimetres
    absolute = to_plan_result(head_text(prior, None))
    np.testing.assert_allclose(absolute.trajectory, prior, atol=0.0051)
    broken = to_plan_result(head_text(np.full((6, 2), np.nan), prior), prior)
    assert broken.trajectory is None and broken.parse_error  # counted as a failure, never a crash


def test_stage_fit_then_checkpoint_then_planner(setup, tmp_path):
    records, model, tokens = setup
    samples, _ = encode_examples(model.sequence_builder, planning_examples(records, residual=True), records, tokens,
                                 1536)
    targets = plan_targets(records, residual=True)
    with pytest.raises(ValueError, match="never fitted"):
        model.plan_from_head([samples[0].input_ids], [samples[0].features])
    summary = fit_stage_plan_head(model, EncodedBatches(samples, model.pad_id), targets, FAST, seed=0)
    assert summary.startswith("plan head fitted on 3 train keyframes") and "prior alone" in summary
    features, _, skipped = head_features(model, EncodedBatches(samples, model.pad_id), targets)
    assert features.shape == (3, model.base_llm.config.hidden_size) and skipped == 0
    folder = save_model(model, tmp_path / "ck")
    assert json.loads((folder / "vla.json").read_text())["plan_head"] == {"width": 32, "hidden": 16, "layers": 1,
                                                                             "members": 1, "ego_inputs": 0,
                                                                             "state_components": 0}
    loaded = VLAModel.from_folder(folder).eval()
    planner = Planner(loaded)
    assert planner.decoding == "head" and Planner(loaded, decoding="constrained").decoding == "constrained"
    inputs = [planner_input(r) for r in records]
    prompts = [loaded.sequence_builder.encode(i, tokens[i.sample_token], PLANNING_QUESTION) for i in inputs]
    priors = [ctra_prior(i) for i in inputs]
    batched = planner.plan_texts(prompts, priors=priors)
    alone = [Planner(loaded, batch_size=1).plan_texts([p], priors=[q])[0] for p, q in zip(prompts, priors)]
    assert batched == alone  # one forward pass per batch, left-padded: the same answers as one at a time
    with torch.no_grad():
        expected = model.plan_head(features).numpy()
    for text, prior, plan in zip(batched, priors, expected):  # the fitted head's output, written in centimetres
        np.testing.assert_allclose(to_plan_result(text, prior).trajectory, prior + plan, atol=0.0051)
    assert checkpoint_decoding(folder) == "head"
    texts = predict_split(folder, records, tokens=tokens, progress=False)
    assert all(to_plan_result(t).parse_error is None for t in texts.values())  # absolute, self-contained
    check_the_guard(folder, loaded, records, tokens)


def check_the_guard(folder, model: VLAModel, records, tokens) -> None:
    """A stopped car on the fastest sample's decoded end point: the guard replaces that plan with a free one,
    keeps every plan it has no conflict for, and the Planner API agrees with predict_split."""
    free = predict_split(folder, records, tokens=tokens, progress=False, guard=False)
    fast = records[2]  # 8 m/s: its slower candidates end far short of the car
    end = to_plan_result(free[fast.sample_token]).trajectory[-1]
    boxes = tokens[fast.sample_token].agent_boxes.clone()
    boxes[0] = torch.tensor([end[0], end[1], 0.0, 1.9, 4.5, 1.6, np.pi / 2])
    classes = tokens[fast.sample_token].agent_classes.clone()
    classes[0] = DETECTION_CLASSES.index("car")
    blocked = {**tokens, fast.sample_token: replace(tokens[fast.sample_token], agent_boxes=boxes, agent_classes=classes)}
    choices: dict[str, int] = {}
    guarded = predict_split(folder, records, tokens=blocked, progress=False, guard_choices=choices)
    assert set(choices) == {r.sample_token for r in records} and choices[fast.sample_token] > 0
    plan = to_plan_result(guarded[fast.sample_token]).trajectory
    occupancy = forecast_occupancy(perceived_agents(blocked[fast.sample_token]))
    assert not box_collisions(plan[None], occupancy[None], "uniad").any()
    assert all(guarded[t] == free[t] for t, chosen in choices.items() if chosen == 0)
    result = Planner(model).plan(planner_input(fast), blocked[fast.sample_token])
    assert result.guard_choice == choices[fast.sample_token]
    np.testing.assert_allclose(result.trajectory, plan, atol=0.0051)
    unguarded = Planner(model, guard=False).plan(planner_input(fast), blocked[fast.sample_token])
    assert unguarded.guard_choice == 0
    np.testing.assert_allclose(unguarded.trajectory, to_plan_result(free[fast.sample_token]).trajectory, atol=0.0051)


def test_a_head_that_reads_the_ego_state(tmp_path):
    """model.plan_head.ego_state: the head reads the hidden state and the prompt's 21 ego-state numbers, at fit
    time (ego_states) and at inference (Planner, predict_split), and refuses to run without them."""
    records = small_records()
    model = small_model(records).eval()
    model.prompt = replace(model.prompt, residual_answer=True)
    model.set_plan_head(PlanHeadSpec(model.base_llm.config.hidden_size, 16, 1, ego_inputs=EGO_STATE_INPUTS), seed=0)
    tokens = {r.sample_token: fake_tokens(r, seed=i) for i, r in enumerate(records)}
    samples, _ = encode_examples(model.sequence_builder, planning_examples(records, residual=True), records, tokens,
                                 1536)
    batches, targets = EncodedBatches(samples, model.pad_id), plan_targets(records, residual=True)
    with pytest.raises(ValueError, match="none was given for sample"):
        fit_stage_plan_head(model, batches, targets, FAST, seed=0)
    ego = ego_states(records)
    assert len(ego_state_rows([planner_input(records[0])])[0]) == EGO_STATE_INPUTS
    fit_stage_plan_head(model, batches, targets, FAST, seed=0, ego=ego)
    features, _, _ = head_features(model, batches, targets, ego=ego)
    width = model.base_llm.config.hidden_size
    assert features.shape == (3, width + EGO_STATE_INPUTS)
    torch.testing.assert_close(features[:, width:], torch.stack([ego[r.sample_token] for r in records]))
    with pytest.raises(ValueError, match="needs \\(1, 21\\) ego-state rows"):
        model.plan_from_head([samples[0].input_ids], [samples[0].features])
    folder = save_model(model, tmp_path / "ck")
    loaded = VLAModel.from_folder(folder).eval()
    assert loaded.plan_head.spec.ego_inputs == EGO_STATE_INPUTS
    texts = predict_split(folder, records, tokens=tokens, progress=False, guard=False)
    with torch.no_grad():
        expected = model.plan_head(features).numpy()
    for r, plan in zip(records, expected):
        prior = ctra_prior(planner_input(r))
        np.testing.assert_allclose(to_plan_result(texts[r.sample_token]).trajectory, prior + plan, atol=0.0051)
    single = Planner(loaded, guard=False).plan(planner_input(records[1]), tokens[records[1].sample_token])
    np.testing.assert_allclose(single.trajectory, to_plan_result(texts[records[1].sample_token]).trajectory,
                               atol=0.0051)


def test_decoding_choice():
    assert resolve_decoding("auto", True) == "head" and resolve_decoding("auto", False) == "constrained"
    assert resolve_decoding("greedy", True) == "greedy"
    with pytest.raises(ValueError, match="has no plan head"):
        resolve_decoding("head", False)


def planning_config(enabled: bool, stage: str = "planning") -> StageConfig:
    return config_from_dict(StageConfig, {"stage": stage, "data": {"token_source": "oracle"},
                                          "model": {"residual_answer": True,
                                                    "plan_head": {"enabled": enabled, "hidden": 16, "layers": 1,
                                                                  "members": 2}}})


def test_planning_stage_adds_the_head_and_grpo_drops_it(tmp_path):
    records = small_records()
    old = save_model(small_model(records), tmp_path / "world")
    model = start_model(planning_config(True), stage_spec("planning"), old, None, records, {})
    assert model.plan_head is not None and not bool(model.plan_head.fitted) and len(model.plan_head.members) == 2
    again = start_model(planning_config(True), stage_spec("planning"), old, None, records, {})
    for a, b in zip(model.plan_head.parameters(), again.plan_head.parameters()):
        torch.testing.assert_close(a, b)  # the fresh head's init is a function of train.seed
    assert start_model(planning_config(False), stage_spec("planning"), old, None, records, {}).plan_head is None
    with_head = save_model(model, tmp_path / "planning")
    grpo = start_model(planning_config(False, "grpo"), stage_spec("grpo"), with_head, None, records, {})
    assert grpo.plan_head is None  # GRPO changes the LLM the head reads: its planner writes the answer
