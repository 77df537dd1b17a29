"""What the training loop needs to run unchanged under DDP and under DeepSpeed ZeRO (stages 1 and 2).

The runner stays one loop; only four places differ between one process, DDP and ZeRO, and they live
here so the runner calls one small function at each:

* `make_accelerator()`: accelerate only picks DeepSpeed when `cpu=False`, and on a machine without a
  GPU it then finds no process-group backend and reports a single process. We name DeepSpeed's CPU
  backend (gloo, or oneCCL when installed) so `accelerate launch` with a DeepSpeed config works on CPU.
* `fill_deepspeed_batch_keys()`: the DeepSpeed JSON leaves the micro-batch size and clipping as
  "auto"; the stage config is the single source of truth for both (the runner has no DataLoader
  from which accelerate could read them).
* `full_model_state()` / `full_optimizer_state()`: ZeRO partitions the fp32 master weights (under
  bf16) and the Adam moments across processes. Checkpoints stay safetensors + JSON with the full,
  gathered tensors in torch AdamW's own layout, so a ZeRO checkpoint resumes in one process and the
  other way round. These are collective calls: every process must make them.
* `load_full_state()`: the inverse, after `accelerator.prepare`, because ZeRO builds its partitions there.

DeepSpeed's `safe_get_full_*` helpers gather one tensor; scattering a full optimizer state into the
partitions of a fresh engine has no public helper before the first step, so `_scatter_moments` does it
with the same fragment addresses those helpers use.

Run (two CPU processes, from the repository root):
    accelerate launch --config_file configs/accelerate/deepspeed_zero2_cpu.yaml tools/train.py --stage align ...
"""

from __future__ import annotations

import logging
import os

import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, DistributedType, InitProcessGroupKwargs

log = logging.getLogger("vla_world.train")
INSTALL_HINT = 'DS_BUILD_OPS=0 pip install -c requirements/constraints.txt -e ".[deepspeed]"'
SUPPORTED_ZERO_STAGES = (1, 2)  # their partitions are what the checkpoint helpers below gather and scatter
ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")


def deepspeed_requested() -> bool:
    """True inside `accelerate launch` with a DeepSpeed config (the launcher sets this variable)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def make_accelerator() -> Accelerator:
    """The Accelerator for this launch: one process, DDP (gloo on CPU, NCCL on GPU) or DeepSpeed."""
    on_gpu = torch.cuda.is_available()
    if not deepspeed_requested():
        return Accelerator(cpu=not on_gpu)  # cpu=True makes DDP use gloo on CPU
    try:
        from deepspeed.accelerator import get_accelerator
    except ImportError as err:
        raise ImportError(f"the accelerate config asks for DeepSpeed but it is not installed: {INSTALL_HINT}") from err
    if on_gpu:
        return Accelerator()
    backend = get_accelerator().communication_backend_name()  # "gloo" unless oneCCL bindings are installed
    return Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend=backend)])


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def fill_deepspeed_batch_keys(accelerator: Accelerator, micro_batch_size: int, grad_clip: float) -> None:
    """Before `prepare`: give DeepSpeed the stage's per-process batch size and clipping (no-op without it)."""
    if not uses_deepspeed(accelerator):
        return
    plugin = accelerator.state.deepspeed_plugin
    require_supported_stage(plugin.zero_stage)  # fail before training, not at the first save
    fill_stage_values(plugin, micro_batch_size, grad_clip)
    log.info("DeepSpeed ZeRO stage %d: micro-batch %d per process, gradient clipping %g, %s", plugin.zero_stage,
             micro_batch_size, grad_clip, precision(plugin.deepspeed_config))


def precision(ds_config: dict) -> str:
    """"bf16", "fp16" or "fp32": what the DeepSpeed engine computes in."""
    enabled = [name for name in ("bf16", "fp16") if ds_config.get(name, {}).get("enabled") is True]
    return enabled[0] if enabled else "fp32"


def fill_stage_values(plugin: DeepSpeedPlugin, micro_batch_size: int, grad_clip: float) -> None:
    """Put train.batch_size and train.grad_clip into the plugin's DeepSpeed config.

    "auto" entries take the stage values; explicit entries must agree with them, else a ValueError
    names both values (a silent mismatch would clip or count batches differently from DDP).
    """
    wanted = {"train_micro_batch_size_per_gpu": micro_batch_size, "gradient_clipping": float(grad_clip)}
    mismatches: list[str] = []
    for key, value in wanted.items():
        plugin.fill_match(key, mismatches, must_match=True, **{key: value})
    if mismatches:
        raise ValueError("the DeepSpeed JSON disagrees with the stage config (train.batch_size, train.grad_clip): "
                         + "; ".join(mismatches) + '. Set these keys to "auto" in the DeepSpeed JSON.')


def require_supported_stage(stage: int) -> None:
    if stage not in SUPPORTED_ZERO_STAGES:
        raise NotImplementedError(f"DeepSpeed ZeRO stage {stage}: the checkpoints (full safetensors weights and "
                                  f"optimizer state) support stages {SUPPORTED_ZERO_STAGES} only; set "
                                  '"zero_optimization": {"stage": 2} as in configs/deepspeed/zero2.json')


def _zero_optimizer(accelerator: Accelerator, optimizer):
    """DeepSpeed's ZeRO optimizer inside accelerate's wrapper, or None without DeepSpeed."""
    if not uses_deepspeed(accelerator):
        return None
    require_supported_stage(accelerator.state.deepspeed_plugin.zero_stage)
    return optimizer.optimizer  # accelerate's DeepSpeedOptimizerWrapper -> DeepSpeedZeroOptimizer


def full_model_state(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight of `model` (the unwrapped module) at full precision, identical on every process.

    Under ZeRO the trainable weights come from the fp32 master partitions (all-reduced), not from the
    bf16 copies the engine computes with. Collective under DeepSpeed: call it on every process.
    """
    state = model.state_dict()
    if not uses_deepspeed(accelerator):
        return state
    from deepspeed.utils import safe_get_full_fp32_param

    # frozen weights exist only as the engine's copy (bf16 under bf16): saved as fp32 like the rest
    state = {name: t.float() if t.is_floating_point() else t for name, t in state.items()}

    for name, param in model.named_parameters():
        full = safe_get_full_fp32_param(param) if param.requires_grad else None
        if full is not None:
            state[name] = full.detach().cpu()
    return state


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """In the order the runner hands them to AdamW, which numbers the optimizer state."""
    return [p for p in model.parameters() if p.requires_grad]


def full_optimizer_state(accelerator: Accelerator, model: torch.nn.Module, optimizer) -> dict:
    """torch AdamW `state_dict()` layout with whole tensors, whatever ZeRO partitioned.

    Collective under DeepSpeed: call it on every process.
    """
    zero = _zero_optimizer(accelerator, optimizer)
    if zero is None:
        return optimizer.state_dict()
    from deepspeed.utils import safe_get_full_optimizer_state

    params = trainable_parameters(model)
    base = zero.optimizer
    flat_states = [base.state.get(flat, {}) for flat in zero.single_partition_of_fp32_groups]
    if not any(flat_states):
        return {"state": {}, "param_groups": _param_groups(zero, params)}  # no step yet: like a fresh AdamW
    state = {}
    for index, param in enumerate(params):
        group = _group_of(zero, param)
        step = flat_states[group]["step"]
        moments = {key: safe_get_full_optimizer_state(param, key).detach().cpu() for key in ADAM_MOMENTS}
        state[index] = {"step": step.detach().clone().cpu(), **moments}
    return {"state": state, "param_groups": _param_groups(zero, params)}


def _group_of(zero, param: torch.nn.Parameter) -> int:
    for group, members in enumerate(zero.bit16_groups):
        if any(member is param for member in members):
            return group
    raise KeyError("a trainable parameter is in no ZeRO group; was the optimizer built from model.parameters()?")


def _param_groups(zero, params: list[torch.nn.Parameter]) -> list[dict]:
    """AdamW's hyper-parameters per group, with `params` as indices into the trainable parameters."""
    index = {id(p): i for i, p in enumerate(params)}
    groups = []
    for group, members in zip(zero.optimizer.param_groups, zero.bit16_groups):
        settings = {k: v for k, v in group.items() if k != "params"}
        groups.append({**settings, "params": [index[id(p)] for p in members]})
    return groups


def load_full_state(accelerator: Accelerator, model: torch.nn.Module, optimizer,
                    weights: dict[str, torch.Tensor], optimizer_state: dict) -> None:
    """After `prepare`: restore a checkpoint written by `full_*_state` (from any number of processes).

    `model` must already hold `weights` (the runner builds it from the checkpoint); under ZeRO the
    fp32 master partitions, built from the module by `prepare`, are refreshed from `weights` too,
    since under bf16 the module's copy has lost their low bits.
    """
    zero = _zero_optimizer(accelerator, optimizer)
    if zero is None:
        optimizer.load_state_dict(optimizer_state)
        return
    from deepspeed.utils import safe_set_full_fp32_param

    for name, param in model.named_parameters():
        if param.requires_grad and name in weights:
            safe_set_full_fp32_param(param, weights[name].to(torch.float32))  # the bf16 copy lost these bits
    for group, saved in zip(zero.optimizer.param_groups, optimizer_state["param_groups"]):
        group.update({k: v for k, v in saved.items() if k not in ("params", "lr")})  # lr: set every step
    if optimizer_state["state"]:
        _scatter_moments(zero, trainable_parameters(model), optimizer_state["state"])


def _scatter_moments(zero, params: list[torch.nn.Parameter], state: dict) -> None:
    """Write whole Adam moments into this process's flat partitions, the layout ZeRO steps on.

    The partitions' state does not exist until the first step, so it is created here (AdamW then
    finds it and does not reinitialise); each parameter's slice of it is copied at the fragment
    addresses DeepSpeed's `safe_set_full_optimizer_state` would use.
    """
    base = zero.optimizer
    for group, flat in enumerate(zero.single_partition_of_fp32_groups):
        first = next(i for i, p in enumerate(params) if any(p is m for m in zero.bit16_groups[group]))
        base.state[flat] = {"step": torch.as_tensor(state[first]["step"], dtype=torch.float32).clone(),
                            **{key: torch.zeros_like(flat) for key in ADAM_MOMENTS}}
    for index, param in enumerate(params):
        mapping = getattr(param, "_hp_mapping", None)
        if mapping is None:
            continue  # this process owns no slice of the parameter
        flat_state = base.state[zero.single_partition_of_fp32_groups[mapping.param_group_index]]
        source, target = mapping.lp_fragment_address, mapping.get_hp_fragment_address()
        for key in ADAM_MOMENTS:
            piece = state[index][key].flatten().narrow(0, source.start, source.numel)
            flat_state[key].narrow(0, target.start, target.numel).copy_(piece)
