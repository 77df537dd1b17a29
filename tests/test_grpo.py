"""GRPO (vla_world/training/grpo*.py): the formulas with known answers, sampling inside the template,
one step moves the policy and not the reference, exact resume, and two steps through tools/train.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from model_helpers import fake_tokens, small_model, small_records
from tool_helpers import ROOT, load_tool

from planning.reward_targets import reward_target_of
from planning.rewards import read_answer
from vla_world.checkpoint import save_checkpoint
from vla_world.config import config_from_dict
from vla_world.constrained import constrained_generate_ids, constrained_sample_ids
from vla_world.data.planner_input import planner_input
from vla_world.model.sequence import PLANNING_QUESTION
from vla_world.training.config import StageConfig
from vla_world.training.grpo import (
    GRPOTrainer,
    Prompt,
    Reference,
    rollout_batch,
    token_advantages,
)
from vla_world.training.grpo_loss import (
    AnswerLogProbs,
    clipped_loss,
    group_advantages,
    k3_kl,
    zero_signal_groups,
)
from vla_world.training.model_setup import set_trainable
from vla_world.training.stages import stage_spec

torch.set_num_threads(1)


# ---------------------------------------------------------------- the formulas
def test_constant_reward_group_has_zero_advantage_and_counts_as_zero_signal():
    rewards = np.array([[0.3, 0.3, 0.3, 0.3], [0.0, 1.0, 0.0, 1.0]])
    adv = group_advantages(rewards, 1e-4)
    assert np.all(adv[0] == 0)
    assert adv[1] == pytest.approx([-1, 1, -1, 1], rel=1e-3)  # mean 0.5, std 0.5
    assert zero_signal_groups(rewards) == 1


def test_k3_is_zero_for_identical_policies_and_positive_otherwise():
    logp = torch.log(torch.tensor([0.2, 0.5, 0.9]))
    assert torch.equal(k3_kl(logp, logp), torch.zeros(3))
    assert (k3_kl(logp, logp - 0.3) > 0).all() and (k3_kl(logp, logp + 0.3) > 0).all()
    # k3 = r - log r - 1 with r = p_ref / p: r = 2 -> 1 - log 2
    assert float(k3_kl(torch.tensor([math.log(0.25)]), torch.tensor([math.log(0.5)]))) == pytest.approx(1 - math.log(2))


def test_clipped_loss_known_values():
    old = torch.zeros(2)
    adv = torch.tensor([1.0, -1.0])
    same = clipped_loss(old.clone(), old, old, adv, 0.2, 0.0)
    assert float(same.loss) == pytest.approx(0.0) and same.clip_fraction == 0.0  # ratio 1: -mean(A) = 0
    moved = clipped_loss(torch.log(torch.tensor([1.5, 1.5])), old, old, adv, 0.2, 0.0)
    # token 0: min(1.5, 1.2) * 1 = 1.2 ; token 1: min(-1.5, -1.2) = -1.5 -> loss = -(1.2 - 1.5) / 2
    assert float(moved.loss) == pytest.approx(0.15) and moved.clip_fraction == 1.0


# ---------------------------------------------------------------- sampling inside the template
@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    records = small_records()
    model = small_model(records)
    builder = model.sequence_builder
    prompts = [Prompt(builder.encode(planner_input(r), fake_tokens(r), PLANNING_QUESTION), reward_target_of(r))
               for r in records]
    return records, model, prompts


def test_sampled_answers_are_template_answers_and_near_zero_temperature_is_greedy(setup):
    _, model, prompts = setup
    ids = [p.sample.input_ids for p in prompts]
    feats = [p.sample.features for p in prompts]
    sampled = constrained_sample_ids(model, ids, feats, 1.0, 0.9, torch.Generator().manual_seed(0))
    for answer in sampled:
        assert answer.ids[-1] == model.eos_id and len(answer.chosen) == len(answer.ids)
        assert read_answer(model.decode(answer.ids)).error is None
        assert any(answer.chosen) and not all(answer.chosen)  # numbers chosen, brackets forced
    cold = constrained_sample_ids(model, ids, feats, 1e-6, 1.0, torch.Generator().manual_seed(0))
    assert [a.ids[:-1] for a in cold] == constrained_generate_ids(model, ids, feats)


# ---------------------------------------------------------------- one step, resume
def grpo_config(**train) -> StageConfig:
    return config_from_dict(StageConfig, {"stage": "grpo", "data": {"token_source": "oracle"},
                                          "train": {"lr": 5e-3, "batch_size": 2, "epochs": 4.0, "warmup_ratio": 0.0,
                                                    **train},
                                          # an untrained model writes points tens of metres off: a long
                                          # accuracy scale keeps its rewards apart (else every group is zero-signal)
                                          "grpo": {"group_size": 4, "kl_coef": 0.01,
                                                   "reward": {"accuracy_scale_m": 100.0}}})


def save_model(model, folder: Path) -> Path:
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("lm_head.weight")}
    return save_checkpoint(folder, state, None, {"stage": "planning"}, model.save_files())


def make_trainer(setup, start: Path, out: Path, weights_from: Path | None = None) -> GRPOTrainer:
    """A trainer whose reference is `start` and whose policy is loaded from `weights_from` (resume) or `start`."""
    from vla_world.model.vla import VLAModel

    _, _, prompts = setup
    model = VLAModel.from_folder(weights_from or start)
    set_trainable(model, stage_spec("grpo"))
    return GRPOTrainer(grpo_config(), model, prompts, Reference(start, model), Accelerator(cpu=True), out, start)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_step_changes_the_policy_and_not_the_reference(setup, tmp_path):
    start = save_model(setup[1], tmp_path / "start")
    trainer = make_trainer(setup, start, tmp_path / "run")
    policy_before, reference_before = weights(trainer.model), weights(trainer.reference.model)
    metrics = trainer.train_step()
    assert metrics["format_success"] == 1.0 and math.isfinite(metrics["loss"]) and metrics["zero_signal"] < 1
    assert any(not torch.equal(policy_before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(reference_before[k], v) for k, v in trainer.reference.model.state_dict().items())


def test_reference_log_probs_equal_the_policy_at_the_start(setup, tmp_path):
    """k3 is 0 at step 0: the reference is the start checkpoint itself."""
    start = save_model(setup[1], tmp_path / "start")
    trainer = make_trainer(setup, start, tmp_path / "run")
    prompts = setup[2]
    answers = constrained_sample_ids(trainer.model, [p.sample.input_ids for p in prompts],
                                     [p.sample.features for p in prompts], 1.0, 1.0, torch.Generator().manual_seed(1))
    batch = rollout_batch(prompts, answers, 1, trainer.model.pad_id)
    with torch.no_grad():
        policy = AnswerLogProbs(trainer.model)(batch["input_ids"], batch["attention_mask"], batch["features"],
                                               batch["labels"])
    reference = trainer.reference.log_probs(batch, 1.0)
    assert torch.allclose(policy, reference, atol=1e-6)
    assert float(k3_kl(policy, reference).abs().max()) < 1e-5
    assert token_advantages(np.ones(3), batch["labels"]).shape == policy.shape


def test_resume_gives_the_same_next_step(setup, tmp_path):
    start = save_model(setup[1], tmp_path / "start")
    straight = make_trainer(setup, start, tmp_path / "a")
    straight.train_step()
    expected = straight.train_step()
    first = make_trainer(setup, start, tmp_path / "b")
    first.train_step()
    saved = first.save()
    resumed = make_trainer(setup, start, tmp_path / "b", weights_from=saved)
    resumed.restore(saved)
    got = resumed.train_step()
    assert got["reward_std"] > 0  # the step had signal, so the loss depends on the restored weights
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-7, nan_ok=True)


# ---------------------------------------------------------------- the tool
SMALL = ["--set", "data.token_source=oracle", "--set", "data.max_examples=4", "--set", "train.batch_size=2",
         "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64", "--set", "model.num_layers=1",
         "--set", "model.vocab_size=600", "--set", "train.log_every=1"]


def test_two_grpo_steps_through_the_tool_and_resume(mini_world, tmp_path):
    train = load_tool("train").main
    planning = ["--stage", "planning", "--config", str(ROOT / "configs/planning/tiny.yaml"), "--dataroot",
                str(mini_world), "--out", str(tmp_path / "planning"), "--init", "none", "--max-steps", "1", *SMALL]
    assert train(planning) == 0
    grpo = ["--stage", "grpo", "--config", str(ROOT / "configs/grpo/tiny.yaml"), "--dataroot", str(mini_world),
            "--out", str(tmp_path / "grpo"), *SMALL, "--set", "grpo.group_size=2", "--set", "train.epochs=2"]
    assert train([*grpo, "--max-steps", "2"]) == 0  # init: auto -> <out>/../planning/last
    state = json.loads((tmp_path / "grpo" / "last" / "state.json").read_text())
    assert state["stage"] == "grpo" and state["progress"]["step"] == 2
    assert state["reference"] == str(tmp_path / "planning" / "last")
    assert all(h["format_success"] == 1.0 for h in state["progress"]["history"])
    assert train([*grpo, "--resume", "--max-steps", "3"]) == 0
    state = json.loads((tmp_path / "grpo" / "last" / "state.json").read_text())
    assert state["progress"]["step"] == 3 and len(state["progress"]["history"]) == 3
    assert "reward_mean" in (tmp_path / "grpo" / "train.log").read_text()
