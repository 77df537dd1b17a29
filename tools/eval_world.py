"""Score the world model's imagined next frames on a split, beside the baselines it must beat.

    python tools/eval_world.py --split test --checkpoint checkpoints/world/last \\
        --tokenizer checkpoints/frame_tokenizer/last --out outputs/world
    python tools/eval_world.py --split test --codes predicted_next.safetensors   # no LLM needed

For every keyframe that has a next keyframe (+0.5 s, same scene): code accuracy (share of the K
positions equal to the true next frame's codes) and PSNR / SSIM of the decoded imagined frame
against the TRUE next CAM_FRONT resized to the tokenizer's input, next to "copy the current
frame" (as an image, and through the decoder) and "decode the true next codes" (the tokenizer's
ceiling); perception/world_eval.py defines each row.

Imagined codes come from the world LLM (--checkpoint: vla_world.world_inference.imagine_codes) or
from a frame-code cache file of predicted next-frame codes keyed by the CURRENT sample token
(--codes; perception/frame_codes.py format; its tokenizer fingerprint must match --tokenizer).

FID: only with --fid-weights PATH, a local TorchScript Inception feature extractor (e.g. clean-fid /
StyleGAN's inception-2015-12-05.pt) loaded with torch.jit.load; it is NEVER downloaded. FID over a
few hundred frames is noisy; read it beside PSNR / SSIM, not alone.

Writes <out>/report.md (markdown table), <out>/world_metrics.json and <out>/imagined_codes.safetensors
(the scored codes, for `tools/visualize.py --world-codes`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="world-stage LLM checkpoint folder, e.g. checkpoints/world/last")
    source.add_argument("--codes", help="frame-code cache of predicted NEXT-frame codes keyed by the current sample token")
    p.add_argument("--tokenizer", default="checkpoints/frame_tokenizer/last",
                   help="frame tokenizer checkpoint folder (default checkpoints/frame_tokenizer/last)")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default data/mini_world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: the one found)")
    p.add_argument("--split", default="test", help="records split to score (default test; tune on val)")
    p.add_argument("--tokens", default="auto", help="--checkpoint: perception tokens for the LLM prompt (default auto)")
    p.add_argument("--max-samples", type=int, default=None, help="--checkpoint: imagine at most this many keyframes")
    p.add_argument("--fid-weights", default=None,
                   help="local TorchScript Inception feature extractor (.pt) for FID; never downloaded; no FID without it")
    p.add_argument("--out", default="outputs/world", help="output folder (default outputs/world)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return p


def imagined_codes(args: argparse.Namespace, fingerprint: str) -> dict:
    """{current sample token: (K,) codes of the imagined next frame} from --codes or the world LLM."""
    if args.codes:
        from perception.frame_codes import load_frame_codes

        codes, meta = load_frame_codes(args.codes)
        if meta.tokenizer_fingerprint != fingerprint:
            raise SystemExit(f"error: {args.codes}: codes of frame tokenizer {meta.tokenizer_fingerprint}, but --tokenizer "
                             f"{args.tokenizer} is {fingerprint}; score them with the tokenizer that made them")
        return codes
    # the world LLM (branch `world`): imported only when asked for
    from vla_world.world_inference import imagine_codes

    return imagine_codes(args.checkpoint, args.split, args.dataroot, tokens=args.tokens, max_samples=args.max_samples)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from perception.frame_codes import FrameCodeMeta, save_frame_codes
    from perception.frame_tokenizer import FrameTokenizer
    from perception.world_eval import (
        gather_frames,
        load_inception,
        markdown_table,
        score_rows,
    )
    from vla_world.data import load_records

    torch.set_num_threads(args.threads)
    try:
        tokenizer = FrameTokenizer.load(args.tokenizer)
        fid_model = load_inception(args.fid_weights) if args.fid_weights else None
        fingerprint = tokenizer.fingerprint()
        imagined = imagined_codes(args, fingerprint)
        records = load_records(args.dataroot, version=args.version, split=args.split)
        frames, counts = gather_frames(tokenizer, records, args.dataroot, imagined)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    rows = score_rows(tokenizer, frames, fid_model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = {"checkpoint": args.checkpoint} if args.checkpoint else {"codes": args.codes}
    table = markdown_table(rows, counts, args.split)
    meta = FrameCodeMeta(tokenizer.codebook_size, tokenizer.codes_per_frame, tokenizer.grid, fingerprint, tokenizer.image_size)
    save_frame_codes(out / "imagined_codes.safetensors", dict(zip(frames.tokens, frames.imagined_codes)), meta)
    (out / "world_metrics.json").write_text(json.dumps({"split": args.split, **source, "tokenizer": args.tokenizer,
                                                        "tokenizer_fingerprint": fingerprint, "counts": counts,
                                                        "rows": rows}, indent=1))
    (out / "report.md").write_text(f"# World model: imagined next CAM_FRONT on `{args.split}`\n\n{table}")
    print(table)
    print(f"wrote {out / 'report.md'}, {out / 'world_metrics.json'}, {out / 'imagined_codes.safetensors'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
