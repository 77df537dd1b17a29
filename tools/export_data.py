"""Export stage data for other trainers: LLaMA-Factory (sharegpt, every LLM stage) and EasyR1 (planning rewards).

    python tools/export_data.py --format llamafactory --stage instruct --split train --vision text \
        --tokens cache/tokens/train.safetensors --out exports/llamafactory
    python tools/export_data.py --format llamafactory --stage planning --split train --vision images \
        --tokens checkpoints/perception/last --out exports/llamafactory

writes <out>/vla_world_<stage>_<split>_<vision>.json (sharegpt conversations), its entry in
<out>/dataset_info.json and <out>/vla_world_<stage>_<split>_<vision>.meta.json (vla_world/export,
docs/export.md). --vision text writes the perception output as text (detected agents, map summary);
--vision images puts the six camera paths in `images` and one `<image>` per camera in the user turn.
--tokens names where perception comes from: a token cache file, a perception checkpoint folder (run
on the split's images), or `oracle` (ground truth; the metadata says so).

EasyR1 (planning prompts and reward targets):

    python tools/export_data.py --format easyr1 --stage planning --split train --tokens oracle --out exports/easyr1
    python tools/export_data.py --format easyr1 --stage planning --split val --tokens cache/tokens/val.safetensors \
        --images --out exports/easyr1

writes <out>/<stage>_<split>.jsonl, one line per keyframe with a future to score:
  problem  the user turn of the planning prompt exactly as vla_world.model.sequence.SequenceBuilder
           writes it (perception placeholder blocks as text; `--images` puts one `<image>` marker per
           camera in front of it, which EasyR1 replaces with that image);
  answer   the reward verifiers' target (planning.rewards.RewardTarget) as a JSON string: EasyR1
           passes it as `ground_truth` to planning/easyr1_reward.py:compute_score;
  images   the six camera paths, relative to --dataroot (EasyR1: data.image_dir=<dataroot>), with --images;
and <out>/<stage>_<split>.meta.json beside it: the command, the token source, the system prompt
and chat format, the collision convention, the counts, and the EasyR1 version and settings.

The perception tokens only decide how many placeholders each block holds; they come from a named
source (--tokens oracle|FILE) recorded in the metadata. docs/rewards.md explains the verifiers.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMATS = ("easyr1", "llamafactory")
STAGES = ("align", "instruct", "motion", "world", "planning")  # llamafactory: all; easyr1: planning
EASYR1_VERSION = ("hiyouga/EasyR1 batch reward interface from commit b637de8 (2025-11-16); checked against "
                  "b44b311 (2026-07-30, 0.3.3.dev0); v0.3.2 and older releases use the old compute_score signature")
EASYR1_SETTINGS = {
    "data.prompt_key": "problem",
    "data.answer_key": "answer",
    "data.image_key": "images",
    "worker.reward.reward_function": "planning/easyr1_reward.py:compute_score",
    "worker.reward.skip_special_tokens": False,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", required=True, choices=FORMATS, help="target trainer's data format")
    p.add_argument("--stage", required=True, choices=STAGES, help="which stage's data")
    p.add_argument("--split", required=True, help="records split, e.g. train | val | test")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tokens", required=True, metavar="oracle|FILE|DIR",
                   help="where perception comes from: a token cache file (tools/export_tokens.py), a perception "
                        "checkpoint folder (llamafactory: run on the split's camera images), or 'oracle' (ground "
                        "truth, sized by --perception-config; recorded in the metadata). easyr1: it sizes the "
                        "placeholder blocks; llamafactory --vision text: it is the text")
    p.add_argument("--perception-config", default=None, help="perception config for --tokens oracle (default: its defaults)")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: auto)")
    p.add_argument("--images", action="store_true", help="add the six camera paths and one <image> marker per camera")
    p.add_argument("--collision-convention", default="stp3", choices=("uniad", "stp3", "stp3_original", "vad"),
                   help="whose obstacle content and grid the collision verifier uses (docs/metrics.md; default stp3)")
    p.add_argument("--no-kinematic-prior", action="store_true",
                   help="leave the CTRA prior line out of the prompt (as data.kinematic_prior: false)")
    p.add_argument("--vision", default="text", choices=("text", "images"),
                   help="llamafactory: perception as text (detected agents, map summary) or the six camera images")
    p.add_argument("--pack", default="auto", choices=("auto", "on", "off"),
                   help="llamafactory: one multi-turn conversation per sample and granularity, as our trainer packs "
                        "(auto: instruct only, as its tiny config)")
    p.add_argument("--config", default=None,
                   help="llamafactory: the stage config the trainer uses (e.g. configs/instruct/tiny.yaml); its data.qa, "
                        "data.pack_questions (for --pack auto), model.kinematic_prior and train.seed apply")
    p.add_argument("--seed", type=int, default=None, help="llamafactory: QA builders' and packing's seed (default: the "
                                                          "config's train.seed, else 0)")
    p.add_argument("--max-agents", type=int, default=30, help="llamafactory --vision text: agents listed, nearest first")
    p.add_argument("--frame-codes", default=None,
                   help="llamafactory --stage world: frame-code cache (default cache/frames/<split>.safetensors)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def load_tokens(spec: str, records: list, perception_config: str | None, dataroot: str) -> tuple[dict, str]:
    """({sample_token: PerceptionTokens}, the source's label) for --tokens oracle|FILE|DIR."""
    from vla_world.inference import ORACLE, TokenSource

    if spec == ORACLE:
        from vla_world.training.data import oracle_token_map

        return oracle_token_map(records, perception_config), TokenSource(ORACLE, perception_config or "perception defaults").label
    if Path(spec).is_dir():
        return perception_checkpoint_tokens(spec, records, dataroot), TokenSource("online", spec).label
    from perception.tokens import load_tokens_for

    try:
        tokens = load_tokens_for(spec, [r.sample_token for r in records], dataroot)
    except (FileNotFoundError, KeyError, ValueError) as exc:  # ValueError: a cache of another world
        raise SystemExit(f"--tokens {spec}: {exc}") from exc
    return tokens, TokenSource("cache", spec).label


def perception_checkpoint_tokens(folder: str, records: list, dataroot: str) -> dict:
    """Tokens of `records` from a trained perception checkpoint run on their camera images."""
    from perception.inference import model_tokens
    from perception.inputs import image_cache
    from perception.train import load_perception_model

    model, cfg = load_perception_model(folder)
    return model_tokens(model, records, image_cache(dataroot, cfg.model), cfg)


def planning_problem(inp, tokens, kinematic_prior: bool, images: bool) -> str:
    """The user turn of the planning prompt (SequenceBuilder's), with camera markers in front when asked."""
    from vla_world.data.records import CAMERAS
    from vla_world.model.sequence import (
        PLANNING_QUESTION,
        PromptOptions,
        select_features,
        user_text,
    )

    counts = {kind: int(value.shape[0]) for kind, value in select_features(tokens, None).items()}
    text = user_text(inp, counts, PLANNING_QUESTION, PromptOptions(kinematic_prior=kinematic_prior))
    return "".join(f"{camera}: <image>\n" for camera in CAMERAS) + text if images else text


def easyr1_rows(records: list, tokens: dict, args) -> tuple[list[dict], dict]:
    """The JSONL rows and the counts (records, written, skipped by reason)."""
    from planning.reward_targets import reward_target_of
    from vla_world.data.planner_input import planner_input

    rows, skipped = [], {}
    for record in records:
        if not record.ego_future_mask.any():
            skipped["no future step to score"] = skipped.get("no future step to score", 0) + 1
            continue
        inp = planner_input(record)  # the prompt sees inputs only; the answer holds the labels
        row = {"problem": planning_problem(inp, tokens[record.sample_token], not args.no_kinematic_prior, args.images),
               "answer": reward_target_of(record, args.collision_convention).to_json()}
        if args.images:
            row["images"] = [str(p) for p in inp.camera_paths]
        rows.append(row)
    return rows, {"records": len(records), "written": len(rows), "skipped": skipped}


def metadata(args, argv: list[str], token_label: str, counts: dict) -> dict:
    from planning.rewards import TARGET_VERSION
    from vla_world.data.fingerprint import data_identity
    from vla_world.model.sequence import PLANNING_QUESTION, SYSTEM_PROMPT

    return {
        "format": args.format, "stage": args.stage, "split": args.split,
        **data_identity(args.dataroot, args.version),  # data_fingerprint: which world the rows came from
        "command": shlex.join(["python", "tools/export_data.py", *argv]),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tokens": token_label, "counts": counts,
        "prompt": {"system_prompt": SYSTEM_PROMPT, "question": PLANNING_QUESTION,
                   "kinematic_prior": not args.no_kinematic_prior, "camera_markers": bool(args.images),
                   "chat_format": "<|im_start|>system\\n{system_prompt}<|im_end|>\\n<|im_start|>user\\n{problem}"
                                  "<|im_end|>\\n<|im_start|>assistant\\n"},
        "reward_target": {"version": TARGET_VERSION, "collision_convention": args.collision_convention,
                          "frame": "current LiDAR_TOP frame, x right, y forward, metres"},
        "easyr1": {"version": EASYR1_VERSION, "settings": {**EASYR1_SETTINGS,
                   **({"data.image_dir": str(args.dataroot)} if args.images else {})}},
    }


def llamafactory_export(records: list, tokens: dict, token_label: str, args, argv: list[str]) -> tuple[dict, dict]:
    """Write one stage and split for LLaMA-Factory (vla_world/export); returns (paths, counts)."""
    from vla_world.export.llamafactory import (
        ExportRun,
        dataset_name,
        export_examples,
        export_metadata,
        write_export,
    )
    from vla_world.export.sharegpt import ShareGPTOptions, sharegpt_rows

    stage_cfg = load_stage_config(args.config)
    seed = args.seed if args.seed is not None else (stage_cfg.train.seed if stage_cfg else 0)
    codes, codebook = load_frame_codes_for(args) if args.stage == "world" else (None, None)
    try:
        examples, skipped = export_examples(args.stage, records, seed, codes, stage_cfg.data.qa if stage_cfg else None)
    except KeyError as exc:  # the frame-code cache lacks a next keyframe
        raise SystemExit(f"--frame-codes: {exc}") from exc
    packed_by_config = stage_cfg.data.pack_questions if stage_cfg else args.stage == "instruct"
    kinematic_prior = not args.no_kinematic_prior and (stage_cfg.model.kinematic_prior if stage_cfg else True)
    options = ShareGPTOptions(vision=args.vision, kinematic_prior=kinematic_prior, seed=seed, max_agents=args.max_agents,
                              pack=args.pack == "on" or (args.pack == "auto" and packed_by_config))
    rows, counts = sharegpt_rows(examples, records, tokens, options, args.dataroot)
    counts = {"records": len(records), "skipped_samples": skipped, **counts}
    run = ExportRun(stage=args.stage, split=args.split, dataroot=str(args.dataroot), tokens=token_label,
                    ground_truth=args.tokens == "oracle", command=shlex.join(["python", "tools/export_data.py", *argv]))
    meta = export_metadata(run, options, counts, rows, codebook)
    return write_export(args.out, dataset_name(args.stage, args.split, args.vision), rows, meta), counts


def load_stage_config(path: str | None):
    """The trainer's StageConfig from --config (None without it)."""
    if path is None:
        return None
    from vla_world.config import ConfigError, load_config
    from vla_world.training.config import StageConfig

    try:
        return load_config(path, StageConfig)
    except ConfigError as exc:
        raise SystemExit(f"--config {path}: {exc}") from exc


def load_frame_codes_for(args) -> tuple[dict, int]:
    """({sample_token: codes}, codebook size) of the split's frame-code cache (world stage)."""
    from perception.frame_codes import load_frame_codes

    path = args.frame_codes or f"cache/frames/{args.split}.safetensors"
    try:
        codes, meta = load_frame_codes(path)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"--frame-codes {path}: {exc}") from exc
    return codes, meta.codebook_size


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.format == "easyr1" and args.stage != "planning":
        parser.error("--format easyr1 exports the planning stage only")
    import torch

    torch.set_num_threads(1)  # two cores, shared
    from vla_world.data import RecordError, load_records

    try:
        records = load_records(args.dataroot, version=args.version, split=args.split, progress=not args.quiet)
    except RecordError as exc:
        raise SystemExit(str(exc)) from exc
    tokens, token_label = load_tokens(args.tokens, records, args.perception_config, args.dataroot)
    if args.format == "llamafactory":
        paths, counts = llamafactory_export(records, tokens, token_label, args, argv)
        if not args.quiet:
            print(f"wrote {counts['conversations']} conversations ({counts['turns']} turns) of {args.stage} "
                  f"{args.split} to {paths['data']}; entry in {paths['dataset_info']}; metadata in {paths['meta']}")
        return 0
    rows, counts = easyr1_rows(records, tokens, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_file, meta_file = out / f"{args.stage}_{args.split}.jsonl", out / f"{args.stage}_{args.split}.meta.json"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    meta_file.write_text(json.dumps(metadata(args, argv, token_label, counts), indent=2) + "\n")
    if not args.quiet:
        print(f"wrote {counts['written']} of {counts['records']} {args.split} samples to {data_file} "
              f"(skipped: {counts['skipped'] or 'none'}); metadata in {meta_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
