"""Write prediction files for the three planning baselines on a split.

    python tools/run_baselines.py --dataroot data/mini_world --split val --out outputs/baselines

Fits what needs fitting on --train-split (the kinematic predictor's command templates and lambda,
the Ego-MLP's weights; config configs/baselines/ego_mlp.yaml), then writes
  constant_velocity.json  kinematic.json  ego_mlp.json   (predictions, LiDAR frame, metres)
  kinematic_params.json   ego_mlp/ (checkpoint folder: model.safetensors, state.json, config.yaml)
Score them with tools/eval_planning.py --pred outputs/baselines/*.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import yaml

from planning.baselines import (
    EgoMLPConfig,
    constant_velocity,
    predict_ego_mlp,
    train_ego_mlp,
)
from planning.kinematic import fit_kinematic, predict_kinematic
from planning.predictions import save_predictions
from vla_world.checkpoint import save_checkpoint
from vla_world.config import ConfigError, config_to_dict, load_config, parse_overrides


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: auto)")
    p.add_argument("--split", default="val", help="split to predict (default: val)")
    p.add_argument("--train-split", default="train", help="split to fit the kinematic predictor and Ego-MLP on")
    p.add_argument("--config", default="configs/baselines/ego_mlp.yaml", help="Ego-MLP config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an Ego-MLP config field, e.g. --set epochs=10 (repeatable)")
    p.add_argument("--out", default="outputs/baselines", help="folder for the prediction files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The Ego-MLP is tiny: thread start-up costs more than it saves, and the laptop has two cores.
    torch.set_num_threads(1)
    try:
        cfg = load_config(args.config, EgoMLPConfig, parse_overrides(args.set))
    except ConfigError as exc:
        raise SystemExit(str(exc)) from exc
    from vla_world.data import RecordError, load_records

    progress = not args.quiet
    try:
        train = load_records(args.dataroot, version=args.version, split=args.train_split, progress=progress)
        target = load_records(args.dataroot, version=args.version, split=args.split, progress=progress)
    except RecordError as exc:
        raise SystemExit(str(exc)) from exc
    out = Path(args.out)
    log = (lambda *_: None) if args.quiet else print

    save_predictions(out / "constant_velocity.json", {r.sample_token: constant_velocity(r) for r in target})

    params = fit_kinematic(train)
    params.save(out / "kinematic_params.json")
    save_predictions(out / "kinematic.json", {r.sample_token: predict_kinematic(r, params) for r in target})
    log(f"kinematic: lambda = {params.fusion_weight:.2f}, train L2 = {params.train_l2:.3f} m on {len(train)} samples")

    start = time.perf_counter()
    model = train_ego_mlp(train, cfg, progress=progress)
    save_predictions(out / "ego_mlp.json", predict_ego_mlp(model, target))
    save_checkpoint(out / "ego_mlp", model.state_dict(), state={"train_samples": len(train)},
                    extra_files={"config.yaml": yaml.safe_dump(config_to_dict(cfg), sort_keys=False)})
    log(f"Ego-MLP: trained on {len(train)} samples in {time.perf_counter() - start:.1f} s")
    log(f"wrote constant_velocity.json, kinematic.json, ego_mlp.json for {len(target)} {args.split} samples to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
