"""Which scenes belong to which split (train / val / test / ...), for the mini world and real nuScenes.

Resolution order:
  1. `<dataroot>/<version>/vla_world_splits.json` ({"train": [scene names], "val": [...],
     "test": [...]}) if it exists: the mini world writes one, and so can anyone with a custom split;
  2. otherwise the devkit's official splits (`nuscenes.utils.splits.create_splits_scenes()`),
     where "train"/"val" of a `v1.0-mini` dataroot mean the official `mini_train`/`mini_val`.
Val is for choosing settings and test for reporting, so train, val and test must be pairwise
disjoint (checked); a split with no scene present in the dataroot is an error, not [].
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from vla_world.data.nuscenes_db import RecordError

SPLITS_FILE = "vla_world_splits.json"
DISJOINT_SPLITS: tuple[str, ...] = ("train", "val", "test")  # no scene may sit in two of these


def official_split_name(version: str, split: str) -> str:
    """The devkit split name a requested split means for this version ("train" on mini -> "mini_train")."""
    if version.endswith("-mini") and split in ("train", "val"):
        return f"mini_{split}"
    return split


def load_split_table(dataroot: str | Path, version: str) -> dict[str, list[str]]:
    """All splits of this dataroot: the custom JSON file if present, else the devkit's official lists."""
    path = Path(dataroot) / version / SPLITS_FILE
    if not path.is_file():
        from nuscenes.utils.splits import (
            create_splits_scenes,  # lazy: importing the devkit costs seconds
        )

        official = create_splits_scenes()
        if version.endswith("-mini"):
            official = {**official, "train": official["mini_train"], "val": official["mini_val"]}
        return official
    try:
        table = json.loads(path.read_text())
    except ValueError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc}); fix it or delete it to use the official splits") from exc
    if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
        raise RecordError(f"{path}: expected {{\"train\": [scene names], \"val\": [...]}}; got {type(table).__name__}")
    check_disjoint(table, where=str(path))
    return table


def check_disjoint(table: dict[str, list[str]], where: str) -> None:
    """Raise if a scene sits in two of train / val / test (other keys, e.g. subsets, may overlap)."""
    for first, second in itertools.combinations([s for s in DISJOINT_SPLITS if s in table], 2):
        overlap = set(table[first]) & set(table[second])
        if overlap:
            raise RecordError(f"{where}: scenes {sorted(overlap)[:5]} ({len(overlap)} in all) are in both {first} and "
                              f"{second}; train, val and test must be disjoint: remove them from one of the two lists")


def split_scene_names(dataroot: str | Path, version: str, split: str, available: list[str]) -> list[str]:
    """Names of the scenes of `split` that exist in the dataroot, in the dataroot's scene order."""
    table = load_split_table(dataroot, version)
    has_file = (Path(dataroot) / version / SPLITS_FILE).is_file()
    key = split if has_file else official_split_name(version, split)
    if key not in table:
        raise RecordError(f"{Path(dataroot) / version}: unknown split '{split}'; choose one of {sorted(table)}")
    if has_file and not table[key]:
        raise RecordError(f"{Path(dataroot) / version / SPLITS_FILE}: split '{split}' lists no scenes; add scene names "
                          f"to it, or for the mini world rebuild with tools/make_mini_world.py (--test-scenes N > 0 "
                          f"for a test split)")
    wanted = set(table[key])
    chosen = [name for name in available if name in wanted]
    if not chosen:
        source = SPLITS_FILE if has_file else "the devkit's official splits"
        raise RecordError(f"{Path(dataroot) / version}: no scene of split '{split}' ({source}) is in scene.json; "
                          f"write {version}/{SPLITS_FILE} with your scene names")
    return chosen
