"""Cost of fine-tuning perception in the planning stage: seconds per step, cached vs online tokens.

    python benchmarks/bench_online_planning.py [--steps 6] [--init checkpoints/motion/last] \
        [--perception checkpoints/perception/last] [--dataroot data/mini_world]

Both trainers start from the same VLA checkpoint and the same perception, on the same batches of
configs/planning/tiny.yaml (batch 8): "cached" encodes the detached tokens once (what
`token_source: cache` does), "online" runs the perception tail with gradients every step (plus
the perception loss when the config's `train.perception_loss_weight` is set). Steps
alternate between the two so load from other processes hits both alike; the ratio of median step
times is the factor by which online mode lengthens the planning stage. The frozen camera features
are built (or reused) before timing starts. One thread.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from vla_world.config import load_config
from vla_world.data import load_records
from vla_world.model.vla import VLAModel
from vla_world.training.config import StageConfig
from vla_world.training.data import EncodedBatches, encode_examples, planning_examples
from vla_world.training.model_setup import set_trainable
from vla_world.training.online_perception import OnlineBatches, OnlinePerception
from vla_world.training.runner import StageTrainer
from vla_world.training.stages import stage_spec


def trainers(args: argparse.Namespace) -> dict[str, tuple[StageTrainer, list]]:
    cfg = load_config("configs/planning/tiny.yaml", StageConfig, {"data.token_source": "online"})
    spec = stage_spec("planning")
    records = load_records(args.dataroot, split="train", progress=False)
    online = OnlinePerception.load(args.perception, records, args.dataroot)
    online.loss_weight = cfg.train.perception_loss_weight
    online.set_trainable()
    tokens = online.all_tokens(records)
    examples = planning_examples(records)
    out = {}
    for name in ("cached", "online"):
        model = VLAModel.from_folder(args.init)
        set_trainable(model, spec)
        if name == "cached":
            samples, _ = encode_examples(model.sequence_builder, examples, records, tokens, cfg.data.max_length)
            trainer = StageTrainer(cfg, spec, model, EncodedBatches(samples, model.pad_id), Accelerator(cpu=True),
                                   Path("/tmp/bench_online") / name)
        else:
            batches = OnlineBatches(examples, records, online, model.sequence_builder, model.pad_id,
                                    cfg.data.max_length)
            trainer = StageTrainer(cfg, spec, model, batches, Accelerator(cpu=True), Path("/tmp/bench_online") / name,
                                   online)
        out[name] = (trainer, *trainer.prepare())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="timed steps per mode (after one warm-up step each)")
    p.add_argument("--init", default="checkpoints/motion/last", help="VLA checkpoint both trainers start from")
    p.add_argument("--perception", default="checkpoints/perception/last", help="perception checkpoint")
    p.add_argument("--dataroot", default="data/mini_world")
    args = p.parse_args()
    torch.set_num_threads(1)
    runs = trainers(args)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for step in range(args.steps + 1):
        for name, (trainer, model, optimizers) in runs.items():
            start = time.perf_counter()
            trainer.train_step(model, optimizers)
            if step:  # the first step of each pays one-off costs (allocations, lazy imports)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:>7}: {median:.2f} s/step (median of {args.steps}; batch 8, 1 thread)")
    print(f"online / cached: {medians['online'] / medians['cached']:.2f}x per planning step")


if __name__ == "__main__":
    main()
