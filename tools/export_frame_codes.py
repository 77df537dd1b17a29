"""Write the frame-code cache of one split: `cache/frames/<split>.safetensors`.

    python tools/export_frame_codes.py --checkpoint checkpoints/frame_tokenizer/last --split train

Every keyframe's own CAM_FRONT image (record.camera_paths[0]) is resized to the tokenizer's input
and encoded to its K codes (perception/frame_codes.py says the file format). The file is keyed by
the tokenizer's fingerprint (a hash of its weights): an up-to-date file (same fingerprint, same
samples) is left alone, one made by another tokenizer is rebuilt. `--force` always rebuilds.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/frame_tokenizer/last",
                   help="frame tokenizer checkpoint folder (default checkpoints/frame_tokenizer/last)")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default data/mini_world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: the one found)")
    p.add_argument("--split", default="train", help="records split: train | val | test (default train)")
    p.add_argument("--out", default="cache/frames", help="output folder; the file is <out>/<split>.safetensors")
    p.add_argument("--batch-size", type=int, default=32, help="images per encoder call (default 32)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--force", action="store_true", help="rebuild even when an up-to-date file exists")
    return p


def up_to_date(path: Path, fingerprint: str, sample_tokens: list[str]) -> bool:
    """True when `path` holds codes of every sample, made by the tokenizer with this fingerprint."""
    from perception.frame_codes import load_frame_codes

    if not path.is_file():
        return False
    try:
        codes, meta = load_frame_codes(path)
    except ValueError:
        return False
    return meta.tokenizer_fingerprint == fingerprint and set(codes) == set(sample_tokens)


def encode_records(tokenizer, records, dataroot: str, batch_size: int) -> dict:
    """{sample_token: (K,) int64} of each record's own CAM_FRONT."""
    import numpy as np
    from tqdm import tqdm

    from perception.frame_tokenizer_train import front_images

    out = {}
    for start in tqdm(range(0, len(records), batch_size), desc="encoding CAM_FRONT", unit="batch"):
        chunk = records[start:start + batch_size]
        codes = tokenizer.encode(front_images(chunk, dataroot, tokenizer.image_size))
        out.update({r.sample_token: np.asarray(c, dtype=np.int64) for r, c in zip(chunk, codes)})
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from perception.frame_codes import FrameCodeMeta, save_frame_codes
    from perception.frame_tokenizer import FrameTokenizer
    from vla_world.data import load_records

    torch.set_num_threads(args.threads)
    tokenizer = FrameTokenizer.load(args.checkpoint)
    fingerprint = tokenizer.fingerprint()
    records = load_records(args.dataroot, version=args.version, split=args.split)
    path = Path(args.out) / f"{args.split}.safetensors"
    if not args.force and up_to_date(path, fingerprint, [r.sample_token for r in records]):
        print(f"{path}: up to date (tokenizer {fingerprint}, {len(records)} keyframes), skipped")
        return 0
    meta = FrameCodeMeta(tokenizer.codebook_size, tokenizer.codes_per_frame, tokenizer.grid, fingerprint, tokenizer.image_size)
    save_frame_codes(path, encode_records(tokenizer, records, args.dataroot, args.batch_size), meta)
    print(f"wrote {path}: {len(records)} keyframes x {tokenizer.codes_per_frame} codes (tokenizer {fingerprint})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
