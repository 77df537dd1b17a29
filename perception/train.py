"""Training of the BEV perception stage (detection, map; tracking is by association, no loss).

    python tools/train.py --stage perception --config configs/perception/tiny.yaml \
        --dataroot data/mini_world [--out checkpoints/perception] [--resume] [--max-steps N]

Writes `<out>/last` (every epoch and at the end) and `<out>/epoch_<k>` checkpoint folders
(model + optimizer safetensors, state.json with step and RNG, config.yaml) and `<out>/train_log.jsonl`.
`--resume` continues from `<out>/last` exactly: the order of keyframes in epoch e is a fixed
function of (seed, e), so the step counter alone says where in the data to continue.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from perception.augment import Flip, draw_flips, flip_bev, flip_targets
from perception.config import PerceptionConfig
from perception.inputs import ImageCache, image_cache, load_camera_batch
from perception.losses import perception_loss
from perception.model import BevPerception, parameter_counts
from perception.targets import FrameTargets, frame_targets
from vla_world.checkpoint import (
    RunLock,
    TrainingDiverged,
    check_finite_loss,
    check_run_folder,
    check_stage,
    load_checkpoint,
    read_state,
    recover_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    truncate_log,
)
from vla_world.config import config_to_dict, load_config, save_config
from vla_world.data.fingerprint import check_data_identity, data_identity
from vla_world.data.records import SampleRecord

LOG_NAME = "train_log.jsonl"


@dataclass
class TrainResult:
    checkpoint: Path
    step: int
    losses: list[float] = field(default_factory=list)  # total loss of every step run in this call
    seconds: float = 0.0


def epoch_order(num_records: int, seed: int, epoch: int) -> list[int]:
    """Shuffled keyframe order of one epoch, reproducible from (seed, epoch) alone."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_records, generator=generator).tolist()


def learning_rate(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to zero; a function of the step alone, so resuming needs no scheduler state."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def batches_per_epoch(num_records: int, batch_size: int) -> int:
    return (num_records + batch_size - 1) // batch_size


def save_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: PerceptionConfig,
               step: int, epoch: int, losses: dict[str, float], data: dict | None = None) -> Path:
    config_path = folder.parent / f".{folder.name}-config.yaml"
    save_config(cfg, config_path)
    log_file = folder.parent / LOG_NAME  # its size now: --resume cuts the log back to it (no repeated lines)
    state = {"step": step, "epoch": epoch, "rng": rng_state(), "losses": losses, "stage": "perception",
             "parameters": parameter_counts(model), "data": data or {},
             "log_bytes": log_file.stat().st_size if log_file.is_file() else None}
    saved = save_checkpoint(folder, model.state_dict(), optimizer.state_dict(), state,
                            extra_files={"config.yaml": config_path.read_text()})
    config_path.unlink()
    return saved


def build_optimizer(model: torch.nn.Module, cfg: PerceptionConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def train_step(model: BevPerception, optimizer: torch.optim.Optimizer, records: list[SampleRecord],
               targets: list[FrameTargets], cache: ImageCache, cfg: PerceptionConfig,
               flips: list[Flip] | None = None) -> tuple[float, dict[str, float]]:
    """One optimizer step; `flips` (perception/augment.py) mirror keyframes after the view transform."""
    model.train()
    bev_input, coarse = model.frozen_part(load_camera_batch(records, cache))
    if flips is not None and any(f.any for f in flips):
        scale = model.ground_view.scale if model.ground_view is not None else 1
        bev_input = torch.stack([flip_bev(b, f, model.ground_channels, scale) for b, f in zip(bev_input, flips)])
        targets = [flip_targets(t, f) for t, f in zip(targets, flips)]
    outputs = model.tail(bev_input, coarse)
    check_finite_outputs(outputs)
    loss, parts = perception_loss(outputs, targets, model.map_decoder.grid_half, cfg.loss, cfg.grid)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    optimizer.step()
    return float(loss.detach()), parts


def check_finite_outputs(outputs: dict, prefix: str = "") -> None:
    """nan/inf head outputs mean the run diverged; say so before the matcher fails on them (a SciPy error)."""
    for name, value in outputs.items():
        if isinstance(value, dict):
            check_finite_outputs(value, f"{prefix}{name}.")
        elif torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise TrainingDiverged(f"perception: head output {prefix}{name!s} holds nan/inf: training diverged (the "
                                   "last good checkpoint is kept). Usual causes: train.lr too high, train.grad_clip "
                                   "off, corrupt images; lower train.lr and --resume, or start again with --overwrite")


def train(model: BevPerception, optimizer: torch.optim.Optimizer, records: list[SampleRecord], dataroot: str | Path,
          cfg: PerceptionConfig, out: Path, start_step: int = 0, max_steps: int | None = None, progress: bool = True) -> TrainResult:
    """Run optimizer steps from `start_step` to the end of training (or `max_steps`), saving checkpoints."""
    if not records:
        raise ValueError("no training records: check --dataroot and that the split 'train' has keyframes")
    cache = image_cache(dataroot, cfg.model)
    data = data_identity(dataroot, cfg.version)  # the checkpoint's data reference, checked on --resume
    targets = [frame_targets(r, cfg.grid, cfg.model.map_points) for r in records]
    per_epoch = batches_per_epoch(len(records), cfg.train.batch_size)
    schedule_length = per_epoch * cfg.train.epochs  # the LR schedule ignores --max-steps, so a cut run resumes onto the same curve
    total = min(max_steps, schedule_length) if max_steps else schedule_length  # 0 / None: no limit
    result, started, step, parts = TrainResult(out / "last", start_step), time.time(), start_step, {}
    bar = tqdm(total=total, initial=start_step, desc="perception", disable=not progress, dynamic_ncols=True)
    with (out / LOG_NAME).open("a") as log_file:
        while step < total:
            epoch, position = divmod(step, per_epoch)
            order = epoch_order(len(records), cfg.train.seed, epoch)
            chosen = order[position * cfg.train.batch_size:(position + 1) * cfg.train.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, schedule_length, cfg.train.lr, cfg.train.warmup_steps)
            flips = draw_flips(cfg.train.seed, step, len(chosen), cfg.train.half_turn_probability)
            loss, parts = train_step(model, optimizer, [records[i] for i in chosen], [targets[i] for i in chosen], cache,
                                     cfg, flips)
            check_finite_loss(loss, step + 1, "perception", out)
            step += 1
            result.losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", epoch=epoch)
            if step % cfg.train.log_every == 0 or step == total:
                log_file.write(json.dumps({"step": step, "epoch": epoch, "loss": loss, **parts}) + "\n")
                log_file.flush()  # readable while training runs
            if step % per_epoch == 0:
                save_state(out / f"epoch_{step // per_epoch}", model, optimizer, cfg, step, step // per_epoch, parts, data)
                save_state(out / "last", model, optimizer, cfg, step, step // per_epoch, parts, data)
    bar.close()
    if step % per_epoch:
        save_state(out / "last", model, optimizer, cfg, step, step // per_epoch, parts, data)
    result.step, result.seconds = step, time.time() - started
    return result


def load_perception_model(checkpoint: str | Path, overrides: dict | None = None) -> tuple[BevPerception, PerceptionConfig]:
    """Model + config from a checkpoint folder written by this stage (for eval and token export); `overrides`
    (dotted keys) change the saved config, e.g. an inference threshold."""
    folder = Path(checkpoint)
    if not (folder / "model.safetensors").is_file():
        load_checkpoint(folder)  # the one-line "no checkpoint here" error
    state = read_state(folder)
    if "fine_tuned_from" not in state:  # <planning>/last/perception: a perception the planning stage fine-tuned
        check_stage(folder, state, ("perception",), "a perception tool")
    cfg = load_config(folder / "config.yaml", PerceptionConfig, overrides)
    weights, _, _ = load_checkpoint(folder)
    model = BevPerception(cfg)
    model.load_state_dict(weights)
    return model.eval(), cfg


def prepare_model(cfg: PerceptionConfig, out: Path, resume: bool = False, init: str | Path | None = None
                  ) -> tuple[BevPerception, torch.optim.Optimizer, int]:
    """Fresh (seeded) model and optimizer, or the state of `<out>/last` when resuming; returns the start step."""
    torch.manual_seed(cfg.train.seed)
    model = BevPerception(cfg)
    optimizer = build_optimizer(model, cfg)
    if resume:
        weights, optimizer_state, state = load_checkpoint(out / "last")
        model.load_state_dict(weights)
        optimizer.load_state_dict(optimizer_state)
        set_rng_state(state["rng"])
        return model, optimizer, int(state["step"])
    if init:
        model.load_state_dict(load_checkpoint(init)[0])
    return model, optimizer, 0


def run_perception_stage(args: argparse.Namespace) -> TrainResult:
    """Entry point of `tools/train.py --stage perception` (args fields: see tools/train.py)."""
    from vla_world.data import load_records

    cfg = load_config(args.config, PerceptionConfig, getattr(args, "overrides", None))
    cfg.version = args.version or cfg.version
    torch.set_num_threads(cfg.train.num_threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(out, args.resume, getattr(args, "overwrite", False))
    with RunLock(out):
        return _run(args, cfg, out, load_records)


def prepare_out(out: Path, resume: bool, dataroot: str | Path, version: str | None) -> None:
    """--resume: recover a save cut short and cut the log back to the checkpoint; fresh run: start a new log."""
    if not resume:
        (out / LOG_NAME).unlink(missing_ok=True)
        return
    recover_checkpoint(out / "last")
    if not (out / "last" / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out / 'last'}: nothing to resume; run once without --resume (or pass the right --out)")
    state = read_state(out / "last")
    check_data_identity(out / "last", state.get("data"), dataroot, version,
                        fix="resume on the dataroot it was trained on, or start again with --overwrite")
    truncate_log(out / LOG_NAME, state.get("log_bytes"))


def _run(args: argparse.Namespace, cfg: PerceptionConfig, out: Path, load_records) -> TrainResult:
    prepare_out(out, args.resume, args.dataroot, cfg.version)
    records = load_records(args.dataroot, version=cfg.version, split="train", progress=True)
    model, optimizer, start_step = prepare_model(cfg, out, args.resume, args.init)
    counts = parameter_counts(model)
    print(f"perception parameters: {json.dumps(counts)}; config: {json.dumps(config_to_dict(cfg.model))}")
    print(f"training on {len(records)} keyframes from {args.dataroot} (train split), starting at step {start_step}")
    result = train(model, optimizer, records, args.dataroot, cfg, out, start_step, args.max_steps)
    print(f"done: step {result.step} in {result.seconds:.0f} s; checkpoint {result.checkpoint}")
    return result
