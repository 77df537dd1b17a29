"""Save an LLM + tokenizer as a plain Hugging Face folder: the base model for a LLaMA-Factory run.

    python tools/export_llm.py --checkpoint checkpoints/planning/last --out outputs/llamafactory-smoke/model
    python tools/export_llm.py --fresh exports/llamafactory/vla_world_planning_train_text.json --out DIR

--checkpoint: the LLM of a VLA checkpoint (LoRA merged; projectors left behind) with its tokenizer.
--fresh: no checkpoint at hand; a random tiny Qwen2 and a byte-level BPE trained on the texts of
an exported sharegpt file (vla_world/export/hf_folder.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a VLA checkpoint folder (tools/train.py), e.g. checkpoints/planning/last")
    source.add_argument("--fresh", metavar="JSON", help="an exported sharegpt file whose texts train a new tokenizer")
    p.add_argument("--out", required=True, help="output folder (config.json, model.safetensors, tokenizer files)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(1)  # two cores, shared
    from vla_world.export.hf_folder import fresh_llm_folder, save_llm_folder

    if args.checkpoint:
        out = save_llm_folder(args.checkpoint, args.out)
    else:
        rows = json.loads(Path(args.fresh).read_text())
        texts = [m["value"] for r in rows for m in r["conversations"]] + [r["system"] for r in rows[:1]]
        out = fresh_llm_folder(texts, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
