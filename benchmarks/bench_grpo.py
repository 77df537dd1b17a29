"""GRPO step time at `tiny` for G = 4 and G = 8, split into generation / verifiers / update, on this CPU.

    python benchmarks/bench_grpo.py --checkpoint checkpoints/planning/last [--steps 2] [--prompts 4]

Real prompts (the train split's, with the tokens the checkpoint was trained on) and the trained
planner, because an untrained model writes numbers of any length and the rollouts' cost depends
on the answers. Each G runs the same prompts from the same start; the first step is a warm-up.
Also measured side by side: how often *free* sampling (transformers `generate`, do_sample, same
temperature / top-p, no template) writes an answer the format verifier accepts, against the
template-constrained sampler GRPO uses (1.0 by construction), and the share of zero-signal groups.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from planning.rewards import read_answer
from vla_world.config import load_config
from vla_world.data import load_records
from vla_world.model.vla import VLAModel, left_pad, padded_positions
from vla_world.training.config import StageConfig
from vla_world.training.grpo import GRPOTrainer, Reference, build_prompts, stage_tokens
from vla_world.training.model_setup import set_trainable
from vla_world.training.stages import stage_spec

ROOT = Path(__file__).resolve().parents[1]


def config(group_size: int, prompts: int) -> StageConfig:
    return load_config(ROOT / "configs/grpo/tiny.yaml", StageConfig,
                       {"grpo.group_size": group_size, "train.batch_size": prompts, "data.max_examples": 4 * prompts})


def time_steps(checkpoint: Path, cfg: StageConfig, prompts: list, steps: int) -> dict[str, float]:
    model = VLAModel.from_folder(checkpoint)
    set_trainable(model, stage_spec("grpo"))
    with tempfile.TemporaryDirectory() as out:
        trainer = GRPOTrainer(cfg, model, prompts, Reference(checkpoint, model), Accelerator(cpu=True), Path(out),
                              checkpoint)
        trainer.train_step()  # warm-up
        total = {"generate": 0.0, "score": 0.0, "update": 0.0}
        zero = []
        for _ in range(steps):
            metrics = trainer.train_step()
            zero.append(metrics["zero_signal"])
            for k, v in trainer.seconds.items():
                total[k] += v / steps
    return {**total, "zero_signal": float(np.mean(zero))}


@torch.no_grad()
def free_format_success(checkpoint: Path, prompts: list, cfg: StageConfig, samples: int) -> float:
    """Share of freely sampled answers (no template) that pass the format verifier."""
    model = VLAModel.from_folder(checkpoint).eval()
    ok = 0
    for seed, p in enumerate(prompts):
        torch.manual_seed(seed)
        ids, mask = left_pad([p.sample.input_ids] * samples, model.pad_id)
        out = model.llm.generate(inputs_embeds=model.embed(ids, [p.sample.features] * samples), attention_mask=mask,
                                 position_ids=padded_positions(mask), max_new_tokens=112, do_sample=True,
                                 temperature=cfg.grpo.temperature, top_p=cfg.grpo.top_p, eos_token_id=model.eos_id,
                                 pad_token_id=model.pad_id)
        ok += sum(read_answer(model.decode(model._until_eos(row.tolist()))).error is None for row in out)
    return ok / (samples * len(prompts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/planning/last", help="a trained planning checkpoint")
    p.add_argument("--dataroot", default="data/mini_world")
    p.add_argument("--steps", type=int, default=2, help="timed steps per G (after one warm-up step)")
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    args = p.parse_args()
    torch.set_num_threads(1)
    checkpoint = Path(args.checkpoint)
    base = config(4, args.prompts)
    records = load_records(args.dataroot, split="train", progress=False)
    tokens = stage_tokens(base, records, args.dataroot, checkpoint)
    prompts = build_prompts(base, VLAModel.from_folder(checkpoint), records, tokens)
    results = {}
    for g in (4, 8):
        r = time_steps(checkpoint, config(g, args.prompts), prompts, args.steps)
        step = r["generate"] + r["score"] + r["update"]
        results[g] = step
        print(f"G={g}: {step:6.1f} s/step ({args.prompts} prompts x {g} answers): generation {r['generate'] / step:4.0%}"
              f"  verifiers {r['score'] / step:4.0%}  update {r['update'] / step:4.0%}  "
              f"zero-signal groups {r['zero_signal']:.2f}")
    print(f"ratio step time G=8 / G=4: {results[8] / results[4]:.2f}")
    free = free_format_success(checkpoint, prompts[:args.prompts], base, 4)
    print(f"format success, {args.prompts} prompts x 4 samples at temperature {base.grpo.temperature}, "
          f"top-p {base.grpo.top_p}: free sampling {free:.2f}, template-constrained sampling 1.00")


if __name__ == "__main__":
    main()
