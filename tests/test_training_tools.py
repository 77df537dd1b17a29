"""End to end on the tiny mini world: every stage for two steps through tools/train.py, resume, tools/plan.py."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from tool_helpers import ROOT, load_tool
from world_helpers import CODES_PER_FRAME, random_frame_codes

torch.set_num_threads(1)
# a very small LLM and few examples keep the whole chain within seconds
SMALL = ["--set", "data.token_source=oracle", "--set", "data.max_examples=6", "--set", "train.batch_size=2",
         "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64", "--set", "model.num_layers=1",
         "--set", "model.vocab_size=600", "--set", "train.log_every=1"]




def train(stage: str, world: Path, ckpt: Path, *extra: str) -> None:
    argv = ["--stage", stage, "--config", str(ROOT / f"configs/{stage}/tiny.yaml"), "--dataroot", str(world),
            "--out", str(ckpt / stage), "--max-steps", "2", *SMALL, *extra]
    assert load_tool("train").main(argv) == 0


STAGES = ("align", "instruct", "motion", "world", "planning")


@pytest.fixture(scope="module")
def chain(mini_world, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("checkpoints")
    frames = random_frame_codes(mini_world, tmp_path_factory.mktemp("frames"))
    for stage in STAGES:
        world = ("--set", f"data.frame_codes={frames}", "--set", "data.world_current_frame=true")
        train(stage, mini_world, ckpt, *(world if stage == "world" else ()))
    return mini_world, ckpt


def test_every_stage_trains_two_steps_from_the_previous(chain):
    _, ckpt = chain
    for stage in STAGES:
        state = json.loads((ckpt / stage / "last" / "state.json").read_text())
        assert state["stage"] == stage and state["progress"]["step"] == 2
        assert all(math.isfinite(loss) and loss > 0 for loss in state["progress"]["losses"])
        assert (ckpt / stage / "last" / "tokenizer.json").is_file()
    log = (ckpt / "planning" / "train.log").read_text()
    assert "start: " + str(ckpt / "world" / "last") in log
    # oracle tokens have no network behind them, so planning trains projectors + LLM and says why
    assert "perception: none (oracle tokens from ground truth: there is no network to train; planning" in log
    # the shipped planning config fits its plan head after the LLM steps, on every keyframe with a future
    assert re.search(r"plan head fitted on \d+ train keyframes: L1 [\d.]+ m \(epoch 1\) -> [\d.]+ m \(epoch 50\)", log)
    align_log = (ckpt / "align" / "train.log").read_text()
    assert re.search(r"llm:\s+trainable\s+0\s", align_log)  # align trains the projectors only


def test_resume_through_the_tool(chain):
    world, ckpt = chain
    train("planning", world, ckpt, "--resume", "--max-steps", "3")
    state = json.loads((ckpt / "planning" / "last" / "state.json").read_text())
    assert state["progress"]["step"] == 3 and len(state["progress"]["losses"]) == 3


def test_missing_previous_stage_is_a_readable_error(mini_world, tmp_path):
    with pytest.raises(FileNotFoundError, match="train 'world' first"):
        train("planning", mini_world, tmp_path)


def test_world_stage_grows_the_vocabulary_and_imagines_k_codes(chain):
    world, ckpt = chain
    from vla_world.model.vla import VLAModel
    from vla_world.world_inference import imagine_codes

    log = (ckpt / "world" / "train.log").read_text()
    assert "start: " + str(ckpt / "motion" / "last") in log
    assert re.search(r"world: \d+ of \d+ samples have no next keyframe", log)  # counted and logged
    assert f"{CODES_PER_FRAME} codes per frame" in log
    for stage in ("world", "planning"):  # planning inherits the grown vocabulary
        meta = json.loads((ckpt / stage / "last" / "vla.json").read_text())
        assert meta["visual"] == {"codebook_size": 32, "codes_per_frame": CODES_PER_FRAME}
        assert "<vis_31>" in (ckpt / stage / "last" / "tokenizer.json").read_text()
    assert VLAModel.from_folder(ckpt / "planning" / "last").visual is not None
    codes = imagine_codes(ckpt / "world" / "last", "val", str(world), tokens="oracle", max_samples=3, progress=False)
    assert len(codes) == 3
    assert all(c.shape == (CODES_PER_FRAME,) and c.dtype.kind == "i" and 0 <= c.min() and c.max() < 32
               for c in codes.values())


def test_plan_tool_prints_parse_status(chain, capsys):
    world, ckpt = chain
    from vla_world.data import load_records

    sample = load_records(world, split="val", progress=False)[0].sample_token
    assert load_tool("plan").main(["--checkpoint", str(ckpt / "planning" / "last"), "--dataroot", str(world),
                                   "--sample", sample, "--tokens", "oracle"]) == 0
    out = capsys.readouterr().out
    assert f"sample {sample}" in out and "parse: " in out
    assert "perception tokens: oracle (ground truth)" in out  # the source is printed, never silent
    assert "decoding: head + collision guard" in out  # the fitted plan head answers; the guard checks its plan
    assert load_tool("plan").main(["--checkpoint", str(ckpt / "planning" / "last"), "--dataroot", str(world),
                                   "--sample", sample, "--tokens", "oracle", "--no-guard"]) == 0
    out = capsys.readouterr().out
    assert "decoding: head\n" in out and "collision guard" not in out



def test_sample_mean_diagnostic_writes_a_full_prediction_file(chain, tmp_path):
    """tools/diagnostics/sample_mean.py: K constrained samples per val prompt, averaged, one finite plan each."""
    import numpy as np

    from planning.predictions import load_predictions
    from vla_world.data import load_records

    world, ckpt = chain
    out = tmp_path / "mean.json"
    assert load_tool("diagnostics/sample_mean").main([str(ckpt / "planning" / "last"), "--samples", "2", "--split",
                                                      "val", "--dataroot", str(world), "--tokens", "oracle",
                                                      "--out", str(out)]) == 0
    preds = load_predictions(out)
    assert preds.tokens == {r.sample_token for r in load_records(world, split="val", progress=False)}
    assert not preds.failures and all(np.isfinite(t).all() for t in preds.trajectories.values())
    assert "mean of 2 constrained samples" in preds.meta["decoding"] and "oracle" in preds.meta["token_source"]

@pytest.mark.slow
def test_two_processes_through_accelerate_keep_weights_equal(chain):
    import os
    import subprocess
    import sys

    world, ckpt = chain
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(ROOT / "configs/accelerate/cpu_2proc.yaml"),
           str(ROOT / "tools/train.py"), "--stage", "planning", "--config", str(ROOT / "configs/planning/tiny.yaml"),
           "--dataroot", str(world), "--out", str(ckpt / "planning_ddp"), "--init", str(ckpt / "motion" / "last"),
           "--max-steps", "2", *SMALL]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    log = (ckpt / "planning_ddp" / "train.log").read_text()
    assert "2 process(es)" in log and "weights equal across 2 processes: True" in log
