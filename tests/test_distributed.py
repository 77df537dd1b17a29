"""Multi-process training: the shipped accelerate / DeepSpeed configs, and ZeRO-2 against DDP on two CPU processes.

Fast: every accelerate config parses, DeepSpeed ones point to a JSON that accelerate accepts with a
runner that brings its own AdamW and learning-rate schedule; stage values fill the "auto" keys.
With deepspeed installed (about 15 s): one ZeRO-2 process through `make_accelerator` equals torch
AdamW with clipping, its gathered optimizer state is AdamW's, and scattering it back resumes exactly.
Slow (needs `pip install -e ".[deepspeed]"`): the same tiny planning run under DDP and under ZeRO-2
gives the same losses and checkpoints, and a ZeRO-2 run resumed halfway ends where the whole run does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin

from vla_world.training.distributed import (
    deepspeed_requested,
    fill_deepspeed_batch_keys,
    fill_stage_values,
    full_optimizer_state,
    load_full_state,
    make_accelerator,
    precision,
    require_supported_stage,
)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = sorted((ROOT / "configs/accelerate").glob("*.yaml"))
DEEPSPEED_CONFIGS = [p for p in ACCELERATE_CONFIGS if yaml.safe_load(p.read_text())["distributed_type"] == "DEEPSPEED"]
# accelerate refuses these next to a deepspeed_config_file: they must live in the JSON
SET_IN_JSON_ONLY = {"mixed_precision", "gradient_accumulation_steps", "gradient_clipping", "zero_stage"}


def deepspeed_json(accelerate_config: Path) -> Path:
    return ROOT / yaml.safe_load(accelerate_config.read_text())["deepspeed_config"]["deepspeed_config_file"]


def test_there_is_a_ddp_config_and_a_cpu_and_a_gpu_zero2_config():
    names = {p.name for p in ACCELERATE_CONFIGS}
    assert {"cpu_2proc.yaml", "deepspeed_zero2.yaml", "deepspeed_zero2_cpu.yaml"} <= names
    assert {p.name for p in DEEPSPEED_CONFIGS} == {"deepspeed_zero2.yaml", "deepspeed_zero2_cpu.yaml"}


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_launch_several_processes(path):
    config = yaml.safe_load(path.read_text())
    assert config["num_processes"] >= 2 and config["num_machines"] == 1
    assert config["use_cpu"] is False  # accelerate's --cpu launcher starts one process and skips DeepSpeed


@pytest.mark.parametrize("path", DEEPSPEED_CONFIGS, ids=lambda p: p.name)
def test_deepspeed_configs_point_to_a_zero2_json_that_leaves_batch_keys_to_the_stage(path):
    config = yaml.safe_load(path.read_text())
    assert not SET_IN_JSON_ONLY & set(config) and not SET_IN_JSON_ONLY & set(config["deepspeed_config"])
    ds = json.loads(deepspeed_json(path).read_text())
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_clipping"] == "auto"
    assert ds["gradient_accumulation_steps"] in (1, "auto")
    assert "train_batch_size" not in ds  # accelerate derives it: micro-batch x processes
    assert "optimizer" not in ds and "scheduler" not in ds  # the runner's AdamW and schedule, as under DDP


def test_the_cpu_zero2_json_computes_in_fp32_so_it_can_match_ddp():
    ds = json.loads(deepspeed_json(ROOT / "configs/accelerate/deepspeed_zero2_cpu.yaml").read_text())
    assert precision(ds) == "fp32"
    assert ds["zero_optimization"]["overlap_comm"] is False  # no CUDA streams to overlap with on CPU
    gpu = json.loads(deepspeed_json(ROOT / "configs/accelerate/deepspeed_zero2.yaml").read_text())
    assert precision(gpu) == "bf16"


def test_stage_values_fill_the_auto_keys():
    plugin = DeepSpeedPlugin(hf_ds_config=str(ROOT / "configs/deepspeed/zero2.json"))
    fill_stage_values(plugin, micro_batch_size=3, grad_clip=0.5)
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 3
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5


@pytest.mark.parametrize("name", ["zero2.json", "zero2_cpu.json"])
def test_deepspeed_accepts_the_json_once_the_stage_values_are_in(name):
    config = pytest.importorskip("deepspeed.runtime.config")
    plugin = DeepSpeedPlugin(hf_ds_config=str(ROOT / "configs/deepspeed" / name))
    plugin.set_mixed_precision("no")  # what accelerate does first: precision stays as the JSON says
    fill_stage_values(plugin, micro_batch_size=4, grad_clip=1.0)
    parsed = config.DeepSpeedConfig(plugin.deepspeed_config)  # DeepSpeed's own validation, one process
    assert parsed.zero_optimization_stage == 2 and parsed.gradient_clipping == 1.0
    assert parsed.train_micro_batch_size_per_gpu == 4 and parsed.train_batch_size == 4


def test_explicit_deepspeed_values_that_disagree_with_the_stage_are_an_error():
    ds = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 4, "gradient_clipping": 1.0}
    plugin = DeepSpeedPlugin(hf_ds_config=ds)
    fill_stage_values(plugin, micro_batch_size=4, grad_clip=1.0)  # agreeing explicit values are fine
    with pytest.raises(ValueError, match="train_micro_batch_size_per_gpu=4 vs arg train_micro_batch_size_per_gpu=8"):
        fill_stage_values(DeepSpeedPlugin(hf_ds_config=ds), micro_batch_size=8, grad_clip=1.0)


def test_precision_names_what_the_engine_computes_in():
    assert precision({"bf16": {"enabled": True}, "fp16": {"enabled": False}}) == "bf16"
    assert precision({"fp16": {"enabled": True}}) == "fp16"
    assert precision({"bf16": {"enabled": False}}) == "fp32" and precision({}) == "fp32"


@pytest.mark.parametrize("stage", [0, 3])
def test_zero_stages_whose_partitions_the_checkpoints_cannot_gather_are_refused(stage):
    require_supported_stage(2)
    with pytest.raises(NotImplementedError, match=rf"ZeRO stage {stage}:.*configs/deepspeed/zero2.json"):
        require_supported_stage(stage)


def test_without_a_deepspeed_launch_the_accelerator_is_the_plain_one(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert not deepspeed_requested()
    accelerator = make_accelerator()
    assert isinstance(accelerator, Accelerator) and accelerator.num_processes == 1
    assert accelerator.distributed_type.value == "NO"


def test_a_deepspeed_launch_without_deepspeed_names_the_install_command(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "deepspeed.accelerator", None)
    with pytest.raises(ImportError, match=r'\.\[deepspeed\]'):
        make_accelerator()


# ---- one DeepSpeed process against plain torch (a subprocess: DeepSpeed initialises torch.distributed)


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def zero2_worker() -> None:
    """ZeRO-2 through make_accelerator on one CPU process equals torch AdamW + clipping, and resumes exactly."""
    x, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), torch.zeros(6, 2)
    reference = tiny_net()
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=0.1)
    accelerator = make_accelerator()
    assert accelerator.distributed_type.value == "DEEPSPEED", accelerator.distributed_type

    def engine_steps(accelerator, model: torch.nn.Module, optimizer, steps: int) -> None:
        for _ in range(steps):
            accelerator.backward(((model(x) - y) ** 2).mean())  # DeepSpeed clips and steps in here
            optimizer.step()
            optimizer.zero_grad()

    def reference_steps(steps: int) -> None:
        for _ in range(steps):
            ((reference(x) - y) ** 2).mean().backward()
            torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
            reference_optimizer.step()
            reference_optimizer.zero_grad()

    model = tiny_net()
    fill_deepspeed_batch_keys(accelerator, micro_batch_size=6, grad_clip=1.0)
    engine, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=0.1))
    engine_steps(accelerator, engine, optimizer, 2)
    reference_steps(2)
    saved = full_optimizer_state(accelerator, model, optimizer)
    expected = reference_optimizer.state_dict()
    for index, moments in expected["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(saved["state"][index][key], moments[key])
        assert float(saved["state"][index]["step"]) == 2.0
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    resumed = tiny_net()  # built from the checkpoint's weights as the runner does; Adam state from `saved`
    resumed.load_state_dict(weights)
    accelerator = make_accelerator()  # accelerate ties one DeepSpeed engine to one Accelerator
    fill_deepspeed_batch_keys(accelerator, micro_batch_size=6, grad_clip=1.0)
    engine, optimizer = accelerator.prepare(resumed, torch.optim.AdamW(resumed.parameters(), lr=0.1))
    load_full_state(accelerator, resumed, optimizer, weights, saved)
    engine_steps(accelerator, engine, optimizer, 1)
    reference_steps(1)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor)
    print("zero2 worker: equal to torch AdamW")


def test_one_zero2_process_equals_torch_adamw_and_resumes_from_the_gathered_state():
    pytest.importorskip("deepspeed")
    with socket.socket() as probe:  # a free port for the one-process group
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_DEEPSPEED": "true", "OMP_NUM_THREADS": "1",
           "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ROOT / "configs/deepspeed/zero2_cpu.json"),
           "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    run = subprocess.run([sys.executable, "-c", "import test_distributed; test_distributed.zero2_worker()"],
                         capture_output=True, text=True, timeout=300, check=False, cwd=ROOT, env=env)
    assert run.returncode == 0 and "equal to torch AdamW" in run.stdout, run.stderr[-3000:]


# ---- slow: two real processes ------------------------------------------------------------------

TINY = ["--stage", "planning", "--config", str(ROOT / "configs/planning/tiny.yaml"), "--init", "none",
        "--set", "data.token_source=oracle", "--set", "data.max_examples=8", "--set", "train.batch_size=2",
        "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64", "--set", "model.num_layers=1",
        "--set", "model.vocab_size=600", "--set", "train.log_every=1"]


def launch(config: str, world: Path, out: Path, steps: int, *extra: str) -> str:
    """Two processes through `accelerate launch`; returns train.log."""
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(ROOT / "configs/accelerate" / config),
           str(ROOT / "tools/train.py"), *TINY, "--dataroot", str(world), "--out", str(out),
           "--max-steps", str(steps), *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    return (out / "train.log").read_text()


def logged_losses(log: str) -> list[float]:
    return [float(line.split(" loss ")[1].split()[0]) for line in log.splitlines() if " loss " in line]


def checkpoint(folder: Path) -> tuple[dict, dict]:
    from vla_world.checkpoint import load_checkpoint

    weights, optimizer, _ = load_checkpoint(folder / "last")
    return weights, optimizer


@pytest.mark.slow
def test_zero2_on_two_cpu_processes_matches_ddp_and_resumes_exactly(mini_world, tmp_path):
    pytest.importorskip("deepspeed")
    ddp_log = launch("cpu_2proc.yaml", mini_world, tmp_path / "ddp", 3)
    zero_log = launch("deepspeed_zero2_cpu.yaml", mini_world, tmp_path / "zero2", 3)
    assert "DeepSpeed ZeRO stage 2: micro-batch 2 per process, gradient clipping 1, fp32" in zero_log
    assert "weights equal across 2 processes: True" in zero_log
    assert logged_losses(zero_log) == pytest.approx(logged_losses(ddp_log), rel=1e-5)
    (ddp_weights, ddp_opt), (zero_weights, zero_opt) = checkpoint(tmp_path / "ddp"), checkpoint(tmp_path / "zero2")
    assert ddp_weights.keys() == zero_weights.keys()
    for name, tensor in ddp_weights.items():  # gathered, full-size weights, not DeepSpeed's partitions
        torch.testing.assert_close(zero_weights[name], tensor, rtol=1e-5, atol=1e-6)
    assert zero_opt["state"].keys() == ddp_opt["state"].keys()
    for index, moments in ddp_opt["state"].items():  # torch AdamW's layout: resumable by either launcher
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(zero_opt["state"][index][key], moments[key], rtol=1e-4, atol=1e-7)
        assert float(zero_opt["state"][index]["step"]) == float(moments["step"]) == 3

    launch("deepspeed_zero2_cpu.yaml", mini_world, tmp_path / "halves", 2)
    resumed_log = launch("deepspeed_zero2_cpu.yaml", mini_world, tmp_path / "halves", 3, "--resume")
    assert "resumed at step 2" in resumed_log
    resumed_weights, _ = checkpoint(tmp_path / "halves")
    for name, tensor in zero_weights.items():  # the Adam moments were scattered back into the partitions
        torch.testing.assert_close(resumed_weights[name], tensor, rtol=0, atol=0)
