"""Plan with a trained VLA checkpoint for one sample or a whole scene and print the result.

    python tools/plan.py --checkpoint checkpoints/planning/last --sample TOKEN
    python tools/plan.py --checkpoint checkpoints/planning/last --scene scene-0003 --split val

Prints, per sample: the trajectory (6 waypoints, LiDAR frame: x right, y forward, metres,
t = 0.5..3 s), the raw model text and the parse status. Tokens come from the checkpoint's
token source (the cache file named in its config.yaml, or, for a planner trained with online
perception, its own fine-tuned perception on the --dataroot images) unless --tokens names
another (a cache file, or `oracle` for ground-truth tokens); the first lines printed say which, and
how answers are decoded: from the plan head where the checkpoint fitted one (its 12 numbers written
as the answer by the codec), else template-constrained (every answer parses to 6 waypoints;
vla_world.constrained); --decoding picks constrained, head or free greedy decoding. Each plan then
passes the collision guard (planning.collision_guard): one that runs into a perceived agent is
replaced by the CTRA prior or by the same path driven slower, and the print says so; --no-guard skips it.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a planning checkpoint folder, e.g. checkpoints/planning/last")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: autodetect)")
    p.add_argument("--split", default="val", help="split the sample or scene is in (default: val)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sample", help="sample token to plan for")
    which.add_argument("--scene", help="scene name: plan for every keyframe of it")
    p.add_argument("--tokens", default=None, metavar="oracle|FILE",
                   help="perception tokens: 'oracle' (from ground truth) or a token cache file "
                        "(default: the source the checkpoint was trained with)")
    p.add_argument("--decoding", choices=("auto", "head", "constrained", "greedy"), default="auto",
                   help="auto (default): head if the checkpoint fitted a plan head, else constrained; head: the "
                        "trajectory from the plan head; constrained: the model writes only the numbers of the "
                        "trajectory template; greedy: free greedy decoding, which may not parse")
    p.add_argument("--no-guard", action="store_true",
                   help="print the plans as decoded, without the collision guard")
    p.add_argument("--no-cache", action="store_true",
                   help="with --decoding greedy: decode without the KV cache (slow; for comparison)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.no_cache and args.decoding != "greedy":
        raise SystemExit("--no-cache applies to --decoding greedy (constrained decoding always uses the KV cache)")
    import torch

    from planning.collision_guard import guard_candidate_name
    from vla_world.data import load_records
    from vla_world.data.planner_input import planner_input
    from vla_world.inference import (
        Planner,
        check_planner_checkpoint,
        load_source_tokens,
        resolve_token_source,
    )

    torch.set_num_threads(1)
    records = load_records(args.dataroot, version=args.version, split=args.split, progress=False)
    chosen = [r for r in records if r.sample_token == args.sample or r.scene_name == args.scene]
    if not chosen:
        what = f"sample {args.sample}" if args.sample else f"scene {args.scene}"
        raise SystemExit(f"{args.dataroot}: {what} is not in split {args.split!r}; try --split train or check the name")
    try:
        check_planner_checkpoint(args.checkpoint, "plan.py --checkpoint")
        source = resolve_token_source(args.checkpoint, args.split, args.tokens)
        print(f"perception tokens: {source.label}")
        tokens = load_source_tokens(source, args.checkpoint, chosen, args.dataroot)
        planner = Planner.from_checkpoint(args.checkpoint, use_cache=not args.no_cache, decoding=args.decoding,
                                          guard=not args.no_guard)
        print(f"decoding: {planner.decoding}" + ("" if args.no_guard else " + collision guard"))
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError / DataMismatchError: one line, no traceback
        raise SystemExit(str(exc)) from exc
    for record in chosen:
        inp = planner_input(record)
        result = planner.plan(inp, tokens[inp.sample_token])
        print(f"== {record.scene_name} frame {record.frame_index} sample {record.sample_token}")
        print(f"text: {result.text}")
        if result.guard_choice:
            print(f"collision guard: the decoded plan runs into a perceived agent; answered with candidate "
                  f"{result.guard_choice} ({guard_candidate_name(result.guard_choice)})")
        if result.trajectory is None:
            print(f"parse: FAILED ({result.parse_error})")
        else:
            print("parse: ok; trajectory (x right, y forward, m): "
                  + " ".join(f"({x:.2f},{y:.2f})" for x, y in result.trajectory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
