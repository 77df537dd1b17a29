"""Detection scored by the devkit's public `DetectionEval` exactly as a nuScenes submission is scored.

Our own numbers (perception/detection_eval.py) score the classes present in GT against the
perception targets; these are the devkit's: a result JSON written here, GT loaded by the devkit from
the tables, its `detection_cvpr_2019` config (10 classes, per-class ranges, boxes without lidar
points dropped), mAP and NDS over all 10 classes (a class with no GT scores AP 0). The two are
reported side by side, each labelled, never mixed.

Which `eval_set`: the official split name (`mini_val`, `val`, ...) when its scenes in this dataroot
are exactly the requested split's; otherwise the world's custom split `vla_world_<split>` from
`<version>/splits.json` (the devkit's own custom-split file, written by the mini-world builder);
otherwise the devkit cannot score this split and the report says why.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from perception.detection_eval import to_detection_boxes
from vla_world.data.records import SampleRecord
from vla_world.data.splits import official_split_name

DEVKIT_CONFIG = "detection_cvpr_2019"
CUSTOM_SPLITS_FILE = "splits.json"  # read by nuscenes.utils.splits.get_scenes_of_custom_split
CUSTOM_SPLIT_PREFIX = "vla_world_"
# Official split names DetectionEval accepts for each version suffix (nuscenes.eval.common.loaders.load_gt).
_OFFICIAL_FOR_VERSION = {"mini": ("mini_train", "mini_val"), "trainval": ("train", "val")}


def choose_eval_set(nusc, version: str, split: str, scenes: set[str]) -> tuple[str | None, str]:
    """(eval_set, why) for the scenes of our split; eval_set None when the devkit cannot score them."""
    from nuscenes.utils.splits import create_splits_scenes

    present = {s["name"] for s in nusc.scene}
    official = official_split_name(version, split)
    accepted = _OFFICIAL_FOR_VERSION.get(version.rsplit("-", 1)[-1], ())
    if official in accepted and set(create_splits_scenes()[official]) & present == scenes:
        return official, f"official split {official}: the same {len(scenes)} scenes"
    custom = f"{CUSTOM_SPLIT_PREFIX}{split}"
    path = Path(nusc.dataroot) / version / CUSTOM_SPLITS_FILE
    if path.is_file() and set(json.loads(path.read_text()).get(custom) or []) == scenes:
        return custom, f"custom split {custom} of {path.name}: the {len(scenes)} scenes (no official split has exactly them)"
    return None, (f"no official split of {version} has exactly the {len(scenes)} scenes of '{split}', and "
                  f"{path} lists no '{custom}'; rebuild the world with tools/make_mini_world.py to get one")


def submission(records: list[SampleRecord], preds) -> dict:
    """The devkit's result JSON: meta plus global-frame boxes for every keyframe (maybe none)."""
    results = {}
    for record, pred in zip(records, preds):
        boxes = to_detection_boxes(record, pred.boxes, pred.velocities, pred.classes, pred.scores)
        results[record.sample_token] = [box.serialize() for box in boxes]
    meta = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
    return {"meta": meta, "results": results}


def devkit_detection_report(dataroot: str | Path, version: str, split: str, records: list[SampleRecord], preds,
                            nusc=None) -> dict:
    """{'eval_set', 'why', 'mAP', 'NDS', 'per_class_AP', 'tp_errors'} from `DetectionEval`, or eval_set None."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval
    from nuscenes.nuscenes import NuScenes

    nusc = nusc or NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    eval_set, why = choose_eval_set(nusc, version, split, {r.scene_name for r in records})
    report = {"eval_set": eval_set, "why": why, "config": DEVKIT_CONFIG}
    if eval_set is None:
        return report
    result = submission(records, preds)
    if not any(result["results"].values()):  # the devkit raises on a submission without a single box
        return {**report, "why": report["why"] + "; no box predicted, so AP 0 and NDS 0 without running the devkit",
                "mAP": 0.0, "NDS": 0.0, "per_class_AP": {}, "tp_errors": {}}
    with tempfile.TemporaryDirectory(prefix="devkit_eval_") as work:
        result_path = Path(work) / "results.json"
        result_path.write_text(json.dumps(result))
        evaluator = DetectionEval(nusc, config_factory(DEVKIT_CONFIG), str(result_path), eval_set,
                                  str(Path(work) / "out"), verbose=False)
        metrics, _ = evaluator.evaluate()
    summary = metrics.serialize()
    return {**report, "mAP": summary["mean_ap"], "NDS": summary["nd_score"], "per_class_AP": summary["mean_dist_aps"],
            "tp_errors": summary["tp_errors"]}
