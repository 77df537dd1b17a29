"""Exact resume: a run stopped at step 2 and resumed gives the uninterrupted run's step-3 and step-4 losses."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from model_helpers import fake_tokens, small_model, small_records

from vla_world.config import config_from_dict
from vla_world.data.synthetic import synthetic_record
from vla_world.model.vla import VLAModel
from vla_world.training.config import StageConfig
from vla_world.training.data import encode_examples, planning_examples
from vla_world.training.model_setup import set_trainable
from vla_world.training.runner import StageTrainer
from vla_world.training.stages import stage_spec

torch.set_num_threads(1)


def make_trainer(model: VLAModel, out, records) -> StageTrainer:
    cfg = config_from_dict(StageConfig, {"stage": "planning", "train": {"lr": 3e-3, "epochs": 2.0, "batch_size": 2,
                                                                       "log_every": 1}})
    tokens = {r.sample_token: fake_tokens(r, seed=i) for i, r in enumerate(records)}
    samples, _ = encode_examples(model.sequence_builder, planning_examples(records), records, tokens, 4096)
    set_trainable(model, stage_spec("planning"))
    return StageTrainer(cfg, stage_spec("planning"), model, samples, Accelerator(cpu=True), out)


def test_resume_continues_exactly(tmp_path):
    records = small_records() + [synthetic_record(speed=3.0, token="tok3")]  # 4 samples: 2 steps per epoch
    full = make_trainer(small_model(records), tmp_path / "full", records)
    full.fit(max_steps=4)
    first = make_trainer(small_model(records), tmp_path / "split", records)
    first.fit(max_steps=2)
    resumed = make_trainer(VLAModel.from_folder(tmp_path / "split" / "last"), tmp_path / "split", records)
    resumed.restore(tmp_path / "split" / "last")
    resumed.fit(max_steps=4)
    assert resumed.progress.epoch == 1  # the resumed run crossed into the second epoch
    assert full.progress.losses[:2] == first.progress.losses
    assert resumed.progress.losses == full.progress.losses  # steps 3 and 4 included, bit for bit
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
