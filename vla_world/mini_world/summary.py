"""Per-scene and per-split ego behaviour mix of a written world, read back from its tables (JSON only).

The driving command of a keyframe is derived the way the records builder does it: the ego's
lateral offset 3 s ahead in the current ego frame; |offset| >= 2 m is a turn (positive = left).
The behaviour is read back from `scene.description`. Used by tools/make_mini_world.py and
tools/data_summary.py to show that train, val and test hold the same kinds of scenes.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .scenarios import SCENE_BEHAVIOURS, behaviour_from_description

TURN_OFFSET = 2.0  # metres of lateral offset at 3 s that make a keyframe a turn
HORIZON = 6  # keyframes = 3 s at 2 Hz


@dataclass
class SceneSummary:
    name: str
    location: str
    split: str
    description: str
    commands: dict[str, int]  # keyframes with a full 3 s future: "right" / "left" / "forward"
    min_speed: float  # m/s over the scene
    max_speed: float
    keyframes: int = 0  # all keyframes of the scene

    @property
    def behaviour(self) -> str:
        """The scripted ego behaviour ("left", "stop", ...), "?" if the description is not a mini world one."""
        return behaviour_from_description(self.description) or "?"

    def line(self) -> str:
        c = self.commands
        return (f"{self.name} {self.split:5s} {self.location:25s} right={c['right']:2d} left={c['left']:2d} "
                f"forward={c['forward']:2d} speed={self.min_speed:4.1f}..{self.max_speed:4.1f} m/s  "
                f"{self.description.split(';')[0]}")


def summarize_world(dataroot, version: str = "v1.0-mini") -> list[SceneSummary]:
    folder = Path(dataroot) / version
    load = lambda name: json.loads((folder / f"{name}.json").read_text())
    samples = {s["token"]: s for s in load("sample")}
    poses = {p["token"]: p for p in load("ego_pose")}
    logs = {log["token"]: log for log in load("log")}
    lidar_pose = {sd["sample_token"]: poses[sd["ego_pose_token"]] for sd in load("sample_data")
                  if sd["is_key_frame"] and "LIDAR_TOP" in sd["filename"]}
    splits_path = folder / "vla_world_splits.json"
    split_of = {}
    if splits_path.exists():
        split_of = {name: split for split, names in json.loads(splits_path.read_text()).items() for name in names}
    out = []
    for scene in load("scene"):
        token, track = scene["first_sample_token"], []
        while token:
            pose = lidar_pose[token]
            w, _, _, z = pose["rotation"]
            track.append((pose["translation"][0], pose["translation"][1], 2 * math.atan2(z, w)))
            token = samples[token]["next"]
        out.append(SceneSummary(scene["name"], logs[scene["log_token"]]["location"], split_of.get(scene["name"], "?"),
                                scene["description"], _commands(track), *_speed_range(track), keyframes=len(track)))
    return out


def scene_behaviours(dataroot, version: str = "v1.0-mini") -> dict[str, str]:
    """Scene name -> scripted ego behaviour, from scene.json alone; {} for a dataroot that is not a mini world.

    A missing scene.json also gives {}: the records loader reports that with the fix.
    """
    path = Path(dataroot) / version / "scene.json"
    if not path.is_file():
        return {}
    scenes = json.loads(path.read_text())
    found = {s["name"]: behaviour_from_description(s["description"]) for s in scenes}
    return {name: b for name, b in found.items() if b is not None}


@dataclass
class SplitMix:
    """What one split holds: scenes per ego behaviour and keyframes per driving command."""

    split: str
    scenes: int
    keyframes: int
    behaviours: dict[str, int]  # scenes per behaviour, in SCENE_BEHAVIOURS order
    commands: dict[str, int]  # keyframes with a full 3 s future per command


def split_mix(scenes: list[SceneSummary]) -> list[SplitMix]:
    """One SplitMix per split, in the order the splits first appear (train, val, test for the mini world)."""
    out = []
    for split in dict.fromkeys(s.split for s in scenes):
        members = [s for s in scenes if s.split == split]
        behaviours = {b: sum(s.behaviour == b for s in members) for b in [*dict.fromkeys(SCENE_BEHAVIOURS), "?"]}
        commands = {c: sum(s.commands[c] for s in members) for c in ("right", "left", "forward")}
        out.append(SplitMix(split, len(members), sum(s.keyframes for s in members),
                            {b: n for b, n in behaviours.items() if n}, commands))
    return out


def format_split_mix(scenes: list[SceneSummary]) -> str:
    """One line per split: scenes by behaviour and keyframes (full 3 s future) by command."""
    lines = []
    for mix in split_mix(scenes):
        behaviours = ", ".join(f"{b} {n}" for b, n in mix.behaviours.items())
        commands = " / ".join(f"{c} {n}" for c, n in mix.commands.items())
        lines.append(f"  {mix.split:5s} {mix.scenes:3d} scene{'s' if mix.scenes != 1 else ' '} ({behaviours}); "
                     f"{mix.keyframes} keyframes, "
                     f"with a full 3 s future: {commands}")
    return "\n".join(lines)


def _commands(track: list[tuple[float, float, float]]) -> dict[str, int]:
    counts = {"right": 0, "left": 0, "forward": 0}
    for k in range(len(track) - HORIZON):
        x0, y0, yaw = track[k]
        x1, y1, _ = track[k + HORIZON]
        lateral = -math.sin(yaw) * (x1 - x0) + math.cos(yaw) * (y1 - y0)  # + = left of the ego
        counts["left" if lateral >= TURN_OFFSET else "right" if lateral <= -TURN_OFFSET else "forward"] += 1
    return counts


def _speed_range(track: list[tuple[float, float, float]]) -> tuple[float, float]:
    speeds = [math.dist(a[:2], b[:2]) / 0.5 for a, b in itertools.pairwise(track)]
    return (min(speeds), max(speeds)) if speeds else (0.0, 0.0)
