"""Evaluate BEV perception on a split: detection mAP/NDS (nuScenes devkit), tracking id consistency,
map Chamfer AP at 0.5/1.0/1.5 m. See perception/evaluate.py for the definitions.

Detection is reported twice, each labelled: ours (classes present in GT, GT = the perception targets
inside the BEV grid) and the devkit's own (its public `DetectionEval` on a result JSON, config
detection_cvpr_2019, mAP/NDS over all 10 classes; perception/devkit_detection.py says which eval_set).

    python tools/eval_perception.py --checkpoint checkpoints/perception/last --dataroot data/mini_world --split val
    python tools/eval_perception.py --chance --dataroot data/mini_world --split val   # chance level
    python tools/eval_perception.py --targets --dataroot data/mini_world --split val  # the grid's ceiling

`--chance` scores camera-blind random predictions drawn from the train split's statistics
(perception/chance.py) with the same code, so "better than chance" is measured, not assumed.

`--pictures N` also draws N keyframes spread over the split (tools/perception_pictures.py): the ground view
the map head reads, GT vs predicted map and boxes (those that would become tokens), into --pictures-out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tools.*` importable when run as a script

import numpy as np

DEFAULT_CONFIG = "configs/perception/tiny.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="perception checkpoint folder, e.g. checkpoints/perception/last")
    source.add_argument("--chance", action="store_true", help="score random camera-blind predictions instead")
    source.add_argument("--targets", action="store_true",
                        help="score the perception targets themselves (the grid's ceiling: 1 by our metrics; the "
                             "devkit's numbers show what the grid's reach costs)")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"config for --chance / --targets (grid, P) (default {DEFAULT_CONFIG})")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default data/mini_world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: the config's)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--seed", type=int, default=0, help="seed of --chance predictions (default 0)")
    p.add_argument("--out", default=None, help="also write the report as JSON here")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--skip-devkit", action="store_true",
                   help="skip the devkit's DetectionEval numbers (loading NuScenes takes ~30 s on real trainval)")
    p.add_argument("--set", action="append", default=[], metavar="inference.KEY=VALUE",
                   help="change an inference setting of the checkpoint's config for this evaluation, e.g. "
                        "--set inference.map_raster_crest=false (repeatable; the weights are untouched)")
    p.add_argument("--pictures", type=int, default=0, metavar="N",
                   help="also draw N keyframes spread over the split (ground view, GT vs predicted map and boxes)")
    p.add_argument("--pictures-out", default="outputs/perception_pictures", help="folder of the --pictures PNGs")
    return p


def draw_pictures(args: argparse.Namespace, records: list, preds: list, cfg, model) -> None:
    """--pictures: PNGs of evenly spaced keyframes, with what would become tokens (the inference thresholds)."""
    import torch

    from perception.evaluate import FramePrediction
    from perception.inputs import image_cache, load_camera_batch
    from perception.map_eval import FrameMap
    from perception.targets import frame_targets
    from tools.perception_pictures import save_pictures

    picks = np.unique(np.linspace(0, len(records) - 1, min(args.pictures, len(records))).round().astype(int))
    cache = image_cache(args.dataroot, cfg.model) if model is not None else None
    kept, grounds = [], []
    has_ground = model is not None and model.ground_view is not None
    for i in picks:
        p = preds[i]
        agents, elements = p.scores >= cfg.inference.score_threshold, p.map.scores >= cfg.inference.map_score_threshold
        kept.append(FramePrediction(p.boxes[agents], p.velocities[agents], p.classes[agents], p.scores[agents],
                                    FrameMap(p.map.types[elements], p.map.points[elements], p.map.scores[elements])))
        with torch.no_grad():
            grounds.append(model.ground_picture(load_camera_batch([records[i]], cache))[0].numpy() if has_ground else None)
    boxes = [frame_targets(records[i], cfg.grid, cfg.model.map_points).boxes for i in picks]
    title = f"{args.checkpoint or ('chance' if args.chance else 'targets')}, split {args.split}"
    paths = save_pictures([records[i] for i in picks], kept, boxes, grounds, (cfg.grid.x_half, cfg.grid.y_half),
                          Path(args.pictures_out), title)
    print(f"wrote {len(paths)} pictures under {args.pictures_out} (e.g. {paths[0]})" if paths else "no pictures")


def summary_lines(report: dict) -> list[str]:
    det, trk, mp = report["detection"], report["tracking"], report["map"]
    return [
        f"keyframes: {report['keyframes']}",
        (f"detection (ours: {len(det['per_class_AP'])} classes present in GT, perception targets): mAP {det['mAP']:.4f}  "
         f"NDS {det['NDS']:.4f}  per class {json.dumps({k: round(v, 4) for k, v in det['per_class_AP'].items()})}"),
        *devkit_lines(report.get("detection_devkit")),
        (f"tracking: id switches {trk['id_switches']} ({trk['id_switches_per_100']:.2f} / 100 matched), "
         f"tracks kept under one id {trk['tracks_single_id']:.3f}, GT boxes matched {trk['matched_fraction']:.3f}"),
        f"map: Chamfer mAP {mp['mAP']:.4f}  " + json.dumps({k: {t: round(v, 4) for t, v in aps.items()} for k, aps in mp["AP"].items()}),
    ]


def devkit_lines(dev: dict | None) -> list[str]:
    if dev is None:
        return []
    label = f"detection (devkit DetectionEval, {dev['config']}, 10 classes"
    if dev["eval_set"] is None:
        return [f"{label}): not scored: {dev['why']}"]
    present = {k: round(v, 4) for k, v in dev["per_class_AP"].items() if v > 0}
    return [(f"{label}, eval_set={dev['eval_set']}): mAP {dev['mAP']:.4f}  NDS {dev['NDS']:.4f}  "
            f"classes with AP > 0 {json.dumps(present)}  ({dev['why']})")]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from perception.chance import chance_predictions
    from perception.config import PerceptionConfig
    from perception.evaluate import (
        evaluate_predictions,
        model_predictions,
        target_predictions,
    )
    from perception.inputs import image_cache
    from perception.train import load_perception_model
    from vla_world.checkpoint import CheckpointError
    from vla_world.config import ConfigError, load_config, parse_overrides
    from vla_world.data import load_records

    torch.set_num_threads(args.threads)
    if args.chance or args.targets:
        cfg = load_config(args.config, PerceptionConfig)
        records = load_records(args.dataroot, version=args.version or cfg.version, split=args.split)
        if args.targets:
            preds = target_predictions(records, cfg)
        else:
            train = load_records(args.dataroot, version=args.version or cfg.version, split="train")
            preds = chance_predictions(train, records, cfg, args.seed)
    else:
        try:
            overrides = parse_overrides(args.set)
            if any(not key.startswith("inference.") for key in overrides):
                raise ConfigError(f"--set {sorted(overrides)}: only inference.* fields can change after training")
            model, cfg = load_perception_model(args.checkpoint, overrides)
        except (CheckpointError, ConfigError) as exc:  # one line naming the file and the fix, no traceback
            raise SystemExit(f"--checkpoint: {exc}") from exc
        records = load_records(args.dataroot, version=args.version or cfg.version, split=args.split)
        preds = model_predictions(model, records, image_cache(args.dataroot, cfg.model), cfg)
    report = evaluate_predictions(records, preds, cfg)
    if not args.skip_devkit:
        from perception.devkit_detection import devkit_detection_report

        report["detection_devkit"] = devkit_detection_report(args.dataroot, args.version or cfg.version, args.split,
                                                             records, preds)
    report["source"] = "chance" if args.chance else "targets" if args.targets else str(args.checkpoint)
    print("\n".join(summary_lines(report)))
    if args.pictures > 0:
        draw_pictures(args, records, preds, cfg, None if args.chance or args.targets else model)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
