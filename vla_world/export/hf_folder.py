"""A VLA checkpoint's LLM and tokenizer as a plain Hugging Face folder: the base model of a LLaMA-Factory run.

Why: LLaMA-Factory loads `model_name_or_path` with AutoModelForCausalLM / AutoTokenizer; our
checkpoints hold the LLM inside a VLA model (projectors, LoRA adapters, vla.json). The projectors
are left behind: a model fine-tuned on the text or image export never reads perception tokens.

    save_llm_folder("checkpoints/planning/last", "outputs/llamafactory-smoke/model")
    fresh_llm_folder(texts, "outputs/llamafactory-smoke/model")   # no checkpoint: a random tiny LLM + a BPE on texts
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerFast

from vla_world.model.llm import build_tiny_llm
from vla_world.model.presets import TinyLLMSize
from vla_world.model.tokenizer import IM_END, train_tokenizer
from vla_world.model.vla import VLAModel


def save_llm_folder(checkpoint: str | Path, out: str | Path) -> Path:
    """Write config.json, model.safetensors and the tokenizer files of the checkpoint's LLM (LoRA merged)."""
    model = VLAModel.from_folder(checkpoint)
    model.merge_lora()
    return write_folder(model.base_llm, model.tokenizer, out)


def fresh_llm_folder(texts: Iterable[str], out: str | Path, vocab_size: int = 1024, seed: int = 0) -> Path:
    """A random tiny Qwen2 (the `tiny` preset's shape) and a byte-level BPE trained on `texts`."""
    tokenizer = train_tokenizer(texts, vocab_size)
    return write_folder(build_tiny_llm(len(tokenizer), TinyLLMSize(), seed), tokenizer, out)


def write_folder(llm: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, out: str | Path) -> Path:
    llm.config.architectures = [type(llm).__name__]
    llm.config.eos_token_id = tokenizer.convert_tokens_to_ids(IM_END)  # the end of every answer
    llm.config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    llm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
