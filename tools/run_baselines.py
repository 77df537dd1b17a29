"""Write prediction files for the planning baselines on a split.

    python tools/run_baselines.py --dataroot data/mini_world --split val --out outputs/baselines

Fits what needs fitting on --train-split (the kinematic predictor's command templates and lambda,
the Ego-MLP's weights, once per --seeds entry; config configs/baselines/ego_mlp.yaml), then writes
  constant_velocity.json  kinematic.json  ctra_prior.json     (predictions, LiDAR frame, metres)
  ego_mlp_seed{N}.json per seed, and ego_mlp.json = the first seed (the file earlier versions wrote)
  kinematic_params.json   ego_mlp/ (checkpoint of the first seed), ego_mlp_seed{N}/ (one per seed)
`ctra_prior.json` is exactly the CTRA rollout the planning prompt shows (two decimals): a planner
that copies its prompt scores that row. Each Ego-MLP file carries its seed as metadata, so
    python tools/eval_planning.py --pred outputs/baselines/ego_mlp_seed*.json --names Ego-MLP Ego-MLP Ego-MLP
shows one row, mean ± std over the seeds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

from planning.baselines import (
    EgoMLPConfig,
    constant_velocity,
    predict_ego_mlp,
    train_ego_mlp,
)
from planning.codec import format_number
from planning.kinematic import ctra_prior, fit_kinematic, predict_kinematic
from planning.predictions import save_predictions
from vla_world.checkpoint import save_checkpoint
from vla_world.config import ConfigError, config_to_dict, load_config, parse_overrides
from vla_world.data.planner_input import PlannerInput, planner_inputs

DEFAULT_SEEDS = (0, 1, 2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: auto)")
    p.add_argument("--split", default="val", help="split to predict (default: val)")
    p.add_argument("--train-split", default="train", help="split to fit the kinematic predictor and Ego-MLP on")
    p.add_argument("--config", default="configs/baselines/ego_mlp.yaml", help="Ego-MLP config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an Ego-MLP config field, e.g. --set epochs=10 (repeatable; --seeds sets the seed)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), metavar="N",
                   help="Ego-MLP training seeds, one ego_mlp_seed{N}.json each (default: 0 1 2)")
    p.add_argument("--out", default="outputs/baselines", help="folder for the prediction files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def prompt_prior(inp: PlannerInput) -> np.ndarray:
    """(6, 2) the CTRA prior exactly as the prompt prints it: each number through `format_number` (2 decimals)."""
    return np.array([[float(format_number(v)) for v in point] for point in ctra_prior(inp)])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The Ego-MLP is tiny: thread start-up costs more than it saves, and the laptop has two cores.
    torch.set_num_threads(1)
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds {args.seeds}: each seed once (a repeated seed would shrink the reported std)")
    try:
        cfg = load_config(args.config, EgoMLPConfig, parse_overrides(args.set))
    except ConfigError as exc:
        raise SystemExit(str(exc)) from exc
    from vla_world.data import RecordError, load_records
    from vla_world.data.fingerprint import data_identity

    progress = not args.quiet
    try:
        train = load_records(args.dataroot, version=args.version, split=args.train_split, progress=progress)
        target = load_records(args.dataroot, version=args.version, split=args.split, progress=progress)
    except RecordError as exc:
        raise SystemExit(str(exc)) from exc
    out = Path(args.out)
    log = (lambda *_: None) if args.quiet else print
    inputs = planner_inputs(target)  # what the planners see: no future, no GT boxes

    world = data_identity(args.dataroot, args.version)  # the evaluator refuses these files on another world
    save_predictions(out / "constant_velocity.json", {i.sample_token: constant_velocity(i) for i in inputs}, meta=world)
    save_predictions(out / "ctra_prior.json", {i.sample_token: prompt_prior(i) for i in inputs}, meta=world)

    params = fit_kinematic(train)
    params.save(out / "kinematic_params.json")
    save_predictions(out / "kinematic.json", {i.sample_token: predict_kinematic(i, params) for i in inputs}, meta=world)
    log(f"kinematic: lambda = {params.fusion_weight:.2f}, train L2 = {params.train_l2:.3f} m on {len(train)} samples")

    for seed in args.seeds:
        write_ego_mlp(replace(cfg, seed=seed), train, inputs, out, progress, log, world)
    first = args.seeds[0]
    shutil.copyfile(out / f"ego_mlp_seed{first}.json", out / "ego_mlp.json")  # what earlier versions wrote
    shutil.rmtree(out / "ego_mlp", ignore_errors=True)
    shutil.copytree(out / f"ego_mlp_seed{first}", out / "ego_mlp")
    log(f"wrote constant_velocity.json, ctra_prior.json, kinematic.json, ego_mlp_seed{{{','.join(map(str, args.seeds))}}}.json "
        f"(ego_mlp.json = seed {first}) for {len(target)} {args.split} samples to {out}")
    return 0


def write_ego_mlp(cfg: EgoMLPConfig, train: list, inputs: list[PlannerInput], out: Path, progress: bool, log,
                  world: dict | None = None) -> None:
    """Train one Ego-MLP (seed `cfg.seed`), write ego_mlp_seed{N}.json (seed in its metadata) and its checkpoint."""
    start = time.perf_counter()
    model = train_ego_mlp(train, cfg, progress=progress)
    save_predictions(out / f"ego_mlp_seed{cfg.seed}.json", predict_ego_mlp(model, inputs),
                     meta={"method": "Ego-MLP", "seed": cfg.seed, **(world or {})})
    save_checkpoint(out / f"ego_mlp_seed{cfg.seed}", model.state_dict(), state={"train_samples": len(train)},
                    extra_files={"config.yaml": yaml.safe_dump(config_to_dict(cfg), sort_keys=False)})
    log(f"Ego-MLP seed {cfg.seed}: trained on {len(train)} samples in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
