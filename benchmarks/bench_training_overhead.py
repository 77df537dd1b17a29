"""Training overhead: one optimizer step of the project's stage trainer vs bare transformers on the same shapes.

    python benchmarks/bench_training_overhead.py [--steps 10] [--batch 8]

Project: `vla_world.training.runner.StageTrainer.train_step` of the planning stage at `tiny` size
(configs/planning/tiny.yaml with cached tokens: batch 8, AdamW, warm-up + cosine learning rate,
gradient clipping at 1.0), through accelerate, on planning examples whose prompts hold 36 scene,
8 agent and 12 map tokens; the step includes collating the batch, splicing the projected
perception tokens into `inputs_embeds`, and the projectors.
Bare: a transformers `Qwen2ForCausalLM` of the same configuration, forward with labels +
backward + `torch.optim.AdamW` step on the same (batch, sequence length) ids, mask and labels,
so the same number of tokens; "bare + clip" adds the one gradient-norm clip the project's
config asks for, to show what of the difference is that setting.

Steps alternate (project, bare, bare + clip, project, ...) after one warm-up step each, so load
from other processes hits all alike; figures are medians, the ratio is project / bare. One thread.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from bench_llm_training import random_tokens

from vla_world.config import load_config
from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.model.llm import TinyLLMSize, build_tiny_llm
from vla_world.model.sequence import PLANNING_QUESTION, SYSTEM_PROMPT, EncodedSample
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.vla import VLAModel
from vla_world.training.config import StageConfig
from vla_world.training.data import collate, planning_examples
from vla_world.training.model_setup import set_trainable
from vla_world.training.runner import StageTrainer
from vla_world.training.stages import stage_spec

WIDTH = 64


def samples_and_model(batch: int) -> tuple[VLAModel, list[EncodedSample]]:
    records = [synthetic_record(speed=2.0 + 0.7 * i, token=f"s{i}") for i in range(batch)]
    examples = planning_examples(records)
    tokenizer = train_tokenizer([SYSTEM_PROMPT, PLANNING_QUESTION] + [e.answer for e in examples] * 20, 4096)
    model = VLAModel.create_tiny(tokenizer, WIDTH)
    samples = [model.sequence_builder.encode(planner_input(r), random_tokens(i), e.question, e.answer)
               for i, (r, e) in enumerate(zip(records, examples))]
    return model, samples


def project_step(model: VLAModel, samples: list[EncodedSample], batch: int) -> Callable[[], None]:
    """One `StageTrainer.train_step` per call; every step's batch is all `batch` samples (one per epoch)."""
    cfg = load_config("configs/planning/tiny.yaml", StageConfig,
                      {"data.token_source": "cache", "train.batch_size": batch, "train.epochs": 1000.0})
    spec = stage_spec("planning")
    set_trainable(model, spec)
    trainer = StageTrainer(cfg, spec, model, samples, Accelerator(cpu=True), Path("/tmp/bench_training_overhead"))
    prepared, optimizers = trainer.prepare()
    return lambda: trainer.train_step(prepared, optimizers)


def bare_step(vocab_size: int, batch: dict, lr: float, clip: float) -> Callable[[], None]:
    """Forward + backward + AdamW of a plain Qwen2ForCausalLM on `batch`'s ids (clip > 0: clip the norm too)."""
    llm = build_tiny_llm(vocab_size, TinyLLMSize()).train()
    optimizer = torch.optim.AdamW(llm.parameters(), lr=lr)

    def step() -> None:
        loss = llm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(llm.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    return step


def seconds(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed steps of each (after one warm-up step)")
    p.add_argument("--batch", type=int, default=8, help="examples per step (configs/planning/tiny.yaml: 8)")
    args = p.parse_args()
    torch.set_num_threads(1)
    model, samples = samples_and_model(args.batch)
    batch = collate(samples, model.pad_id)
    steps = {"project": project_step(model, samples, args.batch),
             "bare": bare_step(len(model.tokenizer), batch, 2e-3, 0.0),
             "bare + clip": bare_step(len(model.tokenizer), batch, 2e-3, 1.0)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps + 1):
        for name, step in steps.items():
            times[name].append(seconds(step))
    med = {name: statistics.median(t[1:]) for name, t in times.items()}
    shape = tuple(batch["input_ids"].shape)
    print(f"batch {shape[0]} x {shape[1]} tokens ({int(batch['attention_mask'].sum())} real), {args.steps} steps each")
    for name, value in med.items():
        print(f"{name:>12}: {value * 1000:6.0f} ms/step (median; range {min(times[name][1:]) * 1000:.0f}-"
              f"{max(times[name][1:]) * 1000:.0f})")
    print(f"project / bare: {med['project'] / med['bare']:.3f}  (overhead {100 * (med['project'] / med['bare'] - 1):+.1f} %)")
    print(f"project / bare + clip: {med['project'] / med['bare + clip']:.3f}")


if __name__ == "__main__":
    main()
