"""The GPU paths no CPU run covers: a Qwen2.5-0.5B-shaped VLA from random init, in bf16, on CUDA.

    python benchmarks/bench_gpu.py                       # on a CUDA machine: the 0.5B shape, bf16
    python benchmarks/bench_gpu.py --shape tiny --device cpu --dtype float32   # the same path, here

Checks, in one run, and prints one JSON line per check:
  * train: the spliced VLA (planning prompts, perception features through the projectors) trains
    in `--dtype` with AdamW: loss after `--steps` steps on one repeated batch vs before, tokens/s;
  * batch: teacher-forced logits of a left-padded batch vs each prompt alone (max gap; float32 is
    exact to 1e-5 in tests/test_model_batching.py, bf16 shows its own rounding here);
  * generate: greedy decoding with the KV cache, per-sample latency at batch 1 and batch 16, and
    whether batched ids equal one-at-a-time ids.

Nothing is downloaded: the LLM is `Qwen2ForCausalLM(Qwen2Config(...))` with the 0.5B dimensions and
random weights, the tokenizer our own byte-level BPE. No nuScenes data: synthetic records
(vla_world.data.synthetic) and random perception tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from perception.tokens import PerceptionTokens
from planning.codec import format_trajectory
from vla_world.data.planner_input import planner_input
from vla_world.data.synthetic import synthetic_record
from vla_world.model.sequence import PLANNING_QUESTION, SYSTEM_PROMPT, collate
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.vla import VLAModel

WIDTH = 64  # perception token width (the tiny perception's)
# Qwen2.5-0.5B's shape (config.json of the public checkpoint); weights are random here.
SHAPES = {
    "qwen2.5-0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                         "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "vocab_size": 4096, "tie_word_embeddings": True},
}


def build_model(shape: str, dtype: torch.dtype, device: str) -> tuple[VLAModel, list]:
    records = [synthetic_record(speed=2.0 + i, agents=[("car", 3.0, 10.0 + i, 0.0, 2.0)], token=f"s{i}")
               for i in range(16)]
    corpus = [SYSTEM_PROMPT, PLANNING_QUESTION] + [format_trajectory(r.ego_future) for r in records] * 5
    tokenizer = train_tokenizer(corpus, 400)
    torch.manual_seed(0)
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=4096, attn_implementation="sdpa")
    model = VLAModel.create_pretrained(Qwen2ForCausalLM(config), tokenizer, WIDTH, shape)
    return model.to(device=device, dtype=dtype), records


def tokens_for(record, seed: int) -> PerceptionTokens:
    g = torch.Generator().manual_seed(seed)
    agents = record.num_agents
    return PerceptionTokens(
        scene=torch.randn(6, WIDTH, generator=g), agents=torch.randn(agents, WIDTH, generator=g),
        map=torch.randn(4, WIDTH, generator=g), agent_boxes=torch.from_numpy(record.agent_box).float(),
        agent_classes=torch.from_numpy(record.agent_class).long(),
        agent_track_ids=torch.from_numpy(record.agent_track_id).long(),
        map_types=torch.zeros(4, dtype=torch.long), map_points=torch.zeros(4, 4, 2))


def to_device(batch: dict, device: str, dtype: torch.dtype) -> dict:
    moved = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    moved["features"] = [{k: t.to(device=device, dtype=dtype) for k, t in f.items()} for f in batch["features"]]
    return moved


def check_train(model: VLAModel, records: list, steps: int, device: str, dtype: torch.dtype) -> dict:
    builder = model.sequence_builder
    samples = [builder.encode(planner_input(r), tokens_for(r, i), PLANNING_QUESTION, format_trajectory(r.ego_future))
               for i, r in enumerate(records[:8])]
    batch = to_device(collate(samples, model.pad_id), device, dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses, start = [], None
    for step in range(steps + 1):
        if step == 1:
            sync(device)
            start = time.perf_counter()
        loss = model(batch["input_ids"], batch["attention_mask"], batch["features"], labels=batch["labels"]).loss
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    tokens = int(batch["attention_mask"].sum())
    return {"check": "train", "loss_first": losses[0], "loss_last": losses[-1], "finite": all(map(_finite, losses)),
            "learns": losses[-1] < losses[0], "step_s": round(seconds, 4), "tokens_per_s": round(tokens / seconds)}


@torch.no_grad()
def check_batch(model: VLAModel, records: list, device: str, dtype: torch.dtype) -> dict:
    builder = model.sequence_builder
    questions = [PLANNING_QUESTION, "Plan.", PLANNING_QUESTION + " Keep it smooth.", "Plan now."]  # unequal lengths
    samples = [builder.encode(planner_input(r), tokens_for(r, i), q) for i, (r, q) in enumerate(zip(records, questions))]
    ids, mask = left_pad_batch(samples, model.pad_id)
    feats = to_device({"features": [s.features for s in samples]}, device, dtype)["features"]
    batched = model(ids.to(device), mask.to(device), feats).logits
    gap = 0.0
    for i, s in enumerate(samples):
        alone = model(torch.tensor([s.input_ids], device=device), torch.ones(1, len(s.input_ids), device=device,
                                                                             dtype=torch.long), feats[i:i + 1]).logits
        n = len(s.input_ids)
        gap = max(gap, float((batched[i, -n:].float() - alone[0].float()).abs().max()))
    return {"check": "batch", "dtype": str(dtype), "max_logit_gap": gap}


def left_pad_batch(samples: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    from vla_world.model.vla import left_pad

    return left_pad([s.input_ids for s in samples], pad_id)


@torch.no_grad()
def check_generate(model: VLAModel, records: list, device: str, dtype: torch.dtype, new_tokens: int) -> dict:
    builder = model.sequence_builder
    prompts = [builder.encode(planner_input(r), tokens_for(r, i), PLANNING_QUESTION) for i, r in enumerate(records)]
    feats = to_device({"features": [p.features for p in prompts]}, device, dtype)["features"]
    ids = [p.input_ids for p in prompts]
    model.generate_ids(ids[:1], feats[:1], 4)  # warm-up (kernels, allocator)
    sync(device)
    start = time.perf_counter()
    alone = [model.generate_ids([ids[i]], [feats[i]], new_tokens)[0] for i in range(4)]
    sync(device)
    per_sample_b1 = (time.perf_counter() - start) / 4
    start = time.perf_counter()
    batched = model.generate_ids(ids, feats, new_tokens)
    sync(device)
    per_sample_b16 = (time.perf_counter() - start) / len(ids)
    same = sum(a == b for a, b in zip(alone, batched[:4]))
    return {"check": "generate", "new_tokens": new_tokens, "per_sample_s_batch1": round(per_sample_b1, 4),
            "per_sample_s_batch16": round(per_sample_b16, 4), "batch16_speedup": round(per_sample_b1 / per_sample_b16, 2),
            "batched_equals_alone": f"{same}/4"}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _finite(x: float) -> bool:
    return math.isfinite(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b", help="LLM dimensions (random init)")
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="weights and activations")
    p.add_argument("--steps", type=int, default=10, help="training steps on one repeated batch")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt (greedy, KV cache)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here, skipped (`--shape tiny --device cpu --dtype float32` runs the same path)")
        return 0  # `make bench` runs every benchmark; a CPU machine has nothing to measure here
    if args.device == "cpu":
        torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    model, records = build_model(args.shape, dtype, args.device)
    params = sum(p.numel() for p in model.parameters())
    info = {"check": "setup", "shape": args.shape, "device": args.device, "dtype": args.dtype, "parameters": params}
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(info), flush=True)
    print(json.dumps(check_train(model.train(), records, args.steps, args.device, dtype)), flush=True)
    print(json.dumps(check_batch(model.eval(), records, args.device, dtype)), flush=True)
    print(json.dumps(check_generate(model.eval(), records, args.device, dtype, args.new_tokens)), flush=True)
    if args.device.startswith("cuda"):
        print(json.dumps({"check": "memory", "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
