"""Train one stage of VLA-World: `python tools/train.py --stage NAME --config configs/<stage>/<size>.yaml`.

Stages, in order (each starts from the previous stage's checkpoint unless told otherwise):
  perception  BEV perception: detection, tracking and map heads (perception/)
  frame_tokenizer  the world model's VQ image tokenizer on CAM_FRONT (perception/frame_tokenizer.py);
              real presets start from a local diffusers VQModel folder: --vq PATH
  align       projectors only, on scene / agent / map captions
  instruct    projectors + LLM, on driving QA
  motion      projectors + LLM, on agent motion forecasting
  world       projectors + LLM (+ new visual token rows), on the next keyframe's CAM_FRONT codes
              (`data.frame_codes`: tools/export_frame_codes.py's cache; docs/model.md)
  planning    everything but the camera backbone, on the ego trajectory (perception runs in the
              graph on frozen camera features: data.token_source online, the tiny default)
  grpo        projectors + LLM (or LoRA), GRPO on sampled trajectories scored by rule-based
              verifiers (planning/rewards.py), KL to the frozen planning checkpoint (docs/rewards.md)

Every run has the same skeleton: read the config -> build data and model -> train with a progress
bar -> save a checkpoint folder (safetensors + state.json + config.yaml) under --out.
`--resume` continues from the last checkpoint in --out exactly (weights, optimizer, RNG, step).
"""

from __future__ import annotations

import argparse

from vla_world.training.stages import LLM_STAGES

PERCEPTION_STAGES = ("perception",)
IMAGE_STAGES = ("frame_tokenizer",)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", required=True, choices=PERCEPTION_STAGES + IMAGE_STAGES + LLM_STAGES, help="which stage to train")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/perception/tiny.yaml")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: the config's)")
    p.add_argument("--out", default=None, help="run folder for checkpoints and logs (default: checkpoints/<stage>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out (a save cut "
                   "short by a kill is recovered first)")
    p.add_argument("--overwrite", action="store_true",
                   help="train from the start into an --out that already holds a checkpoint (replaced at the first "
                        "save); without it, or --resume, such an --out is refused")
    p.add_argument("--init", default=None, help="checkpoint to start from (default: the previous stage's, from config)")
    p.add_argument("--llm", default=None, help="local Qwen2.5 checkpoint folder for non-tiny presets (never downloaded)")
    p.add_argument("--vq", default=None, help="frame_tokenizer: local diffusers VQModel folder to start from "
                   "(config.json + weights; e.g. FSDrive's for configs/frame_tokenizer/fsdrive.yaml); never downloaded")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps in all, counting resumed ones (smoke runs); the "
                        "learning-rate schedule stays the configured one. 0 = no limit; negative is refused")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.lr=1e-4 (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    from vla_world.checkpoint import CheckpointError, TrainingDiverged
    from vla_world.config import ConfigError
    from vla_world.data.nuscenes_db import RecordError

    args = build_parser().parse_args(argv)
    if args.out is None:
        args.out = f"checkpoints/{args.stage}"
    try:
        run(args)
    except (ConfigError, CheckpointError, TrainingDiverged, RecordError) as exc:  # one line, no traceback
        raise SystemExit(f"train.py: {exc}") from exc
    return 0


def run(args: argparse.Namespace) -> None:
    from vla_world.config import ConfigError, parse_overrides

    args.overrides = parse_overrides(args.set)
    if args.max_steps is not None and args.max_steps < 0:
        raise ConfigError(f"--max-steps {args.max_steps}: must be >= 0 (0 = no limit: the configured epochs)")
    if args.stage in PERCEPTION_STAGES:
        from perception.train import run_perception_stage

        run_perception_stage(args)
    elif args.stage in IMAGE_STAGES:
        from perception.frame_tokenizer_train import run_frame_tokenizer_stage

        run_frame_tokenizer_stage(args)
    elif args.stage == "grpo":
        from vla_world.training.grpo import run_grpo_stage

        run_grpo_stage(args)
    else:
        from vla_world.training.runner import run_llm_stage

        run_llm_stage(args)


if __name__ == "__main__":
    raise SystemExit(main())
