"""`run_llm_stage(args)`: train one LLM stage (align, instruct, motion, planning); called by tools/train.py.

One process:     python tools/train.py --stage planning --config configs/planning/tiny.yaml
Several (CPU or GPU, no code change):
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tools/train.py --stage planning ...

Loop: fixed data order per (seed, epoch) -> forward with spliced tokens -> AdamW on the trainable
parts -> warm-up + cosine learning rate (a pure function of the step) -> `<out>/last` checkpoint
(weights, optimizer, step, data position, RNG, config.yaml, tokenizer, vla.json). `--resume`
continues exactly where `<out>/last` stopped. Processes split every global batch evenly; DDP
(through accelerate) averages their gradients.

With `data.token_source: online` (planning) the perception tail is a second module with its own
AdamW (peak lr `train.perception_lr`), stepped with the LLM's after one joint gradient clip; its
weights and optimizer go to `<out>/last/perception/` (vla_world/training/online_perception.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator, DistributedType
from tqdm import tqdm

from vla_world.checkpoint import (
    CheckpointError,
    RunLock,
    check_finite_loss,
    check_run_folder,
    load_checkpoint,
    read_state,
    recover_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    truncate_log,
)
from vla_world.config import ConfigError, config_to_dict, load_config
from vla_world.data.fingerprint import check_data_identity, data_identity
from vla_world.model.sequence import EncodedSample
from vla_world.model.visual_tokens import VisualSpec
from vla_world.model.vla import VLAModel, tied_copy
from vla_world.training.config import StageConfig
from vla_world.training.data import (
    EncodedBatches,
    encode_examples,
    global_batches,
    kinematic_copy_records,
    load_stage_tokens,
    load_world_codes,
    next_rank_batch,
    planning_examples,
    stage_examples,
    world_examples,
)
from vla_world.training.distributed import (
    fill_deepspeed_batch_keys,
    full_model_state,
    full_optimizer_state,
    load_full_state,
    make_accelerator,
)
from vla_world.training.losses import weighted_lm_loss
from vla_world.training.model_setup import (
    log_parameter_counts,
    perception_status,
    resolve_init,
    set_trainable,
    start_model,
)
from vla_world.training.online_perception import (
    PERCEPTION_DIR,
    OnlineBatches,
    OnlinePerception,
    perception_folder,
)
from vla_world.training.plan_head_fit import (
    ego_states,
    fit_stage_plan_head,
    plan_targets,
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


@dataclass
class StageData:
    """What a stage trains on: the model, its batches and (online mode) the perception in the graph."""

    model: VLAModel
    batches: EncodedBatches | OnlineBatches
    online: OnlinePerception | None = None
    plan_targets: dict[str, np.ndarray] | None = None  # the plan head's targets (vla_world.training.plan_head_fit)
    plan_ego: dict[str, torch.Tensor] | None = None  # the ego states a head with model.plan_head.ego_state reads


def perception_start(cfg: StageConfig, init: Path | None) -> Path:
    """Online mode: the start checkpoint's own fine-tuned perception if it has one (resume), else the config's."""
    own = perception_folder(init) if init is not None else None
    return own or Path(cfg.data.perception_checkpoint)


def stage_tokens(cfg: StageConfig, records: list, dataroot: str, init: Path | None
                 ) -> tuple[dict, OnlinePerception | None]:
    """Tokens of `records` (detached) and, online, the perception that will recompute them every step."""
    if cfg.data.token_source != "online":
        return load_stage_tokens(cfg.data, records, cfg.data.split, dataroot), None
    online = OnlinePerception.load(perception_start(cfg, init), records, dataroot, cfg.data.feature_cache,
                                   cache=cfg.data.cache_features)
    online.loss_weight = cfg.train.perception_loss_weight
    tokens = online.all_tokens(records)
    agents = np.mean([t.counts()["agents"] for t in tokens.values()])
    elements = np.mean([t.counts()["map"] for t in tokens.values()])
    log.info("online perception at the start: %.1f agent and %.1f map tokens per keyframe", agents, elements)
    return tokens, online


def packed_samples(cfg: StageConfig, spec: StageSpec, model: VLAModel, examples: list, records: list,
                   tokens: dict) -> list[EncodedSample]:
    """QA stages with `data.pack_questions`: each sample's questions as multi-turn sequences (engineer B)."""
    from vla_world.model.packing import pack_conversations

    samples, dropped = pack_conversations(model.sequence_builder, examples, records, tokens, cfg.data.max_length,
                                          cfg.train.seed)
    for reason, count in dropped.items():
        log.warning("dropped %d of %d questions: %s", count, len(examples), reason)
    log.info("%s: %d questions packed into %d sequences", spec.name, len(examples) - sum(dropped.values()),
             len(samples))
    return samples


def prepare_data(cfg: StageConfig, spec: StageSpec, args: Namespace, init: Path | None, model_builder) -> StageData:
    from vla_world.data import load_records

    records = load_records(args.dataroot, version=args.version, split=cfg.data.split, progress=False)
    tokens, online = stage_tokens(cfg, records, args.dataroot, init)
    visual, codes = None, None
    if spec.examples == "world":
        examples, visual = world_stage_examples(cfg, records)
    else:
        if spec.examples == "planning" and "visual" in cfg.data.answer.blocks():
            codes, visual = planning_frame_codes(cfg)
        examples = stage_examples(spec.name, spec.examples, records, cfg.train.seed, cfg.data.qa, codes,
                                  answer=cfg.data.answer, tokens=tokens, residual=cfg.model.residual_answer)
    if cfg.data.max_examples and len(examples) > cfg.data.max_examples:
        keep = np.sort(np.random.default_rng(cfg.train.seed).permutation(len(examples))[:cfg.data.max_examples])
        examples = [examples[i] for i in keep]
    if spec.examples == "planning" and cfg.data.kinematic_copy_examples:
        pseudo = kinematic_copy_records(records, cfg.data.kinematic_copy_examples, cfg.train.seed)
        examples += planning_examples(pseudo, cfg.data.answer, tokens, cfg.train.seed, cfg.data.qa,
                                      cfg.model.residual_answer, codes)
        records = records + pseudo
        log.info("planning: + %d kinematic-copy pseudo-examples (answer = CTRA prior)", len(pseudo))
    model = model_builder(records, tokens, visual)
    if cfg.data.pack_questions and online is None:
        samples = packed_samples(cfg, spec, model, examples, records, tokens)
    else:  # encoded once even online: checks every sequence fits max_length and logs dropped examples early
        samples, _ = encode_examples(model.sequence_builder, examples, records, tokens, cfg.data.max_length)
    if not samples:
        raise ValueError(f"stage {spec.name}: no examples left for split {cfg.data.split!r} of {args.dataroot}")
    log.info("%s: %d examples from %d records (%s tokens)", spec.name, len(samples), len(records),
             cfg.data.token_source)
    targets = plan_targets(records, cfg.model.residual_answer) if model.plan_head is not None else None
    ego = ego_states(records) if model.plan_head is not None and model.plan_head.spec.ego_inputs else None
    if online is None:
        return StageData(model, EncodedBatches(samples, model.pad_id), plan_targets=targets, plan_ego=ego)
    return StageData(model, online_batches(model, online, examples, samples, records, cfg.data.max_length), online,
                     targets, ego)


def world_stage_examples(cfg: StageConfig, records: list) -> tuple[list, VisualSpec]:
    """The world stage's examples and the frame-code vocabulary they need; logs the samples left out."""
    codes, meta = load_world_codes(cfg.data, cfg.data.split)
    examples, skipped = world_examples(records, codes, cfg.data.world_current_frame)
    log.info("world: %d of %d samples have no next keyframe (scene ends): left out of this stage; frame codes "
             "%s/%s.safetensors (codebook %d, %d codes per frame)", skipped, len(records), cfg.data.frame_codes,
             cfg.data.split, meta.codebook_size, meta.codes_per_frame)
    return examples, VisualSpec(meta.codebook_size, meta.codes_per_frame)


def planning_frame_codes(cfg: StageConfig) -> tuple[dict, VisualSpec]:
    """Planning with a `<visual>` block: the split's frame codes (its targets) and the vocabulary they need
    (a model without visual tokens grows them; one with other ones is refused by VLAModel.from_folder)."""
    codes, meta = load_world_codes(cfg.data, cfg.data.split)
    log.info("planning <visual>: frame codes %s/%s.safetensors (codebook %d, %d codes per frame)",
             cfg.data.frame_codes, cfg.data.split, meta.codebook_size, meta.codes_per_frame)
    return codes, VisualSpec(meta.codebook_size, meta.codes_per_frame)


def online_batches(model: VLAModel, online: OnlinePerception, examples: list, samples: list[EncodedSample],
                   records: list, max_length: int) -> OnlineBatches:
    """Batches re-encoded every step from the online tail, over the examples that encoded up front."""
    if online.width != model.projectors.token_width:
        raise ValueError(f"{online.source}: perception tokens are {online.width} wide but the VLA's projectors "
                         f"expect {model.projectors.token_width}; fine-tune the perception its tokens came from")
    kept = {s.sample_token for s in samples}
    return OnlineBatches([e for e in examples if e.sample_token in kept], records, online, model.sequence_builder,
                         model.pad_id, max_length)


def check_max_steps(max_steps: int | None) -> None:
    if max_steps is not None and max_steps < 0:
        raise ConfigError(f"--max-steps {max_steps}: must be >= 0 (0 = no limit: train the configured epochs)")


def claim_out(out: Path, resume: bool, overwrite: bool, accelerator: Accelerator) -> RunLock | None:
    """Refuse an occupied --out, lock it (main process), and on --resume repair an interrupted save and the log."""
    lock = None
    if accelerator.is_main_process:
        check_run_folder(out, resume, overwrite)
        lock = RunLock(out).acquire()
        if resume:
            recover_checkpoint(out / "last")
            if (out / "last" / "state.json").is_file():
                truncate_log(out / "train.log", read_state(out / "last").get("log_bytes"))
        elif overwrite:
            (out / "train.log").unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return lock


def run_llm_stage(args: Namespace) -> Path:
    """Train `args.stage` as configured; returns the `<out>/last` checkpoint folder."""
    return claimed_run(args, _run_llm_stage)


def claimed_run(args: Namespace, body: Callable[[Namespace, StageConfig, Accelerator, Path], Path]) -> Path:
    """The skeleton of every LLM-side stage: config, --max-steps check, threads, accelerator, the claimed
    --out (refused when occupied, locked, repaired on --resume), then `body`; the lock is always released."""
    cfg = load_stage_config(args)
    check_max_steps(args.max_steps)
    torch.set_num_threads(cfg.train.num_threads)
    accelerator = make_accelerator()  # one process, DDP or DeepSpeed, as `accelerate launch` asked
    out = Path(args.out)
    lock = claim_out(out, args.resume, getattr(args, "overwrite", False), accelerator)
    try:
        return body(args, cfg, accelerator, out)
    finally:
        if lock is not None:
            lock.release()


def resume_point(cfg: StageConfig, spec: StageSpec, args: Namespace, out: Path) -> tuple[Path | None, Path | None]:
    """(the checkpoint --resume continues from, or None; the folder the run starts from, or None: fresh)."""
    resume_dir = out / "last" if args.resume else None
    if resume_dir is not None and not (resume_dir / "state.json").is_file():
        raise CheckpointError(f"{resume_dir}: --resume needs a checkpoint written by an earlier run with this --out")
    return resume_dir, resume_dir or resolve_init(cfg, spec, out, args.init)


def _run_llm_stage(args: Namespace, cfg: StageConfig, accelerator: Accelerator, out: Path) -> Path:
    spec = stage_spec(args.stage)
    setup_logging(out, accelerator.is_main_process)
    resume_dir, init = resume_point(cfg, spec, args, out)
    torch.manual_seed(cfg.train.seed)
    data = prepare_data(cfg, spec, args, init,
                        lambda recs, toks, visual: start_model(cfg, spec, init, args.llm, recs, toks, visual))
    counts = set_trainable(data.model, spec)
    if data.online is not None:
        counts = {**data.online.set_trainable(), **counts}
    status = perception_status(cfg.data.token_source, spec, data.online.source if data.online else None,
                               cfg.train.perception_loss_weight)
    log_parameter_counts(counts, bool(data.model.lora), status)
    trainer = StageTrainer(cfg, spec, data.model, data.batches, accelerator, out, data.online)
    trainer.plan_targets, trainer.plan_ego = data.plan_targets, data.plan_ego
    trainer.data = data_identity(args.dataroot, args.version)
    if resume_dir is not None:
        check_data_identity(resume_dir, read_state(resume_dir).get("data"), args.dataroot, args.version,
                            fix="resume on the dataroot it was trained on, or start again with --overwrite")
        trainer.restore(resume_dir)
    return trainer.fit(args.max_steps)


class StageTrainer:
    """The optimisation loop of one stage, with exact save/restore."""

    def __init__(self, cfg: StageConfig, spec: StageSpec, model: VLAModel,
                 batches: list[EncodedSample] | EncodedBatches | OnlineBatches, accelerator: Accelerator, out: Path,
                 online: OnlinePerception | None = None):
        if isinstance(batches, list):
            batches = EncodedBatches(batches, model.pad_id)
        self.cfg, self.spec, self.batches, self.acc, self.out = cfg, spec, batches, accelerator, out
        self.model, self.online = model, online
        self.world = accelerator.num_processes
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.perception_optimizer = (online.optimizer(cfg.train.perception_peak_lr(), cfg.train.weight_decay)
                                     if online is not None else None)
        self.accumulation = cfg.train.grad_accum
        self.global_batch = cfg.train.batch_size * self.world * self.accumulation
        self.batches_per_epoch = len(self.epoch_batches(0))
        self.total_steps = max(1, math.ceil(cfg.train.epochs * self.batches_per_epoch))
        self.progress = Progress()
        self.restored: tuple[dict, dict] | None = None  # (weights, optimizer state) to load after prepare
        self.prepared_optimizer = self.optimizer
        self.perception_loss: float | None = None  # last weighted perception loss (online), for the log
        self.last_save = time.monotonic()
        self.data: dict = {}  # data_identity of the dataroot (run_llm_stage sets it): saved as the data reference
        self.code_ids = model.visual_ids.codes if model.visual is not None else None  # the loss's visual segment
        self.plan_targets: dict[str, np.ndarray] | None = None  # set: fit the plan head after the last step
        self.plan_ego: dict[str, torch.Tensor] | None = None  # its ego-state inputs, where it reads them

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        batches = global_batches(len(self.batches), self.global_batch, self.cfg.train.seed, epoch)
        return [b for b in batches if len(b) >= self.world]  # every process needs at least one sample

    def restore(self, folder: Path) -> None:
        weights, optimizer_state, state = load_checkpoint(folder)
        if optimizer_state is None:
            raise FileNotFoundError(f"{folder}/optimizer.safetensors: missing, so the run cannot resume exactly")
        self.restored = (weights, optimizer_state)  # ZeRO partitions the optimizer in prepare: load after it
        self.check_same_schedule(folder, state)
        self.progress = Progress(**state["progress"])
        if self.online is not None:
            self.restore_perception(folder / PERCEPTION_DIR)
        set_rng_state(state["rng"])
        log.info("resumed at step %d (epoch %d, batch %d)", self.progress.step, self.progress.epoch,
                 self.progress.batch_in_epoch)

    def check_same_schedule(self, folder: Path, state: dict) -> None:
        """Resume only onto the saved global batch: it fixes the data order, the position and the schedule."""
        saved_world = int(state.get("world_size", self.world))
        saved_batch = int(state.get("batch_size", self.cfg.train.batch_size))
        saved_accum = int(state.get("grad_accum", 1))
        saved_global = saved_batch * saved_world * saved_accum
        if saved_global != self.global_batch:
            raise CheckpointError(
                f"{folder}: saved with global batch {saved_global} (train.batch_size {saved_batch} x {saved_world} "
                f"process(es) x train.grad_accum {saved_accum}) but this run has {self.global_batch} "
                f"({self.cfg.train.batch_size} x {self.world} x {self.accumulation}); the data position and the "
                "learning-rate schedule are defined by the global batch: relaunch with the same processes and "
                "batch_size, or set train.grad_accum so that the product stays the same")
        if (saved_world, saved_batch) != (self.world, self.cfg.train.batch_size):
            log.info("resuming %d process(es) x batch %d onto %d x %d: same global batch %d, same schedule",
                     saved_world, saved_batch, self.world, self.cfg.train.batch_size, self.global_batch)

    def restore_perception(self, folder: Path) -> None:
        optimizer_state, state = OnlinePerception.saved_state(folder)
        if state.get("step") != self.progress.step:
            raise ValueError(f"{folder}: perception saved at step {state.get('step')} but the VLA at step "
                             f"{self.progress.step}; the checkpoint is inconsistent, start from an earlier one")
        self.perception_optimizer.load_state_dict(optimizer_state)

    def prepare(self) -> tuple[torch.nn.Module, list]:
        """accelerate-prepared VLA (and online perception tail) and their optimizers, in training mode."""
        if self.accumulation > 1 and self.acc.distributed_type == DistributedType.DEEPSPEED:
            raise ConfigError("train.grad_accum > 1 accumulates in the runner, which a DeepSpeed engine does not "
                              "allow; use DDP (configs/accelerate/cpu_2proc.yaml) or a larger train.batch_size")
        fill_deepspeed_batch_keys(self.acc, self.cfg.train.batch_size, self.cfg.train.grad_clip)
        model, optimizer = self.acc.prepare(self.model, self.optimizer)
        self.prepared_optimizer = optimizer
        if self.restored is not None:
            load_full_state(self.acc, self.model, optimizer, *self.restored)
            self.restored = None
        model.train()
        if self.online is None:
            return model, [optimizer]
        if self.acc.distributed_type == DistributedType.DEEPSPEED:
            raise ValueError("data.token_source online needs two modules (VLA + perception tail); DeepSpeed takes "
                             "one per engine. Use DDP (e.g. configs/accelerate/cpu_2proc.yaml) or cached tokens")
        tail, perception_optimizer = self.acc.prepare(self.online.tail, self.perception_optimizer)
        self.online.forward_module = tail.train()
        return model, [optimizer, perception_optimizer]

    def fit(self, max_steps: int | None) -> Path:
        limit = min(self.total_steps, max_steps) if max_steps else self.total_steps
        model, optimizers = self.prepare()
        log.info("%s: %d steps (%d per epoch, global batch %d = batch %d x %d process(es) x %d accumulation), "
                 "lr %.1e", self.spec.name, self.total_steps, self.batches_per_epoch, self.global_batch,
                 self.cfg.train.batch_size, self.world, self.accumulation, self.cfg.train.lr)
        bar = tqdm(total=limit, initial=self.progress.step, desc=self.spec.name, disable=not self.acc.is_main_process)
        started, tokens_seen = time.perf_counter(), 0
        while self.progress.step < limit:
            loss, n_tokens = self.train_step(model, optimizers)
            check_finite_loss(loss, self.progress.step, self.spec.name, self.out)
            tokens_seen += n_tokens
            self.progress.losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if self.progress.step % self.cfg.train.log_every == 0 or self.progress.step == limit:
                rate = tokens_seen / max(1e-9, time.perf_counter() - started)
                extra = "" if self.perception_loss is None else f" perception loss {self.perception_loss:.4f}"
                log.info("step %d/%d loss %.4f lr %.2e %.0f tok/s%s", self.progress.step, self.total_steps, loss,
                         optimizers[0].param_groups[0]["lr"], rate, extra)
            if self.save_due():
                self.save()
        bar.close()
        self.check_ranks_agree()
        if self.plan_targets is not None:  # also at a --max-steps stop: the head matches the LLM it reads
            log.info(fit_stage_plan_head(self.model, self.batches, self.plan_targets, self.cfg.model.plan_head,
                                         self.cfg.train.seed, self.plan_ego))
        return self.save()

    def save_due(self) -> bool:
        """Every `save_every` steps and every `save_minutes` (main process's clock, shared so all ranks agree)."""
        train = self.cfg.train
        if train.save_every and self.progress.step % train.save_every == 0:
            return True
        if not train.save_minutes:
            return False
        due = torch.tensor([float(time.monotonic() - self.last_save >= 60 * train.save_minutes)], device=self.acc.device)
        if self.world > 1:
            from accelerate.utils import broadcast

            due = broadcast(due, from_process=0)
        return bool(due.item())

    def next_batch(self) -> list[dict]:
        """This process's share of the next global batch, as `grad_accum` collated micro-batches."""
        indices = next_rank_batch(self.progress, self.epoch_batches, self.acc.process_index, self.world)
        chunks = [c for c in np.array_split(indices, self.accumulation) if len(c)]
        return [self.batches.batch(c.tolist()) for c in chunks]  # online: the perception tail runs here, with grad

    def trained_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        params = list(model.parameters())
        return params + list(self.online.tail.parameters()) if self.online is not None else params

    def set_learning_rates(self, optimizers: list) -> None:
        peaks = [self.cfg.train.lr, self.cfg.train.perception_peak_lr()]
        for optimizer, peak in zip(optimizers, peaks):
            lr = learning_rate(self.progress.step, self.total_steps, peak, self.cfg.train.warmup_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr

    def train_step(self, model, optimizers: list) -> tuple[float, int]:
        """One optimizer step over this process's share of the global batch, in `grad_accum` micro-batches.

        Each micro-batch's mean token loss is weighted by its share of the label tokens, so the gradient is
        the one of the whole share in one batch (tests/test_reliability.py checks it against the larger batch).
        """
        parts = self.next_batch()
        self.set_learning_rates(optimizers)
        counts = [label_count(part) for part in parts]
        loss_sum, n_tokens = torch.zeros(()), 0
        for i, part in enumerate(parts):
            weight = counts[i] / max(1, sum(counts))
            sync = i == len(parts) - 1 or self.world == 1
            with contextlib.nullcontext() if sync else self.acc.no_sync(model):
                loss, tokens = self.micro_step(model, part, weight, len(parts))
            loss_sum, n_tokens = loss_sum + loss * weight, n_tokens + tokens
        if self.cfg.train.grad_clip > 0:  # one norm over everything that learns, as for a single model
            self.acc.clip_grad_norm_(self.trained_parameters(model), self.cfg.train.grad_clip)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        loss = self.acc.reduce(loss_sum.to(self.acc.device), reduction="mean").item()
        return loss, n_tokens * self.world

    def micro_step(self, model, batch: dict, weight: float, parts: int) -> tuple[torch.Tensor, int]:
        """Forward + backward of one micro-batch with its loss weight; returns (its mean loss, its tokens)."""
        device = self.acc.device
        labels = batch["labels"].to(device)
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    features=batch["features"], labels=None if self.code_ids is not None else labels)
        # a model with visual tokens: per-segment weights (config `loss`, vla_world/training/losses.py)
        lm_loss = out.loss if self.code_ids is None else weighted_lm_loss(out.logits, labels, self.code_ids,
                                                                           self.cfg.loss)
        total = lm_loss * weight
        if "perception_loss" in batch:  # online: the perception stage's loss keeps the heads detecting (config.py)
            self.perception_loss = float(batch["perception_loss"].detach())
            total = total + batch["perception_loss"] / parts
        self.acc.backward(total)
        return lm_loss.detach().cpu(), int(batch["attention_mask"].sum())

    def check_ranks_agree(self) -> None:
        if self.world == 1:
            return
        checksum = torch.stack([p.detach().double().sum() for p in self.trained_parameters(self.model)]).sum().reshape(1)
        gathered = self.acc.gather(checksum.to(self.acc.device))
        equal = bool(torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=0, atol=0))
        log.info("weights equal across %d processes: %s (checksums %s)", self.world, equal, gathered.tolist())
        if not equal:
            raise RuntimeError("weights differ across processes after training; DDP did not synchronise")

    def save(self) -> Path:
        folder = self.out / "last"
        self.acc.wait_for_everyone()
        model = self.acc.unwrap_model(self.model)
        weights = full_model_state(self.acc, model)  # collective under ZeRO: every process gathers
        optimizer_state = full_optimizer_state(self.acc, model, self.prepared_optimizer)
        if self.acc.is_main_process:
            log.info("saving %s (step %d)", folder, self.progress.step)  # kept in the log a resume cuts back to
            tied = model.base_llm.config.tie_word_embeddings  # safetensors refuses shared tensors
            state = {k: v for k, v in weights.items() if not tied_copy(k, tied)}
            files = model.save_files()
            files["config.yaml"] = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
            meta = {"stage": self.spec.name, "progress": vars(self.progress), "rng": rng_state(),
                    "total_steps": self.total_steps, "world_size": self.world,
                    "batch_size": self.cfg.train.batch_size, "grad_accum": self.accumulation,
                    "log_bytes": log_size(self.out / "train.log"), "data": self.data}
            save_checkpoint(folder, state, optimizer_state, meta, files)
            if self.online is not None:  # after the VLA folder, which replaces `folder` as a whole
                self.online.save(folder / PERCEPTION_DIR, self.perception_optimizer, {"step": self.progress.step})
            log.info("saved %s (step %d)", folder, self.progress.step)
        self.last_save = time.monotonic()
        self.acc.wait_for_everyone()
        return folder


def log_size(path: Path) -> int | None:
    """Bytes of the training log now (flushed): on --resume the log is cut back to this (no repeated lines)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.stat().st_size if path.is_file() else None


def label_count(batch: dict) -> int:
    """Label tokens the LLM's loss averages over (shifted by one, -100 ignored)."""
    return int((batch["labels"][:, 1:] != -100).sum())
