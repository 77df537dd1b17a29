"""Planning latency per sample of the `tiny` VLA on this CPU (1 thread): greedy decoding with and without the KV cache.

    python benchmarks/bench_planning_latency.py [--samples 4] [--new-tokens 90]

Every sample decodes exactly `--new-tokens` tokens (a 6-waypoint answer is ~90), batch size 1,
the prompt of a real planning sequence (system prompt, 36 scene / 8 agent / 12 map tokens, ego
text). Prints ms per sample for both and the ratio, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_llm_training import WIDTH, random_tokens

from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.model.sequence import PLANNING_QUESTION, SYSTEM_PROMPT
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.vla import VLAModel
from vla_world.training.data import planning_examples


@torch.no_grad()
def decode_seconds(model: VLAModel, sample, new_tokens: int, use_cache: bool) -> float:
    ids = torch.tensor([sample.input_ids])
    start = time.perf_counter()
    embeds = model.embed(ids, [sample.features])
    model.llm.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache, pad_token_id=model.pad_id)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=4, help="samples timed per setting")
    p.add_argument("--new-tokens", type=int, default=90, help="tokens decoded per sample")
    args = p.parse_args()
    torch.set_num_threads(1)
    records = [synthetic_record(speed=2.0 + i, token=f"s{i}") for i in range(args.samples)]
    answers = [e.answer for e in planning_examples(records)]
    tokenizer = train_tokenizer([SYSTEM_PROMPT, PLANNING_QUESTION] + answers * 20)
    model = VLAModel.create_tiny(tokenizer, WIDTH).eval()
    samples = [model.sequence_builder.encode(planner_input(r), random_tokens(i), PLANNING_QUESTION) for i, r in enumerate(records)]
    decode_seconds(model, samples[0], 4, True)  # warm-up
    timings = {}
    for use_cache in (True, False):
        total = sum(decode_seconds(model, s, args.new_tokens, use_cache) for s in samples)
        timings[use_cache] = total / len(samples)
        label = "with KV cache" if use_cache else "without cache"
        rate = args.new_tokens / timings[use_cache]
        print(f"{label}: {timings[use_cache] * 1000:7.0f} ms/sample ({rate:.0f} tok/s), "
              f"prompt {len(samples[0].input_ids)} tokens")
    print(f"ratio without / with KV cache: {timings[False] / timings[True]:.2f}x")


if __name__ == "__main__":
    main()
