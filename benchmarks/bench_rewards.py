"""Benchmark: what the reward verifiers give simple planners, and what one reward call costs.

Why: GRPO scores G answers per prompt every step, so a reward call must cost far less than
generating the answer, and the weights (docs/rewards.md) must rank the planners the tables rank:
the GT first, a copy of the prompt's CTRA prior above constant velocity, standing still last.
This prints, on one split, the mean of each term for the GT, standing still, constant velocity,
the CTRA prior and the kinematic predictor, then the time per 1000 calls with the target parsed
and its grid drawn once per prompt (G = 8 answers share it, as in planning/easyr1_reward.py)
next to parsing the JSON target on every call.

Run: ``.venv/bin/python benchmarks/bench_rewards.py --dataroot data/mini_world --split val``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from planning.baselines import constant_velocity
from planning.codec import format_trajectory
from planning.kinematic import ctra_prior, fit_kinematic, predict_kinematic
from planning.reward_targets import reward_target_of
from planning.rewards import RewardTarget, score_answer
from vla_world.data import load_records
from vla_world.data.planner_input import planner_input


def planners(train: list) -> dict:
    params = fit_kinematic(train)
    return {
        "GT": lambda r, t: t.ego_future,
        "stand still": lambda r, t: np.zeros((6, 2)),
        "constant velocity": lambda r, t: constant_velocity(planner_input(r)),
        "CTRA prior": lambda r, t: ctra_prior(planner_input(r)),
        "kinematic": lambda r, t: predict_kinematic(planner_input(r), params),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="data/mini_world")
    p.add_argument("--split", default="val")
    p.add_argument("--calls", type=int, default=1000)
    args = p.parse_args()
    train = load_records(args.dataroot, split="train", progress=False)
    records = [r for r in load_records(args.dataroot, split=args.split, progress=False) if r.ego_future_mask.any()]
    texts = [reward_target_of(r).to_json() for r in records]
    targets = [RewardTarget.from_json(t) for t in texts]
    print(f"{len(records)} {args.split} samples with a future; target JSON {np.mean([len(t) for t in texts]) / 1e3:.1f} kB on average")
    print("| planner | total | format | collision | accuracy | L2 (m) | colliding samples |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, plan in planners(train).items():
        scores = [score_answer(format_trajectory(plan(r, t)), t) for r, t in zip(records, targets)]
        mean = {k: np.mean([s.terms[k] for s in scores]) for k in ("format", "collision", "accuracy")}
        total = [s.total for s in scores]
        print(f"| {name} | {np.mean(total):.3f} ± {np.std(total):.3f} | {mean['format']:.3f} | {mean['collision']:.3f} | "
              f"{mean['accuracy']:.3f} | {np.mean([s.parts['accuracy']['l2_m'] for s in scores]):.2f} | "
              f"{sum(s.terms['collision'] < 1 for s in scores)} |")
    answers = [format_trajectory(constant_velocity(planner_input(r))) for r in records]
    start = time.perf_counter()
    for i in range(args.calls):
        k = (i // 8) % len(records)  # 8 answers per prompt share the parsed target
        if i % 8 == 0:
            target = RewardTarget.from_json(texts[k])
        score_answer(answers[k], target)
    shared = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(args.calls):
        score_answer(answers[i % len(records)], RewardTarget.from_json(texts[i % len(records)]))
    fresh = time.perf_counter() - start
    print(f"{args.calls} calls: {shared:.2f} s with one parsed target per 8 answers, {fresh:.2f} s parsing it every call "
          f"({fresh / shared:.1f}x)")


if __name__ == "__main__":
    main()
