"""Training throughput of the `tiny` VLA per LLM stage on this CPU (1 thread), in tokens per second.

    python benchmarks/bench_llm_training.py [--steps 6] [--batch 8]

Data: synthetic records with perception-sized random tokens (36 scene, 8 agent, 12 map tokens of
width 64, the tiny perception config's counts) and planning-length answers, so it runs without a
dataset. Stages differ in what learns (align: projectors only; the others: projectors + LLM), so
the ratio printed is the cost of back-propagating into the LLM, measured side by side.
"""

from __future__ import annotations

import argparse
import time

import torch

from perception.tokens import PerceptionTokens
from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.model.sequence import PLANNING_QUESTION, SYSTEM_PROMPT
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.vla import VLAModel
from vla_world.training.data import collate, planning_examples
from vla_world.training.model_setup import set_trainable
from vla_world.training.stages import STAGES

WIDTH, SCENE, AGENTS, MAPS = 64, 36, 8, 12


def random_tokens(seed: int) -> PerceptionTokens:
    g = torch.Generator().manual_seed(seed)
    return PerceptionTokens(scene=torch.randn(SCENE, WIDTH, generator=g),
                            agents=torch.randn(AGENTS, WIDTH, generator=g),
                            map=torch.randn(MAPS, WIDTH, generator=g), agent_boxes=torch.zeros(AGENTS, 7),
                            agent_classes=torch.zeros(AGENTS, dtype=torch.long),
                            agent_track_ids=torch.arange(AGENTS), map_types=torch.zeros(MAPS, dtype=torch.long),
                            map_points=torch.zeros(MAPS, 10, 2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per stage (after 1 warm-up step)")
    p.add_argument("--batch", type=int, default=8, help="examples per step")
    args = p.parse_args()
    torch.set_num_threads(1)
    records = [synthetic_record(speed=2.0 + 0.7 * i, token=f"s{i}") for i in range(args.batch)]
    examples = planning_examples(records)
    tokenizer = train_tokenizer([SYSTEM_PROMPT, PLANNING_QUESTION] + [e.answer for e in examples] * 20, 4096)
    results = {}
    for stage, spec in STAGES.items():
        model = VLAModel.create_tiny(tokenizer, WIDTH)
        set_trainable(model, spec)
        samples = [model.sequence_builder.encode(planner_input(r), random_tokens(i), e.question, e.answer)
                   for i, (r, e) in enumerate(zip(records, examples))]
        batch = collate(samples, model.pad_id)
        optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        tokens = int(batch["attention_mask"].sum())
        for step in range(args.steps + 1):
            if step == 1:
                start = time.perf_counter()
            loss = model(batch["input_ids"], batch["attention_mask"], batch["features"], batch["labels"]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        seconds = (time.perf_counter() - start) / args.steps
        results[stage] = tokens / seconds
        print(f"{stage:9s} {seconds * 1000:7.0f} ms/step  {tokens / seconds:7.0f} tok/s  "
              f"(batch {args.batch} x {batch['input_ids'].shape[1]} tokens)")
    print(f"ratio align / planning tok/s (projectors-only vs full back-prop): "
          f"{results['align'] / results['planning']:.2f}x")


if __name__ == "__main__":
    main()
