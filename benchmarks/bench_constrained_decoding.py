"""Planning latency per sample: template-constrained decoding and the plan head vs greedy, batch 1 and batch 16.

    python benchmarks/bench_constrained_decoding.py [--samples 16] [--repeats 3]

The `tiny` VLA (hidden 256, 4 layers, vocab 4096, random weights), real planning prompts (system
prompt, 36 scene / 8 agent / 12 map tokens, ego text, kinematic prior). Constrained decoding is
`vla_world.constrained.constrained_generate_ids`; greedy is what `VLAModel.generate_ids` runs
(transformers `generate` from `inputs_embeds`, KV cache, left padding), made to decode exactly as
many tokens as the constrained answer of the same prompt holds (its `<|im_end|>` included), so
both write answers of the same length. Batch 1 decodes every sample alone; batch 16 decodes them
together (greedy runs until its longest row is done, as `generate` does). Every repeat times
both decoders back to back on the same prompts, so load from other processes hits both alike;
figures are medians over repeats, ratios are greedy / constrained. One thread.

The plan head (`vla_world.model.plan_head`, the default decoder of a checkpoint that fitted one) is
timed the same way: `VLAModel.plan_from_head`, one forward pass over the prompt plus the head's MLP
ensemble (5 members, as configs/planning/tiny.yaml), then the codec writes the answer text. Its weights
are a fresh init marked fitted: latency does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from bench_llm_training import WIDTH, random_tokens

from vla_world.constrained import (
    Cursor,
    TemplateVocab,
    constrained_generate_ids,
    template_vocab,
)
from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.inference import head_text
from vla_world.model.plan_head import PlanHeadSpec
from vla_world.model.sequence import PLANNING_QUESTION, SYSTEM_PROMPT, EncodedSample
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.vla import VLAModel, left_pad, padded_positions
from vla_world.training.data import planning_examples


def build(samples: int) -> tuple[VLAModel, list[EncodedSample]]:
    records = [synthetic_record(speed=1.0 + 0.8 * i, token=f"s{i}") for i in range(samples)]
    answers = [e.answer for e in planning_examples(records)]
    tokenizer = train_tokenizer([SYSTEM_PROMPT, PLANNING_QUESTION] + answers * 20, 4096)
    model = VLAModel.create_tiny(tokenizer, WIDTH).eval()
    model.set_plan_head(PlanHeadSpec(model.base_llm.config.hidden_size, 128, 2, members=5))
    model.plan_head.fitted.fill_(1.0)  # timing only: the values of the weights do not change the work
    prompts = [model.sequence_builder.encode(planner_input(r), random_tokens(i), PLANNING_QUESTION)
               for i, r in enumerate(records)]
    return model, prompts


@torch.no_grad()
def greedy(model: VLAModel, prompts: list[EncodedSample], new_tokens: int) -> None:
    """`VLAModel.generate_ids` with a fixed number of new tokens (its code, plus min_new_tokens)."""
    ids, mask = left_pad([p.input_ids for p in prompts], model.pad_id)
    model.llm.generate(inputs_embeds=model.embed(ids, [p.features for p in prompts]), attention_mask=mask,
                       position_ids=padded_positions(mask), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False, num_beams=1, eos_token_id=model.eos_id, pad_token_id=model.pad_id,
                       use_cache=True)


def constrained(model: VLAModel, prompts: list[EncodedSample]) -> list[list[int]]:
    return constrained_generate_ids(model, [p.input_ids for p in prompts], [p.features for p in prompts])


def head(model: VLAModel, prompts: list[EncodedSample]) -> list[str]:
    plans = model.plan_from_head([p.input_ids for p in prompts], [p.features for p in prompts]).numpy()
    return [head_text(plan, None) for plan in plans]


def seconds(run: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def choices(vocab: TemplateVocab, ids: list[int]) -> int:
    """Steps where the model chose (= forward passes after the prompt's) in decoding `ids`."""
    start, cursor = vocab.forced(Cursor())
    count, position = 0, len(start)
    while not cursor.done:
        options, after = vocab.allowed(cursor)
        k = next(k for k in options if int(vocab.token_ids[k]) == ids[position])
        forced, cursor = vocab.forced(after[options.index(k)])
        position += 1 + len(forced)
        count += 1
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=16, help="prompts; batch 16 decodes them together")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of every setting (medians reported)")
    args = p.parse_args()
    torch.set_num_threads(1)
    model, prompts = build(args.samples)
    answers = constrained(model, prompts)
    lengths = [len(a) + 1 for a in answers]  # + <|im_end|>
    vocab = template_vocab(model)
    passes = [choices(vocab, a + [model.eos_id]) for a in answers]
    print(f"prompt {len(prompts[0].input_ids)}-{len(prompts[-1].input_ids)} tokens; answers "
          f"{min(lengths)}-{max(lengths)} tokens (mean {statistics.mean(lengths):.1f}), of which the model chooses "
          f"{statistics.mean(passes):.1f} (one forward pass each, the prompt's included); "
          f"greedy: {statistics.mean(lengths):.1f} passes")
    greedy(model, prompts[:1], 2)  # warm-up
    timings: dict[str, list[float]] = {k: [] for k in ("greedy 1", "constrained 1", "head 1", "greedy 16",
                                                       "constrained 16", "head 16")}
    for _ in range(args.repeats):
        g1 = c1 = h1 = 0.0
        for prompt, n in zip(prompts, lengths):
            g1 += seconds(greedy, model, [prompt], n)
            c1 += seconds(constrained, model, [prompt])
            h1 += seconds(head, model, [prompt])
        timings["greedy 1"].append(g1 / len(prompts))
        timings["constrained 1"].append(c1 / len(prompts))
        timings["head 1"].append(h1 / len(prompts))
        timings["greedy 16"].append(seconds(greedy, model, prompts, max(lengths)) / len(prompts))
        timings["constrained 16"].append(seconds(constrained, model, prompts) / len(prompts))
        timings["head 16"].append(seconds(head, model, prompts) / len(prompts))
    med = {k: statistics.median(v) for k, v in timings.items()}
    for key, value in med.items():
        spread = ", ".join(f"{t * 1000:.0f}" for t in timings[key])
        print(f"{key:>15}: {value * 1000:6.0f} ms/sample (median of {args.repeats}: {spread})")
    print(f"batch 1:  constrained is {med['greedy 1'] / med['constrained 1']:.2f}x faster per sample than greedy")
    print(f"batch 16: constrained is {med['greedy 16'] / med['constrained 16']:.2f}x faster per sample than greedy")
    print(f"constrained at batch 16 vs greedy at batch 1: {med['greedy 1'] / med['constrained 16']:.2f}x")
    print(f"batch 1:  the plan head is {med['greedy 1'] / med['head 1']:.2f}x faster per sample than greedy, "
          f"{med['constrained 1'] / med['head 1']:.2f}x than constrained")
    print(f"batch 16: the plan head is {med['greedy 16'] / med['head 16']:.2f}x faster per sample than greedy, "
          f"{med['constrained 16'] / med['head 16']:.2f}x than constrained")


if __name__ == "__main__":
    main()
