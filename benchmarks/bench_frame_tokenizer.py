"""Benchmark: frame tokenizer encode / decode latency per image on this CPU, one thread.

    python benchmarks/bench_frame_tokenizer.py                 # tiny at batch 1 and 32, + FSDrive size
    python benchmarks/bench_frame_tokenizer.py --skip-fsdrive --repeats 5

Random weights and random images (latency does not depend on either), eval mode, no grad. Printed:
ms per image (median of repeats after one warm-up) for encode (image -> codes) and decode (codes ->
image) of configs/frame_tokenizer/tiny.yaml at batch 1 and 32, and of configs/frame_tokenizer/fsdrive.yaml's
architecture (128x192, 384 codes, 16,384 entries) at batch 1; then the ratios measured side by side
in this run: batched vs single, decode vs encode, FSDrive size vs tiny.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

CONFIGS = {"tiny": "configs/frame_tokenizer/tiny.yaml", "fsdrive": "configs/frame_tokenizer/fsdrive.yaml"}


def time_call(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(config: str, batch: int, repeats: int) -> dict:
    import numpy as np
    import torch

    from perception.frame_tokenizer import FrameTokenizer, FrameTokenizerConfig
    from vla_world.config import load_config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = FrameTokenizer.build(load_config(CONFIGS[config], FrameTokenizerConfig))
    h, w = tokenizer.image_size
    images = np.random.default_rng(0).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    codes = tokenizer.encode(images)
    encode = time_call(lambda: tokenizer.encode(images), repeats)
    decode = time_call(lambda: tokenizer.decode(codes), repeats)
    return {"case": f"{config}, batch {batch}", "image": f"{h}x{w}", "codes": tokenizer.codes_per_frame,
            "encode_ms": 1000 * encode / batch, "decode_ms": 1000 * decode / batch}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case after one warm-up (default 3)")
    p.add_argument("--skip-fsdrive", action="store_true", help="only the tiny preset")
    args = p.parse_args(argv)
    rows = [run_case("tiny", 1, args.repeats), run_case("tiny", 32, args.repeats)]
    if not args.skip_fsdrive:
        rows.append(run_case("fsdrive", 1, max(1, args.repeats // 3)))
    print("| case | image | codes | encode (ms / image) | decode (ms / image) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['image']} | {r['codes']} | {r['encode_ms']:.1f} | {r['decode_ms']:.1f} |")
    single, batched = rows[0], rows[1]
    print(f"\nbatch 32 vs 1, per image: encode x{batched['encode_ms'] / single['encode_ms']:.2f}, "
          f"decode x{batched['decode_ms'] / single['decode_ms']:.2f}; decode vs encode at batch 1: "
          f"x{single['decode_ms'] / single['encode_ms']:.2f}")
    if len(rows) > 2:
        print(f"FSDrive size vs tiny at batch 1: encode x{rows[2]['encode_ms'] / single['encode_ms']:.0f}, "
              f"decode x{rows[2]['decode_ms'] / single['decode_ms']:.0f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
