"""Latency of one structured planning answer vs one plain answer: constrained decoding, batch 1, tiny, 1 thread.

    python benchmarks/bench_structured_answer.py [--samples 8] [--repeats 3]

The `tiny` VLA (hidden 256, 4 layers, vocab 4096, random weights) on real planning prompts
(system prompt for each answer form, 36 scene / 8 agent / 12 map tokens, ego text, kinematic
prior). Plain: `vla_world.constrained.constrained_generate_ids` (the trajectory template).
Structured: `vla_world.constrained_structured.structured_generate_ids` with the default blocks
(perception, prediction, think, action, answer; no visual). Random weights never choose a
closing tag, so their free text runs to the caps; two structured rows are therefore timed:
  * "at the caps": free text until the caps (128 perception + 96 think tokens), the worst case;
  * "training length": the caps set to the mean length of those blocks in the training answers
    of the same records (what a trained model that writes answers like its targets would take).
A third structured row adds the `<visual>` block (all blocks, at training length): the model is
grown by the tiny frame tokenizer's vocabulary (256 codes, 60 per frame, as the world stage does)
and writes exactly 60 codes, one forward pass each.
Every repeat times the three back to back on the same prompts; figures are medians over
repeats, ratios are structured / plain. The answer lengths (tokens) are printed too.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch
from bench_llm_training import WIDTH, random_tokens

from planning.structured import AnswerConfig
from vla_world.constrained import constrained_generate_ids
from vla_world.constrained_structured import (
    TEXT_CAPS,
    StructuredVocab,
    structured_generate_ids,
)
from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.model.sequence import (
    PLANNING_QUESTION,
    SYSTEM_PROMPT,
    PromptOptions,
    system_prompt,
)
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.visual_tokens import VisualSpec
from vla_world.model.vla import VLAModel
from vla_world.training.data import planning_examples

STRUCTURED = AnswerConfig(structured=True)
VISUAL = AnswerConfig(structured=True, visual=True)
TINY_FRAMES = VisualSpec(codebook_size=256, codes_per_frame=60)  # configs/frame_tokenizer/tiny.yaml


def records(samples: int) -> list:
    rng = np.random.default_rng(0)
    out = []
    for i in range(samples):
        agents = [(str(rng.choice(["car", "pedestrian", "truck"])), float(rng.uniform(-12, 12)),
                   float(rng.uniform(-5, 25)), float(rng.normal(0, 2)), float(rng.normal(0, 2))) for _ in range(4)]
        out.append(synthetic_record(speed=1.0 + 0.8 * i, agents=agents, token=f"s{i}"))
    return out


def tokens_for(record, seed: int):
    """Random features, with the record's boxes and classes as the perception output (what <perception> names)."""
    tokens = random_tokens(seed)
    count = min(len(record.agent_box), tokens.agents.shape[0])
    tokens.agent_boxes[:count] = torch.from_numpy(record.agent_box[:count]).float()
    tokens.agent_classes[:count] = torch.from_numpy(record.agent_class[:count]).long()
    return tokens


def build(samples: int):
    recs = records(samples)
    tokens = {r.sample_token: tokens_for(r, i) for i, r in enumerate(recs)}
    plain = [e.answer for e in planning_examples(recs)]
    structured = [e.answer for e in planning_examples(recs, STRUCTURED, tokens)]
    corpus = [SYSTEM_PROMPT, system_prompt(PromptOptions(answer_blocks=STRUCTURED.blocks())), PLANNING_QUESTION]
    tokenizer = train_tokenizer(corpus + (plain + structured) * 20, 4096)
    model = VLAModel.create_tiny(tokenizer, WIDTH).eval()
    model.grow_visual(TINY_FRAMES)  # the plain and structured rows never read the code rows
    prompts = {}
    for form, blocks in (("plain", ()), ("structured", STRUCTURED.blocks()), ("visual", VISUAL.blocks())):
        model.prompt = dataclasses.replace(model.prompt, answer_blocks=blocks)
        prompts[form] = [model.sequence_builder.encode(planner_input(r), tokens[r.sample_token], PLANNING_QUESTION)
                         for r in recs]
    return model, prompts, structured


def block_lengths(model: VLAModel, answers: list[str]) -> dict[str, int]:
    """Mean token count of the free-text blocks in the training answers."""
    from planning.structured import parse_answer

    lengths = {}
    for block in TEXT_CAPS:
        counts = [len(model.tokenizer(parse_answer(a).blocks[block], add_special_tokens=False)["input_ids"])
                  for a in answers]
        lengths[block] = max(1, round(statistics.mean(counts)))
    return lengths


def timed(run, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = run(*args)
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=8, help="prompts, each decoded alone (batch 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (medians reported)")
    args = p.parse_args()
    torch.set_num_threads(1)
    model, prompts, answers = build(args.samples)
    typical = block_lengths(model, answers)
    codes = (tuple(model.visual_ids.codes.tolist()), TINY_FRAMES.codes_per_frame)
    vocabs = {"structured, at the caps": StructuredVocab(model.tokenizer, model.eos_id),
              "structured, training length": StructuredVocab(model.tokenizer, model.eos_id, typical),
              "structured + visual, training length": StructuredVocab(model.tokenizer, model.eos_id, typical, *codes)}
    forms = {name: ("visual" if "visual" in name else "structured") for name in vocabs}
    print(f"training answers' free-text blocks: {typical} tokens on average; caps {TEXT_CAPS}")

    def plain(prompt):
        return constrained_generate_ids(model, [prompt.input_ids], [prompt.features])[0]

    def structured(prompt, vocab, form):
        blocks = (VISUAL if form == "visual" else STRUCTURED).blocks()
        return structured_generate_ids(model, [prompt.input_ids], [prompt.features], blocks, vocab)[0]

    plain(prompts["plain"][0])  # warm-up (vocabularies, caches)
    for name, vocab in vocabs.items():
        structured(prompts[forms[name]][0], vocab, forms[name])
    timings: dict[str, list[float]] = {"plain": [], **{k: [] for k in vocabs}}
    lengths: dict[str, list[int]] = {k: [] for k in timings}
    for _ in range(args.repeats):
        totals = dict.fromkeys(timings, 0.0)
        for i in range(args.samples):
            seconds, ids = timed(plain, prompts["plain"][i])
            totals["plain"] += seconds
            lengths["plain"].append(len(ids) + 1)
            for name, vocab in vocabs.items():
                seconds, ids = timed(structured, prompts[forms[name]][i], vocab, forms[name])
                totals[name] += seconds
                lengths[name].append(len(ids) + 1)
        for name, total in totals.items():
            timings[name].append(total / args.samples)
    med = {k: statistics.median(v) for k, v in timings.items()}
    for name, value in med.items():
        spread = ", ".join(f"{t * 1000:.0f}" for t in timings[name])
        print(f"{name:>28}: {value * 1000:6.0f} ms/answer, {statistics.mean(lengths[name]):5.1f} tokens "
              f"(median of {args.repeats}: {spread})")
    for name in vocabs:
        print(f"{name}: {med[name] / med['plain']:.2f}x the plain answer's latency")


if __name__ == "__main__":
    main()
