"""LLM presets and the tiny model's shape, without importing torch or transformers.

Why a module of its own: the stage configs validate `model.preset` and build `TinyLLMSize`; with
these names in `vla_world.model.llm` (which imports transformers) reading a config took seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

# preset -> hidden size, to check a local folder is the model its preset says
PRETRAINED_PRESETS: dict[str, int] = {"qwen2.5-0.5b": 896, "qwen2.5-3b": 2048, "qwen2.5-7b": 3584}
PRESETS: tuple[str, ...] = ("tiny", *PRETRAINED_PRESETS)


@dataclass(frozen=True)
class TinyLLMSize:
    """Shape of the locally initialised Qwen2 (the `tiny` preset)."""

    hidden_size: int = 256
    intermediate_size: int = 688
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_positions: int = 2048
