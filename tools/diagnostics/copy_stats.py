"""Planning diagnostic (issue 12): how many answers of a prediction file copy the CTRA prior exactly.

A residual planner that writes all-zero corrections returns its prior unchanged. This counts those
answers (largest waypoint difference under 6 mm, below the codec's 1 cm resolution) and prints the
mean 3 s L2 of the answers and of the prior over the samples with a full logged future.
Frames and units: ego (LiDAR_TOP) frame, metres.

    python tools/diagnostics/copy_stats.py val outputs/exp/NAME/last.json [more.json ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from planning.kinematic import ctra_prior
from planning.predictions import load_predictions
from vla_world.data import load_records
from vla_world.data.planner_input import planner_input


def summarise(path: Path, records: dict) -> str:
    """One line: answers equal to the prior, and mean 3 s L2 of answers and prior (full futures only)."""
    predictions = load_predictions(path)  # the evaluator's reader: text answers parse through the codec
    copies, l2_answer, l2_prior = 0, [], []
    for token, points in predictions.trajectories.items():
        record = records[token]
        prior = ctra_prior(planner_input(record))
        copies += int(np.abs(points - prior).max() < 0.006)
        if record.ego_future_mask.all():
            l2_answer.append(np.linalg.norm(points - record.ego_future, axis=1)[5])
            l2_prior.append(np.linalg.norm(prior - record.ego_future, axis=1)[5])
    total = len(predictions.tokens)
    return (f"{path}: copies prior {copies} of {total} ({len(predictions.failures)} failed to parse); "
            f"L2@3s answer {np.mean(l2_answer):.3f} m, prior {np.mean(l2_prior):.3f} m")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("split", help="split the prediction files cover (val, test, ...)")
    p.add_argument("predictions", nargs="+", type=Path, help="prediction JSON files (tools/eval_planning.py writes them)")
    p.add_argument("--dataroot", default="data/mini_world")
    a = p.parse_args(argv)
    records = {r.sample_token: r for r in load_records(a.dataroot, split=a.split, progress=False)}
    for path in a.predictions:
        print(summarise(path, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
