"""Write the perception token cache of one split: `cache/tokens/<split>.safetensors`.

    python tools/export_tokens.py --oracle --dataroot data/mini_world --split train
    python tools/export_tokens.py --checkpoint checkpoints/perception/last --split val

The LLM stages read the file with `perception.tokens.load_token_cache` and so skip perception.
`--oracle` builds tokens from ground truth (perception/oracle.py; config from --config);
`--checkpoint` runs the trained BEV model (its own config.yaml inside the checkpoint); the
perception a planning run fine-tuned online (`checkpoints/planning/last/perception`) works too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = "configs/perception/tiny.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="perception checkpoint folder, e.g. checkpoints/perception/last")
    source.add_argument("--oracle", action="store_true", help="tokens from ground truth instead of a model")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"perception config for --oracle (default {DEFAULT_CONFIG})")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default data/mini_world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: the config's)")
    p.add_argument("--split", default="train", help="records split: train | val (default train)")
    p.add_argument("--out", default=None, help="output file (default cache/tokens/<split>.safetensors)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    from vla_world.checkpoint import CheckpointError
    from vla_world.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return export(args)
    except (CheckpointError, ConfigError) as exc:  # one line naming the file and the fix, no traceback
        raise SystemExit(f"export_tokens.py: {exc}") from exc


def export(args: argparse.Namespace) -> int:
    import torch

    from perception.config import PerceptionConfig
    from perception.source import tokens_for_records
    from perception.tokens import save_token_cache
    from vla_world.config import load_config
    from vla_world.data import load_records
    from vla_world.data.fingerprint import data_identity

    torch.set_num_threads(args.threads)
    config_path = Path(args.checkpoint) / "config.yaml" if args.checkpoint else Path(args.config)
    cfg = load_config(config_path, PerceptionConfig, {"token_source": "oracle" if args.oracle else "model"})
    records = load_records(args.dataroot, version=args.version or cfg.version, split=args.split)
    tokens = tokens_for_records(records, cfg, args.dataroot, args.checkpoint)
    out = Path(args.out or f"cache/tokens/{args.split}.safetensors")
    meta = {"source": cfg.token_source, "checkpoint": args.checkpoint, "split": args.split, "token_dim": cfg.model.token_dim,
            "scene_tokens": cfg.num_scene_tokens, **data_identity(args.dataroot, args.version or cfg.version)}
    save_token_cache(out, tokens, meta)
    agents = sum(t.counts()["agents"] for t in tokens.values())
    print(f"wrote {out}: {len(tokens)} keyframes, {agents} agent tokens, width {cfg.model.token_dim}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
