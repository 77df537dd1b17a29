"""Print what a nuScenes-format dataroot holds, as the records see it (and build their caches).

For each split: scenes, samples, samples with a full 3 s future, mean agents and map elements
per sample, agents per detection class and the command balance (the command is derived from
the GT future, see docs/data.md); for a mini world also the scenes per ego behaviour, to show
that the held-out test split has the train mix. `make demo` runs it right after building the
mini world.

    python tools/data_summary.py --dataroot data/mini_world              # train, val and test if present
    python tools/data_summary.py --dataroot /data/nuscenes --version v1.0-trainval --splits val
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere

from vla_world.data import (
    COMMANDS,
    DETECTION_CLASSES,
    MAP_CLASSES,
    RecordError,
    SampleRecord,
    load_records,
)
from vla_world.data.nuscenes_db import detect_version
from vla_world.data.splits import SPLITS_FILE, load_split_table
from vla_world.mini_world.summary import scene_behaviours


@dataclass
class SplitSummary:
    """Counts over the records of one split."""

    split: str
    scenes: int
    samples: int
    full_future: int  # samples whose 6 future steps all exist
    agents_per_class: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    mean_agents: float = 0.0
    mean_map_elements: dict[str, float] = field(default_factory=dict)
    behaviours: dict[str, int] = field(default_factory=dict)  # scenes per mini world ego behaviour ({} otherwise)


def summarize(split: str, records: list[SampleRecord], behaviour_of: dict[str, str] | None = None) -> SplitSummary:
    """Counts over `records`; `behaviour_of` (scene name -> ego behaviour) adds the behaviour mix."""
    classes = Counter(int(c) for r in records for c in r.agent_class)
    commands = Counter(r.command for r in records)
    scene_names = dict.fromkeys(r.scene_name for r in records)
    behaviours = Counter(behaviour_of[name] for name in scene_names if name in (behaviour_of or {}))
    n = max(len(records), 1)
    return SplitSummary(
        split=split, scenes=len({r.scene_token for r in records}), samples=len(records),
        full_future=sum(bool(r.ego_future_mask.all()) for r in records),
        agents_per_class={name: classes.get(i, 0) for i, name in enumerate(DETECTION_CLASSES)} | {"other": classes.get(-1, 0)},
        commands={name: commands.get(i, 0) for i, name in enumerate(COMMANDS)},
        mean_agents=sum(r.num_agents for r in records) / n,
        mean_map_elements={name: sum(int((r.map_type == i).sum()) for r in records) / n for i, name in enumerate(MAP_CLASSES)},
        behaviours={b: behaviours[b] for b in dict.fromkeys((behaviour_of or {}).values()) if b in behaviours},
    )


def format_summary(summaries: list[SplitSummary]) -> str:
    lines = [f"{'split':<8}{'scenes':>8}{'samples':>9}{'full 3 s':>10}{'agents/sample':>15}{'map elems/sample':>18}"]
    for s in summaries:
        lines.append(f"{s.split:<8}{s.scenes:>8}{s.samples:>9}{s.full_future:>10}{s.mean_agents:>15.1f}"
                     f"{sum(s.mean_map_elements.values()):>18.1f}")
    lines.append("\nmap elements per sample: " + "; ".join(
        f"{s.split}: " + ", ".join(f"{k} {v:.1f}" for k, v in s.mean_map_elements.items()) for s in summaries))
    lines.append("\nagents per class:")
    for name in [*DETECTION_CLASSES, "other"]:
        counts = [s.agents_per_class[name] for s in summaries]
        if any(counts):
            lines.append(f"  {name:<22}" + "".join(f"{s.split} {c:>7}   " for s, c in zip(summaries, counts)))
    lines.append("\ncommand balance (derived from the GT future):")
    for s in summaries:
        total = max(s.samples, 1)
        lines.append(f"  {s.split:<6}" + "   ".join(f"{k} {v} ({100 * v / total:.0f}%)" for k, v in s.commands.items()))
    if any(s.behaviours for s in summaries):
        lines.append("\nscenes per ego behaviour (mini world scene descriptions):")
        for s in summaries:
            lines.append(f"  {s.split:<6}" + ", ".join(f"{k} {v}" for k, v in s.behaviours.items()))
    return "\n".join(lines)


def default_splits(dataroot: str, version: str | None) -> list[str]:
    """train and val, plus test when the dataroot's own split file lists test scenes (the mini world's held-out split).

    The devkit's official "test" is not added: its scenes live in a separate v1.0-test dataroot.
    """
    version = version or detect_version(dataroot)
    has_file = (Path(dataroot) / version / SPLITS_FILE).is_file()
    return ["train", "val"] + (["test"] if has_file and load_split_table(dataroot, version).get("test") else [])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: %(default)s)")
    parser.add_argument("--version", default=None, help="table folder, e.g. v1.0-mini (default: the only v1.0-* folder)")
    parser.add_argument("--splits", nargs="+", default=None,
                        help="splits to summarise (default: train val, and test when the split file lists test scenes)")
    parser.add_argument("--cache-dir", default=None, help="record cache folder (default: <dataroot>/.vla_world_cache)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        version = args.version or detect_version(args.dataroot)
        splits = args.splits or default_splits(args.dataroot, version)
        behaviour_of = scene_behaviours(args.dataroot, version)
        summaries = [summarize(split, load_records(args.dataroot, version, split, args.cache_dir,
                                                   progress=not args.no_progress), behaviour_of) for split in splits]
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"dataroot: {args.dataroot}")
    print(format_summary(summaries))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    sys.exit(main())
