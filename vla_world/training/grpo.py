"""`run_grpo_stage(args)`: GRPO on the planning answer (paper 004 A.1 / B.2); called by tools/train.py.

    python tools/train.py --stage grpo --config configs/grpo/tiny.yaml --out checkpoints/grpo
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tools/train.py --stage grpo ...

Why our own loop and not trl's GRPOTrainer: our policy takes `inputs_embeds` with the projected
perception tokens spliced in, which trl's generation and log-prob code cannot feed
(../shared/notes/dependencies.md §10).

One step, per process (prompts split across processes like every stage's batches):
  1. rollouts: each prompt's G answers sampled inside the trajectory template (vla_world.constrained:
     the structure is forced, the model samples only the numbers at `grpo.temperature` / `top_p`),
     one batched decoding with the KV cache; the sampler's generator is seeded by (seed, step, rank),
     so a resumed run draws exactly what the uninterrupted run drew;
  2. rewards: `planning.rewards.score_answer` against each prompt's `RewardTarget` (built from the
     record's PlanningTargets by planning.reward_targets; the targets never enter a prompt);
  3. advantages per group (vla_world/training/grpo_loss.py), zero-signal groups counted;
  4. loss on the tokens the model chose (forced template tokens are not scored): log-probs of the
     policy in one forward pass (`AnswerLogProbs`), old log-probs = the policy's before the first
     update (equal to the detached log-probs with `updates_per_batch: 1`), reference log-probs from
     the frozen start checkpoint (LoRA: the same LLM with its adapter disabled + the start's projectors).

Checkpoints as every stage: `<out>/last` (weights, optimizer, step, data position, metric history,
config.yaml, tokenizer, vla.json; atomic), `--resume` continues exactly. With
`data.token_source: online` the start checkpoint's fine-tuned perception gives the tokens (frozen;
computed once) and is copied to `<out>/last/perception`, so evaluation reads the same tokens.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from argparse import Namespace
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from tqdm import tqdm

from planning.codec import format_trajectory, parse_trajectory
from planning.kinematic import ctra_prior
from planning.reward_targets import reward_target_of
from planning.rewards import TERMS, RewardConfig, RewardTarget, score_answer
from vla_world.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vla_world.config import config_to_dict
from vla_world.constrained import SampledAnswer, constrained_sample_ids
from vla_world.data.planner_input import planner_input
from vla_world.model.projectors import Projectors
from vla_world.model.sequence import (
    IGNORE_INDEX,
    PLANNING_QUESTION,
    EncodedSample,
    collate,
)
from vla_world.model.vla import VLAModel
from vla_world.training.config import StageConfig
from vla_world.training.data import (
    global_batches,
    load_stage_tokens,
    next_rank_batch,
    planning_examples,
)
from vla_world.training.distributed import (
    full_model_state,
    full_optimizer_state,
    load_full_state,
)
from vla_world.training.grpo_loss import (
    AnswerLogProbs,
    clipped_loss,
    group_advantages,
    zero_signal_groups,
)
from vla_world.training.model_setup import (
    log_parameter_counts,
    set_trainable,
    start_model,
)
from vla_world.training.online_perception import (
    PERCEPTION_DIR,
    OnlinePerception,
    perception_folder,
)
from vla_world.training.runner import (
    claimed_run,
    learning_rate,
    resume_point,
    setup_logging,
)
from vla_world.training.stages import stage_spec

log = logging.getLogger("vla_world.grpo")
METRICS = ("loss", "reward_mean", "reward_std", *(f"reward_{t}" for t in TERMS), "kl", "clip_fraction",
           "zero_signal", "answer_tokens", "format_success")


@dataclass
class Prompt:
    """One planning prompt (never its answer) and what its sampled answers are scored against."""

    sample: EncodedSample  # prompt-only ids + features
    target: RewardTarget
    prior: np.ndarray | None = None  # residual answers: the prompt's CTRA rollout the answer corrects


@dataclass
class GRPOProgress:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: list[dict] = field(default_factory=list)  # METRICS of every step (the reward curve)


# ---------------------------------------------------------------- data
def stage_tokens(cfg: StageConfig, records: list, dataroot: str, init: Path) -> dict:
    """Tokens as the start checkpoint was trained with: its fine-tuned perception (online, frozen), a cache, or oracle."""
    if cfg.data.token_source != "online":
        return load_stage_tokens(cfg.data, records, cfg.data.split)
    folder = perception_folder(init)
    if folder is None:
        raise FileNotFoundError(f"{init}/{PERCEPTION_DIR}: missing; data.token_source online reads the start "
                                "checkpoint's fine-tuned perception. Start from an online planning checkpoint or "
                                "set data.token_source cache|oracle")
    online = OnlinePerception.load(folder, records, dataroot, cfg.data.feature_cache, cache=cfg.data.cache_features)
    with torch.no_grad():
        return online.all_tokens(records)


def build_prompts(cfg: StageConfig, model: VLAModel, records: list, tokens: dict) -> list[Prompt]:
    """Prompts of the samples with a complete future (as planning trains on), at most data.max_examples."""
    examples = planning_examples(records)
    if cfg.data.max_examples and len(examples) > cfg.data.max_examples:
        keep = np.sort(np.random.default_rng(cfg.train.seed).permutation(len(examples))[:cfg.data.max_examples])
        examples = [examples[i] for i in keep]
    by_token = {r.sample_token: r for r in records}
    builder = model.sequence_builder
    prompts = []
    for ex in examples:
        record = by_token[ex.sample_token]
        inp = planner_input(record)
        sample = builder.encode(inp, tokens[ex.sample_token], PLANNING_QUESTION)  # no answer
        prior = ctra_prior(inp) if model.prompt.residual_answer else None
        prompts.append(Prompt(sample, reward_target_of(record, cfg.grpo.convention), prior))
    return prompts


# ---------------------------------------------------------------- one step's pieces
def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The sampler's generator: a pure function of (seed, step, rank), so resume redraws the same answers."""
    state = int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
    return torch.Generator().manual_seed(state)


def sample_answers(model: VLAModel, prompts: list[Prompt], cfg: StageConfig, generator: torch.Generator
                   ) -> list[SampledAnswer]:
    """G template answers per prompt, prompt-major (prompt 0's G answers first), one batched decoding."""
    g = cfg.grpo.group_size
    ids = [p.sample.input_ids for p in prompts for _ in range(g)]
    features = [p.sample.features for p in prompts for _ in range(g)]
    priors = [p.prior for p in prompts for _ in range(g)] if model.prompt.residual_answer else None
    was_training = model.training
    model.eval()
    try:
        return constrained_sample_ids(model, ids, features, cfg.grpo.temperature, cfg.grpo.top_p, generator,
                                      priors=priors)
    finally:
        model.train(was_training)


def score_group(model: VLAModel, prompts: list[Prompt], answers: list[SampledAnswer], reward: RewardConfig,
                group_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(P, G) total rewards and {term: (P, G) scores} (a term that does not apply scores NaN)."""
    totals, terms = [], {t: [] for t in TERMS}
    for k, answer in enumerate(answers):
        prompt = prompts[k // group_size]
        scores = score_answer(absolute_answer(model.decode(answer.ids), prompt.prior), prompt.target, reward)
        totals.append(scores.total)
        for t in TERMS:
            terms[t].append(np.nan if scores.terms[t] is None else scores.terms[t])
    shape = (len(prompts), group_size)
    return np.reshape(totals, shape), {t: np.reshape(v, shape) for t, v in terms.items()}


def absolute_answer(text: str, prior: np.ndarray | None) -> str:
    """A residual answer as the absolute trajectory text it means (what the verifiers read); others unchanged."""
    if prior is None:
        return text
    parsed = parse_trajectory(text, prior)
    return format_trajectory(parsed.waypoints) if parsed.ok else text


def rollout_batch(prompts: list[Prompt], answers: list[SampledAnswer], group_size: int, pad_id: int) -> dict:
    """Right-padded prompt + answer sequences whose labels are the chosen tokens only (forced ones: IGNORE)."""
    samples = []
    for k, answer in enumerate(answers):
        prompt = prompts[k // group_size].sample
        labels = [i if chosen else IGNORE_INDEX for i, chosen in zip(answer.ids, answer.chosen)]
        samples.append(EncodedSample(prompt.sample_token, prompt.input_ids + answer.ids,
                                     [IGNORE_INDEX] * len(prompt.input_ids) + labels, prompt.features))
    return collate(samples, pad_id)


def token_advantages(advantages: np.ndarray, labels: torch.Tensor) -> torch.Tensor:
    """Each answer's advantage repeated over its scored tokens, in `scored_positions` order (row-major)."""
    per_row = (labels != IGNORE_INDEX).sum(dim=1)
    return torch.repeat_interleave(torch.as_tensor(advantages.reshape(-1), dtype=torch.float32), per_row)


# ---------------------------------------------------------------- the reference policy
@contextmanager
def swapped_projectors(model: VLAModel, projectors: Projectors):
    original = model.projectors
    model.projectors = projectors
    try:
        yield
    finally:
        model.projectors = original


class Reference:
    """The frozen start policy: a separate copy (full fine-tuning) or the policy's LLM with its LoRA
    adapter disabled and the start checkpoint's projectors (LoRA), so no second LLM is held."""

    def __init__(self, start: Path, policy: VLAModel):
        self.policy = policy
        start_vla = VLAModel.from_folder(start)
        start_vla.merge_lora()
        if policy.lora:
            self.model, self.projectors = None, start_vla.projectors.requires_grad_(False).eval()
        else:
            self.model, self.projectors = start_vla.requires_grad_(False).eval(), None

    @torch.no_grad()
    def log_probs(self, batch: dict, temperature: float) -> torch.Tensor:
        if self.model is not None:
            return AnswerLogProbs(self.model)(batch["input_ids"], batch["attention_mask"], batch["features"],
                                              batch["labels"], temperature)
        with self.policy.llm.disable_adapter(), swapped_projectors(self.policy, self.projectors):
            return AnswerLogProbs(self.policy)(batch["input_ids"], batch["attention_mask"], batch["features"],
                                               batch["labels"], temperature)


# ---------------------------------------------------------------- the trainer
class GRPOTrainer:
    """Rollouts -> rewards -> clipped policy-gradient updates, with exact save/restore."""

    def __init__(self, cfg: StageConfig, model: VLAModel, prompts: list[Prompt], reference: Reference,
                 accelerator: Accelerator, out: Path, start: Path, perception: Path | None = None):
        self.cfg, self.model, self.prompts, self.reference = cfg, model, prompts, reference
        self.acc, self.out, self.start, self.perception = accelerator, out, start, perception
        self.world = accelerator.num_processes
        self.reward = RewardConfig(**cfg.grpo.reward)
        self.scorer = AnswerLogProbs(model)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr,
                                           weight_decay=cfg.train.weight_decay)
        self.global_batch = cfg.train.batch_size * self.world
        self.batches_per_epoch = len(self.epoch_batches(0))
        self.total_steps = max(1, math.ceil(cfg.train.epochs * self.batches_per_epoch))
        self.progress = GRPOProgress()
        self.restored: tuple[dict, dict] | None = None
        self.prepared: tuple[torch.nn.Module, torch.optim.Optimizer] | None = None
        self.seconds: dict[str, float] = {}  # the last step's time: generate (rollouts), score (verifiers), update

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        batches = global_batches(len(self.prompts), self.global_batch, self.cfg.train.seed, epoch)
        return [b for b in batches if len(b) >= self.world]

    def restore(self, folder: Path) -> None:
        weights, optimizer_state, state = load_checkpoint(folder)
        if optimizer_state is None:
            raise FileNotFoundError(f"{folder}/optimizer.safetensors: missing, so the run cannot resume exactly")
        self.restored = (weights, optimizer_state)
        self.progress = GRPOProgress(**state["progress"])
        set_rng_state(state["rng"])
        log.info("resumed at step %d", self.progress.step)

    def prepare(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        if self.prepared is None:
            scorer, optimizer = self.acc.prepare(self.scorer, self.optimizer)
            if self.restored is not None:
                load_full_state(self.acc, self.model, optimizer, *self.restored)
                self.restored = None
            self.prepared = (scorer.train(), optimizer)
        return self.prepared

    def next_prompts(self) -> list[Prompt]:
        indices = next_rank_batch(self.progress, self.epoch_batches, self.acc.process_index, self.world)
        return [self.prompts[i] for i in indices]

    def fit(self, max_steps: int | None) -> Path:
        limit = min(self.total_steps, max_steps) if max_steps else self.total_steps
        self.prepare()
        log.info("grpo: %d steps (%d prompts, %d per step, G %d, %d process(es)), lr %.1e, beta %.0e",
                 self.total_steps, len(self.prompts), self.global_batch, self.cfg.grpo.group_size, self.world,
                 self.cfg.train.lr, self.cfg.grpo.kl_coef)
        bar = tqdm(total=limit, initial=self.progress.step, desc="grpo", disable=not self.acc.is_main_process)
        while self.progress.step < limit:
            metrics = self.train_step()
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", kl=f"{metrics['kl']:.4f}",
                            zero=f"{metrics['zero_signal']:.2f}")
            if self.progress.step % self.cfg.train.log_every == 0 or self.progress.step == limit:
                log.info("step %d/%d %s", self.progress.step, self.total_steps,
                         " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if math.isfinite(v)))
            if self.cfg.train.save_every and self.progress.step % self.cfg.train.save_every == 0:
                self.save()
        bar.close()
        return self.save()

    def train_step(self) -> dict[str, float]:
        scorer, optimizer = self.prepare()
        prompts = self.next_prompts()
        g, grpo = self.cfg.grpo.group_size, self.cfg.grpo
        started = time.perf_counter()
        answers = sample_answers(self.model, prompts, self.cfg, step_generator(self.cfg.train.seed, self.progress.step,
                                                                                self.acc.process_index))
        generated = time.perf_counter()
        rewards, terms = score_group(self.model, prompts, answers, self.reward, g)
        scored = time.perf_counter()
        advantages = group_advantages(rewards, grpo.adv_eps)
        batch = rollout_batch(prompts, answers, g, self.model.pad_id)
        device = self.acc.device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        adv = token_advantages(advantages, batch["labels"]).to(device)
        ref_logp = self.reference.log_probs(batch, grpo.temperature)
        lr = learning_rate(self.progress.step, self.total_steps, self.cfg.train.lr, self.cfg.train.warmup_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        old_logp = None
        for _ in range(grpo.updates_per_batch):
            logp = scorer(batch["input_ids"], batch["attention_mask"], batch["features"], batch["labels"],
                          grpo.temperature)
            old_logp = logp.detach() if old_logp is None else old_logp  # the sampling policy's
            parts = clipped_loss(logp, old_logp, ref_logp, adv, grpo.clip_eps, grpo.kl_coef)
            self.acc.backward(parts.loss)
            if self.cfg.train.grad_clip > 0:
                self.acc.clip_grad_norm_(list(scorer.parameters()), self.cfg.train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        self.seconds = {"generate": generated - started, "score": scored - generated,
                        "update": time.perf_counter() - scored}
        local = self.step_metrics(parts, rewards, terms, answers)
        metrics = self.reduce(local)
        self.progress.history.append(metrics)
        return metrics

    def step_metrics(self, parts, rewards: np.ndarray, terms: dict[str, np.ndarray],
                     answers: list[SampledAnswer]) -> dict[str, float]:
        def mean(values: np.ndarray) -> float:  # NaN for a term that does not apply (grounding of a plain answer)
            return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

        return {"loss": float(parts.loss.detach()), "reward_mean": float(rewards.mean()),
                "reward_std": float(rewards.std()), **{f"reward_{t}": mean(v) for t, v in terms.items()},
                "kl": parts.kl, "clip_fraction": parts.clip_fraction,
                "zero_signal": zero_signal_groups(rewards) / len(rewards),
                "answer_tokens": float(np.mean([len(a.ids) for a in answers])),
                "format_success": float(np.mean(terms["format"] == 1.0))}

    def reduce(self, local: dict[str, float]) -> dict[str, float]:
        """The mean of each metric over processes (every process holds the same number of prompts)."""
        if self.world == 1:
            return local
        values = torch.tensor([local[k] for k in METRICS], dtype=torch.float64, device=self.acc.device)
        values = self.acc.reduce(values, reduction="mean")
        return dict(zip(METRICS, values.tolist()))

    def save(self) -> Path:
        folder = self.out / "last"
        self.acc.wait_for_everyone()
        optimizer = self.prepare()[1]
        weights = full_model_state(self.acc, self.model)
        optimizer_state = full_optimizer_state(self.acc, self.model, optimizer)
        if self.acc.is_main_process:
            tied = self.model.base_llm.config.tie_word_embeddings
            state = {k: v for k, v in weights.items() if not (tied and k.endswith("lm_head.weight"))}
            files = self.model.save_files()
            files["config.yaml"] = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
            meta = {"stage": "grpo", "progress": vars(self.progress), "rng": rng_state(),
                    "total_steps": self.total_steps, "world_size": self.world, "reference": str(self.start)}
            save_checkpoint(folder, state, optimizer_state, meta, files)
            if self.perception is not None:  # the frozen perception the tokens came from, for evaluation
                shutil.copytree(self.perception, folder / PERCEPTION_DIR, dirs_exist_ok=True)
            log.info("saved %s (step %d)", folder, self.progress.step)
        self.acc.wait_for_everyone()
        return folder


# ---------------------------------------------------------------- the stage
def reference_start(resume_dir: Path | None, init: Path | None) -> Path:
    """The checkpoint the run started from: the reference policy (a resumed run reads it from state.json)."""
    if resume_dir is not None:
        _, _, state = load_checkpoint(resume_dir)
        return Path(state["reference"])
    if init is None:
        raise ValueError("grpo needs a start checkpoint (the SFT planner and the reference); --init none is not allowed")
    return init


def frozen_perception_copy(init: Path, out: Path) -> Path:
    """`<out>/frozen_perception`: the start's perception, copied once, because saving replaces `<out>/last`
    (where a resumed run's init lies) as a whole."""
    keep = out / "frozen_perception"
    if not (keep / "model.safetensors").is_file():
        shutil.copytree(perception_folder(init), keep, dirs_exist_ok=True)
    return keep


def run_grpo_stage(args: Namespace) -> Path:
    """Train the grpo stage as configured; returns the `<out>/last` checkpoint folder."""
    return claimed_run(args, _run_grpo_stage)


def _run_grpo_stage(args: Namespace, cfg: StageConfig, accelerator: Accelerator, out: Path) -> Path:
    from vla_world.data import load_records

    spec = stage_spec("grpo")
    setup_logging(out, accelerator.is_main_process)
    resume_dir, init = resume_point(cfg, spec, args, out)
    start = reference_start(resume_dir, init)
    torch.manual_seed(cfg.train.seed)
    records = load_records(args.dataroot, version=args.version, split=cfg.data.split, progress=False)
    tokens = stage_tokens(cfg, records, args.dataroot, init)
    model = start_model(cfg, spec, init, args.llm, records, tokens)
    log_parameter_counts(set_trainable(model, spec), bool(model.lora), "perception: frozen (grpo reads its tokens)")
    prompts = build_prompts(cfg, model, records, tokens)
    if not prompts:
        raise ValueError(f"grpo: no prompt with a complete future in split {cfg.data.split!r} of {args.dataroot}")
    perception = frozen_perception_copy(init, out) if cfg.data.token_source == "online" else None
    trainer = GRPOTrainer(cfg, model, prompts, Reference(start, model), accelerator, out, start, perception)
    if resume_dir is not None:
        trainer.restore(resume_dir)
    return trainer.fit(args.max_steps)
