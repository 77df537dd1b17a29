"""perception/devkit_detection.py: our predictions scored by the devkit's public DetectionEval, on the tiny world."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes

from perception.config import PerceptionConfig
from perception.devkit_detection import (
    choose_eval_set,
    devkit_detection_report,
    submission,
)
from perception.evaluate import FramePrediction, target_predictions
from perception.map_eval import FrameMap

VERSION = "v1.0-mini"
NO_MAP = FrameMap(np.zeros(0, np.int64), np.zeros((0, 2, 2)), np.zeros(0))


@pytest.fixture(scope="module")
def nusc(mini_world):
    return NuScenes(version=VERSION, dataroot=str(mini_world), verbose=False)


def test_eval_set_is_official_when_it_has_exactly_our_scenes_else_the_custom_split(nusc, mini_world):
    splits = json.loads((mini_world / VERSION / "vla_world_splits.json").read_text())
    assert choose_eval_set(nusc, VERSION, "val", set(splits["val"]))[0] == "mini_val"
    assert choose_eval_set(nusc, VERSION, "train", set(splits["train"]))[0] == "mini_train"
    two = set(splits["train"][:2])  # a subset no split file lists
    eval_set, why = choose_eval_set(nusc, VERSION, "train", two)
    assert eval_set is None and "vla_world_train" in why


def test_submission_is_the_devkit_result_format(mini_records):
    cfg = PerceptionConfig()
    records = mini_records["val"][:3]
    result = submission(records, target_predictions(records, cfg))
    assert set(result["results"]) == {r.sample_token for r in records} and result["meta"]["use_camera"]
    box = next(b for boxes in result["results"].values() for b in boxes)
    assert {"translation", "size", "rotation", "velocity", "detection_name", "detection_score", "attribute_name"} <= set(box)
    json.dumps(result)  # plain JSON, no numpy leftovers


def test_perfect_boxes_match_their_gt_exactly(nusc, mini_world, mini_records):
    """Targets inside the grid, scored by the devkit: matched boxes have no translation error.

    The devkit scores 10 classes and up to 50 m while the grid reaches 25 m, so recall (and AP) is
    below 1 by design; a frame or unit error in the conversion would make trans_err of matches > 0."""
    cfg = PerceptionConfig()
    report = devkit_detection_report(mini_world, VERSION, "val", mini_records["val"], target_predictions(mini_records["val"], cfg),
                                     nusc=nusc)
    assert report["eval_set"] == "mini_val" and report["config"] == "detection_cvpr_2019"
    present = [name for name, ap in report["per_class_AP"].items() if ap > 0]
    assert present and len(report["per_class_AP"]) == 10
    assert report["tp_errors"]["trans_err"] == pytest.approx((10 - len(present)) / 10, abs=1e-3)
    assert report["tp_errors"]["scale_err"] == pytest.approx((10 - len(present)) / 10, abs=1e-3)


def test_a_submission_without_boxes_scores_zero_instead_of_crashing_the_devkit(nusc, mini_world, mini_records):
    records = mini_records["val"]
    empty = [FramePrediction(np.zeros((0, 7)), np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0), NO_MAP)
             for _ in records]
    report = devkit_detection_report(mini_world, VERSION, "val", records, empty, nusc=nusc)
    assert report["eval_set"] == "mini_val" and report["mAP"] == 0.0 and report["NDS"] == 0.0
    assert "no box predicted" in report["why"]
