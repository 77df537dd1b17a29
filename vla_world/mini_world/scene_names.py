"""Official nuScenes scene names for the mini world's scenes, so the devkit's split helpers work unpatched.

The devkit selects a split's scenes by *name* (`nuscenes.utils.splits.create_splits_scenes()`), and
`DetectionEval` / `load_gt` accept only the split names that match the table version ("mini_train" /
"mini_val" for `v1.0-mini`, "train" / "val" for `v1.0-trainval`). So a scene of our split takes the next
free name of the official split it stands for:

  version        our train                       our val                          our test
  *-mini         mini_train, then official train  mini_val, then official val      official test
  anything else  official train                  official val                     official test

Names beyond a mini list come from the full lists minus every mini name, so all names stay unique. A
default mini world (7 train / 3 val / 14 test) therefore has mini_train = 7 of its train scenes and
mini_val = 2 of its 3 val scenes; `vla_world_splits.json` stays the source of our own splits.
"""

from __future__ import annotations


def official_name_pools(version: str) -> dict[str, list[str]]:
    """{our split: official names in the order they are handed out} for a table version."""
    from nuscenes.utils.splits import (
        create_splits_scenes,  # lazy: the devkit import costs about a second
    )

    official = create_splits_scenes()
    if not version.endswith("-mini"):
        return {"train": list(official["train"]), "val": list(official["val"]), "test": list(official["test"])}
    mini = set(official["mini_train"]) | set(official["mini_val"])
    return {"train": official["mini_train"] + [n for n in official["train"] if n not in mini],
            "val": official["mini_val"] + [n for n in official["val"] if n not in mini],
            "test": [n for n in official["test"] if n not in mini]}


def assign_scene_names(splits: list[str], version: str) -> list[str]:
    """One official name per scene, given each scene's split ("train" | "val" | "test") in scene order."""
    pools = official_name_pools(version)
    used = dict.fromkeys(pools, 0)
    names = []
    for split in splits:
        if split not in pools:
            raise ValueError(f"unknown split {split!r} for a scene; expected one of {sorted(pools)}")
        if used[split] == len(pools[split]):
            raise ValueError(f"{version}: more {split} scenes than nuScenes has {split} scene names "
                             f"({len(pools[split])}); build fewer scenes")
        names.append(pools[split][used[split]])
        used[split] += 1
    return names
