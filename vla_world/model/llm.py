"""The language model behind the planner: a locally initialised `tiny` Qwen2 or a local Qwen2.5 folder.

Presets (never downloaded; the Qwen2.5 ones need `--llm PATH` to an existing folder):
  tiny           Qwen2 architecture at toy size (hidden 256, 4 layers, 4 heads, 2 KV heads, tied
                 embeddings), random init, with our own BPE tokenizer (`vla_world.model.tokenizer`)
  qwen2.5-0.5b   hidden 896   } a local Hugging Face folder (config.json, *.safetensors,
  qwen2.5-3b     hidden 2048  } tokenizer.json), e.g. a copy of Qwen/Qwen2.5-0.5B-Instruct
  qwen2.5-7b     hidden 3584  }
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from vla_world.model.presets import PRESETS, PRETRAINED_PRESETS, TinyLLMSize
from vla_world.model.tokenizer import add_special_tokens, load_tokenizer

__all__ = ["PRESETS", "PRETRAINED_PRESETS", "TinyLLMSize", "build_tiny_llm", "llm_from_config_dict",
           "load_pretrained_llm"]

def build_tiny_llm(vocab_size: int, size: TinyLLMSize, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 with `vocab_size` rows (rounded up to a multiple of 64)."""
    config = Qwen2Config(
        vocab_size=-(-vocab_size // 64) * 64,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_kv_heads,
        max_position_embeddings=size.max_positions,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def llm_from_config_dict(config: dict) -> PreTrainedModel:
    """Rebuild an LLM skeleton (random weights) from the `config.to_dict()` a checkpoint stored."""
    return Qwen2ForCausalLM(Qwen2Config(**config))


def load_pretrained_llm(preset: str, path: str | Path | None) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a local Qwen2.5 folder for `preset`, add our special tokens and resize the embeddings."""
    if preset not in PRETRAINED_PRESETS:
        raise ValueError(f"llm preset {preset!r}: expected one of {list(PRESETS)}")
    if path is None:
        raise FileNotFoundError(f"llm preset {preset!r} needs a local checkpoint folder: pass --llm PATH "
                                "(or model.llm_path in the config); nothing is ever downloaded")
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}/config.json: not a Hugging Face model folder; point --llm at a local "
                                f"copy of Qwen2.5 ({preset})")
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32)
    if model.config.hidden_size != PRETRAINED_PRESETS[preset]:
        raise ValueError(f"{folder}: hidden size {model.config.hidden_size} does not match preset {preset!r} "
                         f"({PRETRAINED_PRESETS[preset]}); pick the preset that matches the folder")
    tokenizer = load_tokenizer(folder)
    add_special_tokens(tokenizer)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    return model, tokenizer
