"""Shared helpers for the model/training tests: synthetic records, fake perception tokens, a tiny VLA."""

from __future__ import annotations

import torch

from perception.tokens import PerceptionTokens
from vla_world.data.records import SampleRecord
from vla_world.data.synthetic import synthetic_record
from vla_world.model.llm import TinyLLMSize
from vla_world.model.sequence import PLANNING_QUESTION, SYSTEM_PROMPT
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.vla import VLAModel
from vla_world.training.data import planning_examples

WIDTH = 16  # perception token width D in these tests
SMALL = TinyLLMSize(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2, max_positions=2048)


def fake_tokens(record: SampleRecord, scene: int = 3, maps: int = 2, seed: int = 0) -> PerceptionTokens:
    """Random tokens shaped like perception's, one agent token per GT agent (same track ids)."""
    g = torch.Generator().manual_seed(seed)
    agents = record.num_agents
    return PerceptionTokens(
        scene=torch.randn(scene, WIDTH, generator=g), agents=torch.randn(agents, WIDTH, generator=g),
        map=torch.randn(maps, WIDTH, generator=g), agent_boxes=torch.from_numpy(record.agent_box).float(),
        agent_classes=torch.from_numpy(record.agent_class).long(),
        agent_track_ids=torch.from_numpy(record.agent_track_id).long(),
        map_types=torch.zeros(maps, dtype=torch.long), map_points=torch.zeros(maps, 4, 2))


def small_records() -> list[SampleRecord]:
    return [synthetic_record(speed=s, agents=[("car", 3.0, 10.0, 0.0, 2.0), ("pedestrian", -4.0, 6.0, 1.0, 0.0)],
                             token=f"tok{i}") for i, s in enumerate((2.0, 5.0, 8.0))]


def small_model(records: list[SampleRecord]) -> VLAModel:
    texts = [SYSTEM_PROMPT, PLANNING_QUESTION] + [e.answer for e in planning_examples(records)] * 5
    return VLAModel.create_tiny(train_tokenizer(texts, 400), WIDTH, SMALL)
