"""Benchmark: vectorised planning metrics vs the plain per-sample loop, side by side in one run.

Why: `planning.metrics` claims the reference numbers at a fraction of the cost of the reference
repositories' per-sample loops. This script measures both on a nuScenes-val-sized random set
(6019 samples, boxy random occupancy, ~15 % of samples with a short future and 255 tail frames) and
prints, per convention, the wall time of each, the speed-up and the largest difference of any
reported value (collisions must differ by 0; L2 by float rounding only). `--failed 0.05` marks a
random 5 % of the samples as failed answers (the evaluator's failure policy, `failed=`), so the
failure path is checked against the loop too.

Run: ``.venv/bin/python benchmarks/bench_metrics.py`` (about 1.5 GB of RAM for the occupancy;
``--samples 1000`` for a quick look).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from planning.metrics import CONVENTIONS, planning_metrics
from planning.reference_loop import reference_planning_metrics

NUSCENES_VAL_SAMPLES = 6019


def random_dataset(num: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pred, gt (N, 6, 2) float32 metres (LiDAR frame), gt_mask (N, 6), occupancy (N, 6, 200, 200) uint8."""
    rng = np.random.default_rng(seed)
    speed = rng.uniform(0, 12, num)[:, None]
    heading = rng.normal(0, 0.15, num)[:, None]
    t = 0.5 * np.arange(1, 7)[None]
    gt = np.stack([speed * t * np.sin(heading), speed * t * np.cos(heading)], -1).astype(np.float32)
    pred = (gt + rng.normal(0, 0.3, gt.shape) * t[..., None]).astype(np.float32)
    mask = np.ones((num, 6), np.int64)
    short = rng.random(num) < 0.15  # samples near a scene end
    valid = np.where(short, rng.integers(1, 6, num), 6)
    occupancy = np.zeros((num, 6, 200, 200), np.uint8)
    for i in range(num):
        mask[i, valid[i]:] = 0
        gt[i, valid[i]:] = 0
        occupancy[i, valid[i]:] = 255
        for r, c, h, w in zip(rng.integers(90, 140, 8), rng.integers(85, 115, 8), rng.integers(3, 10, 8), rng.integers(2, 5, 8)):
            occupancy[i, : valid[i], r : r + h, c : c + w] = 1  # ~ a car, 1.5-5 m x 1-2.5 m, mostly ahead
    return pred, gt, mask, occupancy


def max_difference(fast: dict, slow: dict, keys: list[str]) -> float:
    """Largest absolute difference over the values (scalars or per-step lists) under `keys`."""
    return max(float(np.max(np.abs(np.asarray(fast[k]) - np.asarray(slow[k])))) for k in keys)


def horizon_keys(name: str) -> list[str]:
    return [f"{name}_1s", f"{name}_2s", f"{name}_3s", f"{name}_avg"]


def timed(fn, *args) -> tuple[dict, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=NUSCENES_VAL_SAMPLES, help="number of samples (default: nuScenes val, 6019)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic dataset")
    parser.add_argument("--conventions", nargs="+", default=list(CONVENTIONS), choices=CONVENTIONS, help="conventions to time")
    parser.add_argument("--failed", type=float, default=0.0, metavar="FRACTION",
                        help="share of samples scored as failed answers (default: 0, the references' own numbers)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # nothing here uses torch, but keep the benchmark single-threaded like the rest

    pred, gt, mask, occupancy = random_dataset(args.samples, args.seed)
    failed = np.random.default_rng(args.seed + 1).random(args.samples) < args.failed
    pred[failed] = 0.0  # what the evaluator passes for a failed answer: the zero trajectory
    print(f"{args.samples} samples, occupancy {occupancy.nbytes / 2**30:.2f} GiB, {int((mask == 0).any(1).sum())} with a short future, "
          f"{int(failed.sum())} failed")
    print("d = vectorised - loop; col per step: collision counts / N (must be 0); col @k: the 1/2/3 s and avg values")
    print(
        f"{'convention':<14} {'vectorised s':>12} {'loop s':>8} {'speed-up':>9} {'|d col/step|':>13} {'|d col @k|':>11}"
        f" {'|d obj_col|':>12} {'|d L2| m':>9} {'col_avg %':>10} {'N':>5}"
    )
    for convention in args.conventions:
        fast, fast_s = timed(planning_metrics, pred, gt, mask, occupancy, convention, failed)
        slow, slow_s = timed(reference_planning_metrics, pred, gt, mask, occupancy, convention, failed)
        obj = max_difference(fast, slow, ["obj_col_per_step", *horizon_keys("obj_col")]) if "obj_col_avg" in fast else float("nan")
        l2 = max_difference(fast, slow, ["L2_per_step", *horizon_keys("L2")])
        print(
            f"{convention:<14} {fast_s:>12.3f} {slow_s:>8.2f} {slow_s / fast_s:>8.1f}x"
            f" {max_difference(fast, slow, ['col_per_step']):>13.1e} {max_difference(fast, slow, horizon_keys('col')):>11.1e}"
            f" {obj:>12.1e} {l2:>9.1e} {100 * fast['col_avg']:>10.3f} {fast['num_samples']:>5}"
        )


if __name__ == "__main__":
    main()
