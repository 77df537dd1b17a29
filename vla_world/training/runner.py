"""`run_llm_stage(args)`: train one LLM stage (align, instruct, motion, planning); called by tools/train.py.

One process:     python tools/train.py --stage planning --config configs/planning/tiny.yaml
Several (CPU or GPU, no code change):
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tools/train.py --stage planning ...

Loop: fixed data order per (seed, epoch) -> forward with spliced tokens -> AdamW on the trainable
parts -> warm-up + cosine learning rate (a pure function of the step) -> `<out>/last` checkpoint
(weights, optimizer, step, data position, RNG, config.yaml, tokenizer, vla.json). `--resume`
continues exactly where `<out>/last` stopped. Processes split every global batch evenly; DDP
(through accelerate) averages their gradients.
"""

from __future__ import annotations

import logging
import math
import time
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from tqdm import tqdm

from vla_world.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vla_world.config import ConfigError, config_to_dict, load_config
from vla_world.model.sequence import EncodedSample
from vla_world.model.vla import VLAModel
from vla_world.training.config import StageConfig
from vla_world.training.data import (
    collate,
    encode_examples,
    global_batches,
    kinematic_copy_records,
    load_stage_tokens,
    planning_examples,
    stage_examples,
)
from vla_world.training.model_setup import (
    log_parameter_counts,
    resolve_init,
    set_trainable,
    start_model,
)
from vla_world.training.stages import StageSpec, stage_spec

log = logging.getLogger("vla_world.train")


@dataclass
class Progress:
    """Where a run is: optimizer steps done and the position in the data (for exact resume)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    losses: list[float] = field(default_factory=list)  # mean training loss of every step so far


def load_stage_config(args: Namespace) -> StageConfig:
    cfg = load_config(args.config, StageConfig, args.overrides)
    if cfg.stage != args.stage:
        raise ConfigError(f"{args.config}: stage is {cfg.stage!r} but --stage is {args.stage!r}; "
                          f"use configs/{args.stage}/<size>.yaml")
    return cfg


def learning_rate(step: int, total_steps: int, peak: float, warmup_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to 0 at `total_steps`."""
    warmup = max(1, round(warmup_ratio * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def setup_logging(out: Path, is_main: bool) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out / "train.log"))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def prepare_samples(cfg: StageConfig, spec: StageSpec, args: Namespace, model_builder) -> tuple[VLAModel, list]:
    from vla_world.data import load_records

    records = load_records(args.dataroot, version=args.version, split=cfg.data.split, progress=False)
    tokens = load_stage_tokens(cfg.data, records, cfg.data.split)
    examples = stage_examples(spec.name, spec.examples, records, cfg.train.seed)
    if cfg.data.max_examples and len(examples) > cfg.data.max_examples:
        keep = np.sort(np.random.default_rng(cfg.train.seed).permutation(len(examples))[:cfg.data.max_examples])
        examples = [examples[i] for i in keep]
    if spec.examples == "planning" and cfg.data.kinematic_copy_examples:
        pseudo = kinematic_copy_records(records, cfg.data.kinematic_copy_examples, cfg.train.seed)
        examples += planning_examples(pseudo)
        records = records + pseudo
        log.info("planning: + %d kinematic-copy pseudo-examples (answer = CTRA prior)", len(pseudo))
    model = model_builder(records, tokens)
    samples, _ = encode_examples(model.sequence_builder, examples, records, tokens, cfg.data.max_length)
    if not samples:
        raise ValueError(f"stage {spec.name}: no examples left for split {cfg.data.split!r} of {args.dataroot}")
    log.info("%s: %d examples from %d records (%s tokens)", spec.name, len(samples), len(records),
             cfg.data.token_source)
    return model, samples


def rank_slice(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    return batch[rank::world]


def run_llm_stage(args: Namespace) -> Path:
    """Train `args.stage` as configured; returns the `<out>/last` checkpoint folder."""
    cfg = load_stage_config(args)
    spec = stage_spec(args.stage)
    torch.set_num_threads(cfg.train.num_threads)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # cpu=True makes DDP use gloo on CPU
    out = Path(args.out)
    setup_logging(out, accelerator.is_main_process)
    resume_dir = out / "last" if args.resume else None
    if resume_dir is not None and not (resume_dir / "state.json").is_file():
        raise FileNotFoundError(f"{resume_dir}: --resume needs a checkpoint written by an earlier run with this --out")
    init = resume_dir or resolve_init(cfg, spec, out, args.init)
    torch.manual_seed(cfg.train.seed)
    model, samples = prepare_samples(cfg, spec, args,
                                     lambda recs, toks: start_model(cfg, spec, init, args.llm, recs, toks))
    log_parameter_counts(set_trainable(model, spec), bool(model.lora))
    trainer = StageTrainer(cfg, spec, model, samples, accelerator, out)
    if resume_dir is not None:
        trainer.restore(resume_dir)
    return trainer.fit(args.max_steps)


class StageTrainer:
    """The optimisation loop of one stage, with exact save/restore."""

    def __init__(self, cfg: StageConfig, spec: StageSpec, model: VLAModel, samples: list[EncodedSample],
                 accelerator: Accelerator, out: Path):
        self.cfg, self.spec, self.samples, self.acc, self.out = cfg, spec, samples, accelerator, out
        self.model = model
        self.pad_id = model.pad_id
        self.world = accelerator.num_processes
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.global_batch = cfg.train.batch_size * self.world
        self.batches_per_epoch = len(self.epoch_batches(0))
        self.total_steps = max(1, math.ceil(cfg.train.epochs * self.batches_per_epoch))
        self.progress = Progress()

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        batches = global_batches(len(self.samples), self.global_batch, self.cfg.train.seed, epoch)
        return [b for b in batches if len(b) >= self.world]  # every process needs at least one sample

    def restore(self, folder: Path) -> None:
        _, optimizer_state, state = load_checkpoint(folder)
        if optimizer_state is None:
            raise FileNotFoundError(f"{folder}/optimizer.safetensors: missing, so the run cannot resume exactly")
        self.optimizer.load_state_dict(optimizer_state)
        self.progress = Progress(**state["progress"])
        set_rng_state(state["rng"])
        log.info("resumed at step %d (epoch %d, batch %d)", self.progress.step, self.progress.epoch,
                 self.progress.batch_in_epoch)

    def fit(self, max_steps: int | None) -> Path:
        limit = min(self.total_steps, max_steps) if max_steps else self.total_steps
        model, optimizer = self.acc.prepare(self.model, self.optimizer)
        model.train()
        log.info("%s: %d steps (%d per epoch, global batch %d, %d process(es)), lr %.1e",
                 self.spec.name, self.total_steps, self.batches_per_epoch, self.global_batch, self.world,
                 self.cfg.train.lr)
        bar = tqdm(total=limit, initial=self.progress.step, desc=self.spec.name, disable=not self.acc.is_main_process)
        started, tokens_seen = time.perf_counter(), 0
        while self.progress.step < limit:
            loss, n_tokens = self.train_step(model, optimizer)
            tokens_seen += n_tokens
            self.progress.losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if self.progress.step % self.cfg.train.log_every == 0 or self.progress.step == limit:
                rate = tokens_seen / max(1e-9, time.perf_counter() - started)
                log.info("step %d/%d loss %.4f lr %.2e %.0f tok/s", self.progress.step, self.total_steps, loss,
                         optimizer.param_groups[0]["lr"], rate)
            if self.cfg.train.save_every and self.progress.step % self.cfg.train.save_every == 0:
                self.save()
        bar.close()
        self.check_ranks_agree()
        return self.save()

    def next_batch(self) -> dict:
        batches = self.epoch_batches(self.progress.epoch)
        if self.progress.batch_in_epoch >= len(batches):
            self.progress.epoch += 1
            self.progress.batch_in_epoch = 0
            batches = self.epoch_batches(self.progress.epoch)
        indices = rank_slice(batches[self.progress.batch_in_epoch], self.acc.process_index, self.world)
        self.progress.batch_in_epoch += 1
        return collate([self.samples[i] for i in indices], self.pad_id)

    def train_step(self, model, optimizer) -> tuple[float, int]:
        batch = self.next_batch()
        lr = learning_rate(self.progress.step, self.total_steps, self.cfg.train.lr, self.cfg.train.warmup_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        device = self.acc.device
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    features=batch["features"], labels=batch["labels"].to(device))
        self.acc.backward(out.loss)
        if self.cfg.train.grad_clip > 0:
            self.acc.clip_grad_norm_(model.parameters(), self.cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        loss = self.acc.reduce(out.loss.detach(), reduction="mean").item()
        return loss, int(batch["attention_mask"].sum()) * self.world

    def check_ranks_agree(self) -> None:
        if self.world == 1:
            return
        checksum = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().reshape(1)
        gathered = self.acc.gather(checksum.to(self.acc.device))
        equal = bool(torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=0, atol=0))
        log.info("weights equal across %d processes: %s (checksums %s)", self.world, equal, gathered.tolist())
        if not equal:
            raise RuntimeError("weights differ across processes after training; DDP did not synchronise")

    def save(self) -> Path:
        folder = self.out / "last"
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.model)
            tied = model.base_llm.config.tie_word_embeddings  # safetensors refuses shared tensors
            state = {k: v for k, v in model.state_dict().items() if not (tied and k.endswith("lm_head.weight"))}
            files = model.save_files()
            files["config.yaml"] = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
            meta = {"stage": self.spec.name, "progress": vars(self.progress), "rng": rng_state(),
                    "total_steps": self.total_steps, "world_size": self.world}
            save_checkpoint(folder, state, self.optimizer.state_dict(), meta, files)
            log.info("saved %s (step %d)", folder, self.progress.step)
        self.acc.wait_for_everyone()
        return folder
