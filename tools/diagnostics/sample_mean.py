"""Planning diagnostic (issue 12): is the planner only mode-seeking?

Decodes each prompt K times by constrained sampling and writes the mean of the K trajectories (the
posterior mean, which minimises expected L2) as a prediction file, instead of greedy's single digit
path. If the mean scores much better than greedy, the model knows the correction and greedy hides
it; if worse, the corrections are not learned. Score the file with
`tools/eval_planning.py --pred OUT.json --split SPLIT`.

    python tools/diagnostics/sample_mean.py CHECKPOINT --samples 8 --out OUT.json [--split val]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from planning.predictions import save_predictions
from vla_world.constrained import constrained_sample_ids
from vla_world.data import load_records
from vla_world.data.planner_input import planner_input
from vla_world.inference import (
    Planner,
    load_source_tokens,
    resolve_token_source,
    to_plan_result,
)
from vla_world.model.sequence import PLANNING_QUESTION


def mean_trajectories(planner: Planner, records: list, tokens: dict, samples: int, temperature: float,
                      chunk: int = 4) -> dict[str, np.ndarray]:
    """Sample token -> mean of `samples` constrained trajectories (ego frame, metres)."""
    model, gen, out = planner.model, torch.Generator().manual_seed(0), {}
    for start in tqdm(range(0, len(records), chunk), desc="sample"):
        batch = records[start:start + chunk]
        inputs = [planner_input(r) for r in batch]
        prompts = [model.sequence_builder.encode(i, tokens[r.sample_token], PLANNING_QUESTION)
                   for i, r in zip(inputs, batch)]
        priors = [planner.answer_prior(i) for i in inputs]
        answers = constrained_sample_ids(model, [p.input_ids for p in prompts for _ in range(samples)],
                                         [p.features for p in prompts for _ in range(samples)], temperature,
                                         1.0, gen, priors=[q for q in priors for _ in range(samples)])
        for j, record in enumerate(batch):
            mine = answers[j * samples:(j + 1) * samples]
            out[record.sample_token] = np.mean([to_plan_result(model.decode(a.ids), priors[j]).trajectory
                                                for a in mine], axis=0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a planning checkpoint folder (.../last)")
    p.add_argument("--samples", type=int, default=8, help="constrained samples per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--split", default="val")
    p.add_argument("--dataroot", default="data/mini_world")
    p.add_argument("--tokens", default=None,
                   help="'oracle' or a token cache file (default: the source the checkpoint was trained on)")
    p.add_argument("--out", type=Path, required=True, help="prediction JSON to write")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    records = load_records(a.dataroot, split=a.split, progress=False)
    source = resolve_token_source(a.checkpoint, a.split, a.tokens)
    tokens = load_source_tokens(source, a.checkpoint, records, a.dataroot)
    means = mean_trajectories(Planner.from_checkpoint(a.checkpoint), records, tokens, a.samples, a.temperature)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_predictions(a.out, means, meta={"checkpoint": a.checkpoint, "token_source": source.label,
                                         "decoding": f"mean of {a.samples} constrained samples, T={a.temperature}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
