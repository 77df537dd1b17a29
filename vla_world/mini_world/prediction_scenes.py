"""Writes `maps/prediction/prediction_scenes.json`, the prediction challenge's list of agents to forecast.

The devkit's `nuscenes.eval.prediction.splits.get_prediction_challenge_split(split, dataroot)` reads it:
{scene name: ["<instance token>_<sample token>", ...]}. The challenge forecasts vehicles 6 s ahead from
2 s of history, so an entry is a vehicle annotation with at least 2 s of annotations before it and 6 s
after it in its instance's chain (keyframes at 2 Hz). Every scene has a key, maybe with an empty list.
"""

from __future__ import annotations

import json
from pathlib import Path

PAST_KEYFRAMES = 4  # 2 s of history at 2 Hz
FUTURE_KEYFRAMES = 12  # 6 s to forecast at 2 Hz


def prediction_entries(tables: dict[str, list[dict]]) -> dict[str, list[str]]:
    """{scene name: "<instance>_<sample>" entries} from the in-memory nuScenes tables."""
    annotations = {row["token"]: row for row in tables["sample_annotation"]}
    scene_of_sample = {row["token"]: row["scene_token"] for row in tables["sample"]}
    scene_name = {row["token"]: row["name"] for row in tables["scene"]}
    category = {row["token"]: row["name"] for row in tables["category"]}
    entries: dict[str, list[str]] = {row["name"]: [] for row in tables["scene"]}
    for instance in tables["instance"]:
        if not category[instance["category_token"]].startswith("vehicle."):
            continue
        chain = _chain(annotations, instance["first_annotation_token"])
        for row in chain[PAST_KEYFRAMES:len(chain) - FUTURE_KEYFRAMES]:
            name = scene_name[scene_of_sample[row["sample_token"]]]
            entries[name].append(f"{instance['token']}_{row['sample_token']}")
    return entries


def _chain(annotations: dict[str, dict], first: str) -> list[dict]:
    rows, token = [], first
    while token:
        rows.append(annotations[token])
        token = annotations[token]["next"]
    return rows


def write_prediction_scenes(tables: dict[str, list[dict]], dataroot: Path) -> Path:
    path = Path(dataroot) / "maps" / "prediction" / "prediction_scenes.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(prediction_entries(tables), indent=0))
    return path
