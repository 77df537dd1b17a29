"""Examples -> encoded sequences -> padded batches, for every LLM stage.

    tokens = load_stage_tokens(cfg.data, records, "train")         # {sample_token: PerceptionTokens}
    examples = stage_examples("planning", records)                 # [TrainingExample]
    codes, meta = load_world_codes(cfg.data, "train")               # world stage: frame codes of the split
    examples, skipped = world_examples(records, codes)
    samples, dropped = encode_examples(builder, examples, records, tokens, max_length)
    batch = collate(samples[:4], pad_id)        # or EncodedBatches(samples, pad_id).batch(indices)

Data order is a pure function of (seed, epoch) (`epoch_order`), so a resumed run sees exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.frame_codes import FrameCodeMeta, load_frame_codes
from perception.tokens import PerceptionTokens, load_tokens_for
from planning.codec import format_trajectory
from planning.kinematic import ctra_prior, ctra_rollout
from planning.structured import AnswerConfig, seen_agents, structured_answer
from vla_world.data.planner_input import planner_input
from vla_world.data.records import SampleRecord
from vla_world.model.sequence import (
    PLANNING_QUESTION,
    EncodedSample,
    FocusNotDetected,
    SequenceBuilder,
    collate,
)
from vla_world.model.visual_tokens import code_tokens_text, codes_text, world_question
from vla_world.qa import StageDataConfig, build_stage_examples
from vla_world.training.config import DataConfig

log = logging.getLogger(__name__)


@dataclass
class TrainingExample:
    """One question/answer about one sample (the fields of vla_world.qa's StageExample we use)."""

    sample_token: str
    question: str
    answer: str
    focus_track_id: int | None = None
    kind: str = "planning"
    meta: dict = field(default_factory=dict)


def planning_examples(records: list[SampleRecord], answer: AnswerConfig | None = None,
                      tokens: dict[str, PerceptionTokens] | None = None, seed: int = 0,
                      qa: StageDataConfig | None = None, residual: bool = False,
                      frame_codes: dict[str, np.ndarray] | None = None) -> list[TrainingExample]:
    """The planning stage's examples (the one builder of them): the GT ego future as the answer, in
    `planning.codec` text, or the structured answer around it when `answer.structured` (then the
    perception `tokens` of every record are needed: <perception> and <think> name what perception
    saw); samples whose future is incomplete (near a scene end) are left out.

    `residual`: the trajectory is the future's correction to the CTRA prior the prompt shows, computed
    from the planner input (`ctra_prior(planner_input(r))`), so no label reaches the prompt; in a
    structured answer it is the `<answer>` block that holds it.

    `answer.visual`: the `<visual>` block holds the NEXT keyframe's CAM_FRONT codes from `frame_codes`
    (the world stage's cache; a target, never an input). A sample without a next keyframe has no such
    target: it is left out of this stage (counted and logged), as the world stage does."""
    answer = answer or AnswerConfig()
    complete = [r for r in records if bool(np.all(r.ego_future_mask))]
    if not answer.structured:
        return [TrainingExample(r.sample_token, PLANNING_QUESTION, planning_answer(r, residual)) for r in complete]
    if tokens is None:
        raise ValueError("planning_examples: data.answer.structured needs the perception tokens of the records")
    visual = {}
    if answer.visual:
        complete, visual = with_next_frame_codes(complete, frame_codes)
    qa = qa or StageDataConfig()
    return [TrainingExample(r.sample_token, PLANNING_QUESTION,
                            structured_planning_answer(r, tokens[source_token(r.sample_token)], answer, seed, qa,
                                                       residual, visual.get(r.sample_token)))
            for r in complete]


def with_next_frame_codes(records: list[SampleRecord], frame_codes: dict[str, np.ndarray] | None
                          ) -> tuple[list[SampleRecord], dict[str, str]]:
    """The records that have a next keyframe, and each one's `<visual>` inside text (its next frame's codes);
    the others are counted and logged. A next keyframe missing from the cache is an error (stale cache)."""
    if frame_codes is None:
        raise ValueError("planning_examples: data.answer.visual needs the frame codes of the split "
                         "(data.frame_codes, tools/export_frame_codes.py)")
    kept = [r for r in records if r.has_next_frame]
    missing = [r.next_sample_token for r in kept if r.next_sample_token not in frame_codes]
    if missing:
        raise KeyError(f"frame-code cache: no codes for next keyframe {missing[0]} ({len(missing)} missing); "
                       "re-run tools/export_frame_codes.py for this dataroot and split")
    if len(kept) < len(records):
        log.warning("planning <visual>: %d of %d samples have no next keyframe (scene ends): left out of this stage",
                    len(records) - len(kept), len(records))
    return kept, {r.sample_token: code_tokens_text(frame_codes[r.next_sample_token]) for r in kept}


def structured_planning_answer(record: SampleRecord, tokens: PerceptionTokens, answer: AnswerConfig, seed: int,
                               qa: StageDataConfig, residual: bool = False, visual: str | None = None) -> str:
    """One record's structured answer (planning/structured.py): perception from `tokens`, the prediction
    from the planner input, the next frame's codes (`visual`, the block's inside text), the action label
    (vla_world.qa.labels.ego_action) and the GT trajectory (residual to the prompt's prior with `residual`)."""
    from vla_world.qa.facts import agent_facts
    from vla_world.qa.labels import ego_action

    agents = seen_agents(tokens.agent_classes.numpy(), tokens.agent_boxes.numpy())
    action = ego_action(record, agent_facts(record, qa.max_range_m)) if answer.action else None
    prior = ctra_prior(planner_input(record))
    return structured_answer(answer, record.ego_future, agents=agents, prediction=prior[0], action=action,
                             visual=visual, sample_token=record.sample_token, seed=seed,
                             prior=prior if residual else None)


def world_examples(records: list[SampleRecord], codes: dict[str, np.ndarray],
                   current_frame: bool = False) -> tuple[list[TrainingExample], int]:
    """The world stage's examples: the usual prompt, WORLD_QUESTION (after the current frame's own codes
    with `current_frame`), and the next keyframe's CAM_FRONT codes as a `<visual>` block; returns them
    and how many samples were left out (no next keyframe)."""
    kept = [r for r in records if r.has_next_frame]
    missing = [r.next_sample_token for r in kept if r.next_sample_token not in codes]
    if missing:
        raise KeyError(f"frame-code cache: no codes for next keyframe {missing[0]} ({len(missing)} missing); "
                       "re-run tools/export_frame_codes.py for this dataroot and split")
    examples = [TrainingExample(r.sample_token, world_question(codes[r.sample_token] if current_frame else None),
                                codes_text(codes[r.next_sample_token]), kind="world") for r in kept]
    return examples, len(records) - len(kept)


def load_world_codes(cfg: DataConfig, split: str) -> tuple[dict[str, np.ndarray], FrameCodeMeta]:
    """The split's frame codes ({sample_token: (K,) codes}) and their meta, from `cfg.frame_codes`."""
    return load_frame_codes(f"{cfg.frame_codes}/{split}.safetensors")


def planning_answer(record: SampleRecord, residual: bool = False) -> str:
    """The training answer of one record: absolute metres, or the residual to its prompt's prior."""
    prior = ctra_prior(planner_input(record)) if residual else None
    return format_trajectory(record.ego_future, prior=prior)


def kinematic_copy_records(records: list[SampleRecord], count: int, seed: int) -> list[SampleRecord]:
    """`count` pseudo-records whose ego state is perturbed and whose future IS the CTRA rollout of that state.

    Why: with a few hundred planning examples a tiny LLM memorises typical trajectories instead of
    learning to read the kinematic prior in its prompt. These examples (answer = prior) teach that
    skill; the real examples teach when to deviate. Perception tokens are those of the source record
    (looked up through `source_token`); the token of a pseudo-record is `<source>#kin<i>`.
    """
    rng = np.random.default_rng([seed, 7])
    out = []
    for i in range(count):
        source = records[int(rng.integers(len(records)))]
        speed = float(rng.uniform(0.0, 12.0))
        heading = np.pi / 2 + float(rng.normal(0.0, 0.05))
        velocity = speed * np.array([np.cos(heading), np.sin(heading)], np.float32)
        accel = float(rng.normal(0.0, 1.0)) * np.array([np.cos(heading), np.sin(heading)], np.float32)
        yaw_rate = float(rng.choice([0.0, rng.normal(0.0, 0.15)]))
        future = ctra_rollout(velocity, accel, yaw_rate).astype(np.float32)
        out.append(dataclasses.replace(
            source, sample_token=f"{source.sample_token}#kin{i}", ego_velocity=velocity, ego_acceleration=accel,
            ego_yaw_rate=yaw_rate, ego_speed=speed, ego_future=future, ego_future_mask=np.ones(len(future), bool)))
    return out


def source_token(sample_token: str) -> str:
    """The real sample a (pseudo-)record's perception tokens come from."""
    return sample_token.split("#kin", 1)[0]


def stage_examples(stage: str, source: str, records: list[SampleRecord], seed: int = 0,
                   qa: StageDataConfig | None = None, frame_codes: dict[str, np.ndarray] | None = None,
                   answer: AnswerConfig | None = None, tokens: dict[str, PerceptionTokens] | None = None,
                   residual: bool = False) -> list[TrainingExample]:
    """Examples of `stage`: our planning answers (form `answer`; structured ones read `tokens`, a `<visual>`
    block reads `frame_codes`), the world stage's next-frame codes (`frame_codes`), or vla_world.qa's
    builder (settings `qa`) for the QA stages."""
    if source in ("planning", "rewards"):  # grpo: the planning prompts; its answers are sampled
        return planning_examples(records, answer, tokens, seed, qa, residual, frame_codes)
    if source == "world":
        if frame_codes is None:
            raise ValueError(f"stage {stage!r}: its examples need the frame codes (load_world_codes)")
        return world_examples(records, frame_codes)[0]
    return [TrainingExample(e.sample_token, e.question, e.answer, e.focus_track_id, e.kind, dict(e.meta))
            for e in build_stage_examples(stage, records, seed=seed, config=qa)]


def load_stage_tokens(cfg: DataConfig, records: list[SampleRecord], split: str,
                      dataroot: str | Path | None = None) -> dict[str, PerceptionTokens]:
    """Perception tokens for `records`: from the split's cache file (of this `dataroot`'s world), or oracle tokens."""
    if cfg.token_source == "oracle":
        return oracle_token_map(records, cfg.perception_config)
    return load_tokens_for(f"{cfg.token_cache}/{split}.safetensors", [r.sample_token for r in records], dataroot)


def oracle_token_map(records: list[SampleRecord], perception_config: str | None = None) -> dict[str, PerceptionTokens]:
    from perception.config import PerceptionConfig
    from perception.oracle import oracle_tokens
    from vla_world.config import load_config

    cfg = load_config(perception_config, PerceptionConfig) if perception_config else PerceptionConfig()
    return {r.sample_token: oracle_tokens(r, cfg) for r in records}


def encode_examples(builder: SequenceBuilder, examples: list[TrainingExample], records: list[SampleRecord],
                    tokens: dict[str, PerceptionTokens], max_length: int) -> tuple[list[EncodedSample], Counter]:
    """Encode every example; returns the samples and the count of dropped ones per reason (logged)."""
    by_token = {r.sample_token: planner_input(r) for r in records}  # prompts see inputs only, never labels
    samples, dropped = [], Counter()
    for ex in examples:
        if ex.sample_token not in by_token or source_token(ex.sample_token) not in tokens:
            raise KeyError(f"example {ex.kind!r} names sample {ex.sample_token}, which is not among the "
                           "records/tokens of this split; the example builder and the records disagree")
        try:
            sample = builder.encode(by_token[ex.sample_token], tokens[source_token(ex.sample_token)], ex.question,
                                    ex.answer, ex.focus_track_id)
        except FocusNotDetected:
            dropped["focus agent not detected"] += 1
            continue
        if len(sample.input_ids) > max_length:
            raise ValueError(f"sample {ex.sample_token} ({ex.kind}): {len(sample.input_ids)} tokens > "
                             f"data.max_length {max_length}; raise data.max_length in the stage config")
        samples.append(sample)
    for reason, count in dropped.items():
        log.warning("dropped %d of %d examples: %s", count, len(examples), reason)
    return samples, dropped


class EncodedBatches:
    """Batches of examples encoded once up front (cached or oracle tokens: perception is not in the graph)."""

    def __init__(self, samples: list[EncodedSample], pad_id: int):
        self.samples, self.pad_id = samples, pad_id

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, indices: list[int]) -> dict:
        return collate([self.samples[i] for i in indices], self.pad_id)


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of one epoch: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def next_rank_batch(progress, epoch_batches: Callable[[int], list[np.ndarray]], rank: int, world: int) -> np.ndarray:
    """This process's share (`[rank::world]`) of the next global batch of the walk kept in `progress`
    (`epoch`, `batch_in_epoch`, advanced here), rolling over into the next epoch; every stage trainer
    walks its data this way, so a resumed run draws exactly the batches the uninterrupted one would."""
    batches = epoch_batches(progress.epoch)
    if progress.batch_in_epoch >= len(batches):
        progress.epoch += 1
        progress.batch_in_epoch = 0
        batches = epoch_batches(progress.epoch)
    batch = batches[progress.batch_in_epoch]
    progress.batch_in_epoch += 1
    return batch[rank::world]


def global_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Index arrays of one epoch's global batches (the last, short one is dropped only if empty)."""
    order = epoch_order(num_samples, seed, epoch)
    return [order[i:i + batch_size] for i in range(0, num_samples, batch_size)]
