"""The tokenizer of the `tiny` LLM: a byte-level BPE trained on this dataset's own text.

Why our own: the `tiny` preset is initialised locally (nothing is downloaded), so it needs a
vocabulary; a few thousand BPE merges over the stage examples and prompts are enough.

It is trained with Qwen2's pre-tokenizer (one digit per token, like the real Qwen2.5), which
also avoids the transformers-5 pitfall where `AutoTokenizer` swaps in Qwen2's pre-tokenizer when
a `config.json` of type qwen2 sits next to `tokenizer.json` (docs: shared notes, dependencies §5).
We always load with `PreTrainedTokenizerFast`, so the saved `tokenizer.json` is used as written.

    tok = train_tokenizer(texts, vocab_size=4096); tok.save_pretrained(folder)
    tok = load_tokenizer(folder)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from planning.structured import TAG_TOKENS

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # end of a ChatML turn; the end-of-sequence token for generation

# Structure tokens: delimiters around each block of the prompt and around the answer. The
# structured answer's block tags (planning.structured.TAG_TOKENS, the one list of them) come last,
# so the ids of the older tokens stay where they were.
_PROMPT_STRUCTURE: tuple[str, ...] = (
    "<scene_start>", "<scene_end>", "<agent_start>", "<agent_end>", "<map_start>", "<map_end>",
    "<object_start>", "<object_end>", "<traj_start>", "<traj_end>", "<prediction>", "</prediction>",
)
STRUCTURE_TOKENS: tuple[str, ...] = _PROMPT_STRUCTURE + tuple(t for t in TAG_TOKENS if t not in _PROMPT_STRUCTURE)
# Placeholders: one per token type; their positions receive projected perception tokens.
PLACEHOLDERS: dict[str, str] = {"scene": "<SCENE>", "agent": "<AGENT>", "map": "<MAP>", "object": "<OBJECT>"}
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, IM_START, IM_END, *STRUCTURE_TOKENS, *PLACEHOLDERS.values())
# The ego-state token's placeholder (vla_world.model.ego_token): registered after the BPE vocabulary,
# not trained with it, so a fresh tokenizer keeps every id it had before the token existed and an
# older checkpoint's tokenizer just gains it (VLAModel.grow_vocabulary gives it a row).
EGO_PLACEHOLDER = "<EGO>"
LATE_SPECIAL_TOKENS: tuple[str, ...] = (EGO_PLACEHOLDER,)

# Qwen2's split pattern (transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX): single digits, words, punctuation.
QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`; the special tokens get the first ids (pad = 0)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(bpe)


def wrap_tokenizer(bpe: Tokenizer) -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token=PAD_TOKEN, eos_token=IM_END)
    add_special_tokens(tok)
    return tok


def add_special_tokens(tok: PreTrainedTokenizerFast) -> int:
    """Register the structure tokens and placeholders (no-op for those already there); returns how many were new."""
    wanted = SPECIAL_TOKENS + LATE_SPECIAL_TOKENS
    missing = [t for t in wanted if t not in tok.get_vocab()]
    current = [str(t) for t in tok.additional_special_tokens] if hasattr(tok, "additional_special_tokens") else []
    tok.add_special_tokens({"additional_special_tokens": current + [t for t in wanted if t not in current]},
                           replace_extra_special_tokens=False)
    if tok.pad_token is None:
        tok.pad_token = PAD_TOKEN if PAD_TOKEN in tok.get_vocab() else IM_END
    return len(missing)


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with `save_pretrained` (ours or a Qwen2.5 one) and make sure our tokens exist."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder}/tokenizer.json: no tokenizer here; a checkpoint folder written by "
                                "tools/train.py or a local Qwen2.5 folder holds one")
    tok = PreTrainedTokenizerFast.from_pretrained(str(folder))
    add_special_tokens(tok)
    return tok


def special_token_ids(tok: PreTrainedTokenizerFast) -> dict[str, int]:
    return {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
