"""World-stage training throughput of the `tiny` VLA beside the planning stage's, same batch size, one run.

    python benchmarks/bench_world_stage.py [--steps 6] [--batch 8] [--codebook 256] [--codes 60]

Both stages train projectors + LLM on one model shape (hidden 256, 4 layers, BPE vocabulary 4096,
grown by the visual tokens: codebook 256 + 2 delimiters, the tiny frame tokenizer's; 60 codes per
frame, its 6 x 10 grid). Prompts are the real planning prompt (synthetic records, perception-sized
random tokens: 36 scene, 8 agent, 12 map); answers: planning = the trajectory text, world =
`<visual>` + 60 random codes + `</visual>`. The world step runs the segment-weighted loss
(vla_world/training/losses.py: a full logits tensor + our cross entropy), the planning step
transformers' own loss, as the runner does for a model with / without visual tokens. Tokens/s
counts every non-padding token of the batch; steps alternate world / planning so load from other
processes hits both alike. One thread. Prints the ratio world / planning tokens/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from bench_llm_training import WIDTH, random_tokens

from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.model.sequence import PLANNING_QUESTION, SYSTEM_PROMPT, WORLD_QUESTION
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.visual_tokens import VisualSpec, codes_text
from vla_world.model.vla import VLAModel
from vla_world.training.config import LossConfig
from vla_world.training.data import collate, planning_examples
from vla_world.training.losses import weighted_lm_loss
from vla_world.training.model_setup import set_trainable
from vla_world.training.stages import stage_spec


def batches(model: VLAModel, records: list, codes: int) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    plans = planning_examples(records)
    answers = {"planning": [(PLANNING_QUESTION, e.answer) for e in plans],
               "world": [(WORLD_QUESTION, codes_text(rng.integers(0, model.visual.codebook_size, codes)))
                         for _ in records]}
    return {stage: collate([model.sequence_builder.encode(planner_input(r), random_tokens(i), q, a)
                            for i, (r, (q, a)) in enumerate(zip(records, pairs))], model.pad_id)
            for stage, pairs in answers.items()}


def step(model: VLAModel, batch: dict, optimizer: torch.optim.Optimizer, weighted: bool) -> None:
    out = model(batch["input_ids"], batch["attention_mask"], batch["features"], None if weighted else batch["labels"])
    loss = weighted_lm_loss(out.logits, batch["labels"], model.visual_ids.codes, LossConfig()) if weighted else out.loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per stage (after 1 warm-up step each)")
    p.add_argument("--batch", type=int, default=8, help="examples per step")
    p.add_argument("--codebook", type=int, default=256, help="frame-tokenizer codebook entries")
    p.add_argument("--codes", type=int, default=60, help="codes per frame")
    args = p.parse_args()
    torch.set_num_threads(1)
    records = [synthetic_record(speed=2.0 + 0.7 * i, token=f"s{i}") for i in range(args.batch)]
    texts = [SYSTEM_PROMPT, PLANNING_QUESTION, WORLD_QUESTION] + [e.answer for e in planning_examples(records)] * 20
    model = VLAModel.create_tiny(train_tokenizer(texts, 4096), WIDTH)
    model.grow_visual(VisualSpec(args.codebook, args.codes))
    set_trainable(model, stage_spec("world"))  # planning without online perception trains the same parts
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    data = batches(model, records, args.codes)
    seconds: dict[str, list[float]] = {"world": [], "planning": []}
    for i in range(args.steps + 1):
        for stage, batch in data.items():
            start = time.perf_counter()
            step(model, batch, optimizer, weighted=stage == "world")
            if i:
                seconds[stage].append(time.perf_counter() - start)
    rates = {}
    for stage, batch in data.items():
        median = statistics.median(seconds[stage])
        tokens = int(batch["attention_mask"].sum())
        rates[stage] = tokens / median
        print(f"{stage:9s} {median * 1000:7.0f} ms/step  {rates[stage]:7.0f} tok/s  "
              f"(batch {args.batch} x {batch['input_ids'].shape[1]} tokens, {tokens} real)")
    print(f"ratio world / planning tok/s: {rates['world'] / rates['planning']:.2f}x")


if __name__ == "__main__":
    main()
