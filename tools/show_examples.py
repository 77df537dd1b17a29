"""Print the stage examples of one sample, a few per kind, so you can read what the LLM learns.

    python tools/show_examples.py --stage instruct                    # first val sample, mini world
    python tools/show_examples.py --stage all --sample 3 --per-kind 2
    python tools/show_examples.py --stage motion --sample-token <token> --json

Positions in the text are in the ego's LiDAR frame (x right, y forward, metres); motion answers
are in the agent's own frame (its heading is +y). See docs/stage_data.md. The QA stages come from
`vla_world.qa.build_stage_examples`; planning from `vla_world.training.data.planning_examples`,
the one builder of the examples the planning stage trains on.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections import defaultdict
from dataclasses import asdict

from vla_world.qa.config import StageDataConfig

STAGE_CHOICES = ("align", "instruct", "motion", "planning", "all")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: the dataroot's)")
    p.add_argument("--split", default="val", help="records split (default: val)")
    p.add_argument("--stage", default="all", choices=STAGE_CHOICES, help="which stage (default: all)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--sample", type=int, default=0, help="index of the sample in the split (default: 0)")
    which.add_argument("--sample-token", default=None, help="pick the sample by its token instead")
    p.add_argument("--per-kind", type=int, default=2, help="examples shown per kind (default: 2; 0 = all)")
    p.add_argument("--max-range-m", type=float, default=StageDataConfig.max_range_m,
                   help="describe agents within this many metres (the perception grid half-size; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phrasing seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON (with meta labels) instead of text")
    return p


def pick_record(records, index: int, token: str | None, where: str):
    if token is not None:
        found = [r for r in records if r.sample_token == token]
        if not found:
            raise SystemExit(f"{where}: no sample with token {token!r}; list tokens with tools/data_summary.py")
        return found[0]
    if not 0 <= index < len(records):
        raise SystemExit(f"{where}: --sample {index} is out of range; the split has {len(records)} samples (0..{len(records) - 1})")
    return records[index]


def render(stage: str, example) -> str:
    head = f"[{stage}/{example.kind}" + (f" {example.meta['granularity']}" if "granularity" in example.meta else "")
    head += (f" focus_track_id={example.focus_track_id}" if example.focus_track_id is not None else "") + "]"
    wrap = lambda label, text: textwrap.fill(text, 110, initial_indent=label, subsequent_indent=" " * len(label))
    return "\n".join([head, wrap("  Q: ", example.question), wrap("  A: ", example.answer)])


def stage_examples(stage: str, record, seed: int, config: StageDataConfig) -> list:
    """The examples of one stage for one record: planning's from the trainer's own builder."""
    if stage == "planning":
        from vla_world.training.data import planning_examples

        return planning_examples([record])
    from vla_world.qa import build_stage_examples

    return build_stage_examples(stage, [record], seed=seed, config=config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vla_world.data import load_records
    from vla_world.qa import STAGES

    records = load_records(args.dataroot, version=args.version, split=args.split, progress=False)
    record = pick_record(records, args.sample, args.sample_token, f"{args.dataroot} split {args.split}")
    stages = (*STAGES, "planning") if args.stage == "all" else (args.stage,)
    config = StageDataConfig(max_range_m=args.max_range_m)
    shown = []  # (stage, example)
    for stage in stages:
        by_kind = defaultdict(list)
        for example in stage_examples(stage, record, args.seed, config):
            by_kind[example.kind].append(example)
        for examples in by_kind.values():
            shown += [(stage, e) for e in examples[: args.per_kind or None]]
    if args.json:
        print(json.dumps([{"stage": stage, **asdict(e)} for stage, e in shown], indent=1))
        return 0
    print(f"sample {record.sample_token} ({record.scene_name}, frame {record.frame_index}, command {record.command_text})\n")
    print("\n\n".join(render(stage, e) for stage, e in shown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
