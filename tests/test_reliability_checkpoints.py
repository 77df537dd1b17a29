"""Checkpoints and runs (issue 14, part 2): nothing lost, nothing silently wrong, one line per fault."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys

import pytest
import torch
from accelerate import Accelerator
from model_helpers import fake_tokens, small_model, small_records
from tool_helpers import load_tool

import vla_world.checkpoint as ckpt
from vla_world.checkpoint import load_checkpoint, save_checkpoint
from vla_world.config import ConfigError, config_from_dict, load_config, parse_overrides
from vla_world.data.synthetic import synthetic_record
from vla_world.training import runner
from vla_world.training.config import StageConfig, TrainConfig
from vla_world.training.data import encode_examples, planning_examples
from vla_world.training.model_setup import set_trainable
from vla_world.training.runner import StageTrainer, setup_logging
from vla_world.training.stages import stage_spec

torch.set_num_threads(1)
# New names are looked up when a test runs (ckpt.X, runner.X), not at import: on the code before issue 14
# each test then fails on its own instead of the whole file failing to import.
PERCEPTION_CONFIG = "configs/perception/tiny.yaml"


def saved(tmp_path, step: int = 1):
    return save_checkpoint(tmp_path / "last", {"w": torch.arange(64, dtype=torch.float32)},
                           {"state": {}, "param_groups": []}, {"step": step, "stage": "perception"})


# --- weight files and state.json ---------------------------------------------------------------------------------

def test_checksums_are_recorded_and_a_flipped_bit_is_refused(tmp_path):
    folder = saved(tmp_path)
    assert set(ckpt.read_state(folder)["checksums"]) == {"model.safetensors", "optimizer.safetensors"}
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-3] ^= 0x10  # a bit in the tensor bytes: the file still parses, the weights are wrong
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match=r"model.safetensors: checksum differs.*retrain"):
        load_checkpoint(folder)


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:40]), "checksum differs"),
    (lambda f: (f / "model.safetensors").write_bytes(b""), "checksum differs"),
    (lambda f: (f / "state.json").write_text("{broken"), r"state.json: not valid JSON"),
    (lambda f: (f / "state.json").unlink(), r"state.json: missing"),
])
def test_damaged_checkpoints_name_the_file(tmp_path, damage, message):
    folder = saved(tmp_path)
    damage(folder)
    with pytest.raises(ckpt.CheckpointError, match=message):
        load_checkpoint(folder)


def test_truncated_weights_without_checksum_still_give_one_line(tmp_path):
    folder = saved(tmp_path)
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:40])
    with pytest.raises(ckpt.CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(folder, verify=False)
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="empty file"):
        load_checkpoint(folder, verify=False)


def test_non_finite_weights_never_replace_a_good_checkpoint(tmp_path):
    folder = saved(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="nan/inf"):
        save_checkpoint(folder, {"w": torch.tensor([1.0, math.nan])}, state={"step": 2})
    assert ckpt.read_state(folder)["step"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["last"]


# --- interrupted saves --------------------------------------------------------------------------------------------

def test_a_kill_between_the_renames_is_recovered(tmp_path):
    folder = saved(tmp_path, step=1)
    folder.rename(tmp_path / "last.old-4242")  # killed after `last -> last.old-PID`, before `tmp -> last`
    assert ckpt.recover_checkpoint(folder).name == "last.old-4242"
    assert ckpt.read_state(folder)["step"] == 1


def test_recovery_prefers_the_complete_new_folder_and_skips_a_broken_one(tmp_path):
    saved(tmp_path / "a", step=1).rename(tmp_path / "last.old-7")
    saved(tmp_path / "b", step=2).rename(tmp_path / "last.tmp-7")
    saved(tmp_path / "c", step=3).rename(tmp_path / "last.tmp-6")
    (tmp_path / "last.tmp-6" / "state.json").write_text("{")  # cut short while writing
    ckpt.recover_checkpoint(tmp_path / "last")
    assert ckpt.read_state(tmp_path / "last")["step"] == 2


# --- run folders --------------------------------------------------------------------------------------------------

def test_an_occupied_out_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    saved(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="already holds a checkpoint; pass --resume"):
        ckpt.check_run_folder(tmp_path, resume=False, overwrite=False)
    ckpt.check_run_folder(tmp_path, resume=True, overwrite=False)
    ckpt.check_run_folder(tmp_path, resume=False, overwrite=True)
    with pytest.raises(SystemExit, match=r"train.py: .*already holds a checkpoint"):
        load_tool("train").main(["--stage", "perception", "--config", PERCEPTION_CONFIG, "--out", str(tmp_path)])


def test_lock_names_a_live_holder_and_takes_over_a_dead_one(tmp_path, caplog):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": holder.pid}))
        with pytest.raises(ckpt.CheckpointError, match=f"process {holder.pid} is training into"):
            ckpt.RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING):
        lock = ckpt.RunLock(tmp_path).acquire()  # the holder is dead now
    assert f"lock of process {holder.pid}, which is no longer running" in caplog.text
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / ".lock").exists()


def test_max_steps_rejects_negative_values_and_documents_zero(capsys):
    train = load_tool("train")
    with pytest.raises(SystemExit, match="--max-steps -1: must be >= 0"):
        train.main(["--stage", "perception", "--config", PERCEPTION_CONFIG, "--max-steps", "-1"])
    assert "0 = no limit" in " ".join(train.build_parser().format_help().split())


# --- the LLM runner -----------------------------------------------------------------------------------------------

def records4():
    return small_records() + [synthetic_record(speed=3.0, token="tok3")]  # 4 samples


def trainer(out, records, model=None, **train) -> StageTrainer:
    model = model or small_model(records)
    settings = {"lr": 3e-3, "epochs": 2.0, "batch_size": 2, "log_every": 1, "save_minutes": 0, **train}
    cfg = config_from_dict(StageConfig, {"stage": "planning", "train": settings})
    tokens = {r.sample_token: fake_tokens(r, seed=i) for i, r in enumerate(records)}
    samples, _ = encode_examples(model.sequence_builder, planning_examples(records), records, tokens, 4096)
    set_trainable(model, stage_spec("planning"))
    return StageTrainer(cfg, stage_spec("planning"), model, samples, Accelerator(cpu=True), out)


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    records = records4()
    big = trainer(tmp_path / "big", records, batch_size=4)
    accumulated = trainer(tmp_path / "acc", records, batch_size=2, grad_accum=2)
    assert big.global_batch == accumulated.global_batch == 4
    big.fit(max_steps=2)
    accumulated.fit(max_steps=2)
    assert accumulated.progress.losses == pytest.approx(big.progress.losses, rel=1e-5)
    for a, b in zip(big.model.state_dict().values(), accumulated.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_resume_refuses_another_global_batch(tmp_path):
    records = records4()
    trainer(tmp_path, records, batch_size=2).fit(max_steps=1)
    with pytest.raises(ckpt.CheckpointError, match=r"saved with global batch 2 .* but this run has 4"):
        trainer(tmp_path, records, batch_size=4).restore(tmp_path / "last")
    same = trainer(tmp_path, records, batch_size=1, grad_accum=2)  # same global batch: the schedule is unchanged
    same.restore(tmp_path / "last")
    assert same.progress.step == 1


def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    run = trainer(tmp_path, records4())
    run.fit(max_steps=1)
    good = (tmp_path / "last" / "model.safetensors").read_bytes()
    real_step = run.train_step
    monkeypatch.setattr(run, "train_step", lambda *a: (math.nan, real_step(*a)[1]))
    with pytest.raises(ckpt.TrainingDiverged, match=r"planning: the loss is nan at step 2: training diverged.*learning rate"):
        run.fit(max_steps=3)
    assert (tmp_path / "last" / "model.safetensors").read_bytes() == good


def test_llm_stages_save_periodically_by_default(tmp_path, monkeypatch):
    assert TrainConfig().save_minutes > 0
    run = trainer(tmp_path, records4(), save_minutes=1e-9)  # due after every step
    saves = []
    monkeypatch.setattr(run, "save", lambda: saves.append(run.progress.step) or tmp_path)
    run.fit(max_steps=3)
    assert saves[:3] == [1, 2, 3]


def test_the_log_is_not_duplicated_after_resume(tmp_path):
    setup_logging(tmp_path, True)
    try:
        run = trainer(tmp_path, records4())
        run.fit(max_steps=1)
        logging.getLogger("vla_world.train").info("step 2/4 loss 1.0 (logged, then the run was killed)")
        runner.claim_out(tmp_path, resume=True, overwrite=False, accelerator=run.acc).release()
        text = (tmp_path / "train.log").read_text()
    finally:
        logging.getLogger().handlers.clear()
    assert "step 1/4" in text and "step 2/4" not in text  # cut back to the checkpoint, then appended to


# --- configs ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", ".nan", "inf", "-.inf"])
def test_non_finite_numbers_are_refused_by_the_config_check(value):
    with pytest.raises(ConfigError, match=r"train.lr: .* is not a finite number"):
        load_config("configs/planning/tiny.yaml", StageConfig, parse_overrides([f"train.lr={value}"]))


@pytest.mark.parametrize("content, message", [(b"\xff\xfe\x00garbage", "not valid YAML"),
                                              (b"- a\n- b\n", "expected a mapping of fields")])
def test_unreadable_yaml_names_the_file(tmp_path, content, message):
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"broken.yaml: {message}"):
        load_config(path, StageConfig)


# --- the tools: one line naming the file, no traceback --------------------------------------------------------------

def fake_checkpoint(folder, stage: str):
    save_checkpoint(folder, {"w": torch.zeros(2)}, state={"stage": stage}, extra_files={"vla.json": "{}"})
    return folder


def test_a_checkpoint_of_the_wrong_stage_is_refused_by_the_tools(mini_world, tmp_path):
    align = fake_checkpoint(tmp_path / "align" / "last", "align")
    with pytest.raises(SystemExit, match=r"align/last: a 'align' checkpoint, but eval_planning --checkpoint needs a "
                                         r"planning or grpo one"):
        load_tool("eval_planning").main(["--dataroot", str(mini_world), "--split", "val", "--checkpoint", str(align),
                                         "--out", str(tmp_path / "eval"), "--quiet"])
    with pytest.raises(SystemExit, match=r"--checkpoint: .*align/last: a 'align' checkpoint, but a perception tool"):
        load_tool("eval_perception").main(["--checkpoint", str(align), "--dataroot", str(mini_world)])


def test_a_corrupt_vla_json_is_one_line(mini_world, mini_records, tmp_path):
    planning = fake_checkpoint(tmp_path / "planning" / "last", "planning")
    (planning / "vla.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"vla.json: not valid JSON"):
        load_tool("plan").main(["--checkpoint", str(planning), "--dataroot", str(mini_world), "--split", "val",
                                "--scene", mini_records["val"][0].scene_name, "--tokens", "oracle"])


def test_perception_divergence_says_it_diverged(tmp_path):
    from test_perception_train import synthetic_dataroot, tiny_config

    from perception.inputs import ImageCache
    from perception.model import BevPerception
    from perception.targets import frame_targets
    from perception.train import build_optimizer, train_step

    cfg = tiny_config()
    records = synthetic_dataroot(tmp_path)
    model = BevPerception(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(math.nan)
    targets = [frame_targets(r, cfg.grid, cfg.model.map_points) for r in records]
    with pytest.raises(ckpt.TrainingDiverged, match="perception: head output .* holds nan/inf: training diverged"):
        train_step(model, build_optimizer(model, cfg), records, targets, ImageCache(tmp_path, cfg.model.image_size), cfg)


def test_resume_on_another_world_is_refused(mini_world, tmp_path):
    from perception.train import prepare_out
    from vla_world.data.fingerprint import DataMismatchError

    save_checkpoint(tmp_path / "last", {"w": torch.zeros(2)},
                    state={"stage": "perception", "data": {"data_fingerprint": "0123456789abcdef", "dataroot": "elsewhere"}})
    with pytest.raises(DataMismatchError, match=r"last: made from world 0123456789abcdef \(elsewhere\), but"):
        prepare_out(tmp_path, True, mini_world, "v1.0-mini")
