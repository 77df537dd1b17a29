"""Frame codes as LLM tokens: the `<visual>` block's vocabulary and the growth of the embedding tables.

Why: the world stage has the LLM write the discrete VQ codes of the next front-camera frame
(perception/frame_codes.py). Each code is a token of its own, as FSDrive/LLaMA-Factory do:

    <visual><vis_17><vis_3>...<vis_255></visual>      (exactly K = codes_per_frame code tokens)

Names: `<vis_0>` .. `<vis_{N-1}>` for a codebook of N entries, and the delimiters `<visual>` /
`</visual>` (the block name of paper 004's structured answer). All are added as special tokens, so
a BPE never splits them and `decode(skip_special_tokens=False)` keeps them; the LLaMA-Factory export
lists `visual_token_names(N)` as `new_special_tokens`.

Growth (`add_visual_tokens`): the embedding rows of the new ids (and the output rows when untied)
are set to the mean of the old vocabulary's rows plus N(0, 1/sqrt(H)) noise, LLaMA-Factory's
`_noisy_mean_initialization`: the mean keeps the new logits in the range of the old ones, the noise
breaks the symmetry between codes. The table grows (to a multiple of 64) only when the ids do not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from vla_world.model.sequence import WORLD_QUESTION

VISUAL_START = "<visual>"
VISUAL_END = "</visual>"


def code_token(code: int) -> str:
    return f"<vis_{code}>"


def visual_token_names(codebook_size: int) -> list[str]:
    """Every token the world stage adds, in id order: the two delimiters, then one per code."""
    return [VISUAL_START, VISUAL_END] + [code_token(i) for i in range(codebook_size)]


@dataclass(frozen=True)
class VisualSpec:
    """How a model writes a frame: codebook size N and codes per frame K (stored in vla.json)."""

    codebook_size: int  # N: code ids 0 .. N-1 are tokens <vis_0> .. <vis_{N-1}>
    codes_per_frame: int  # K: exactly this many code tokens between <visual> and </visual>

    def __post_init__(self) -> None:
        if self.codebook_size < 1 or self.codes_per_frame < 1:
            raise ValueError(f"visual tokens: codebook_size {self.codebook_size} and codes_per_frame "
                             f"{self.codes_per_frame} must both be >= 1")


@dataclass(frozen=True)
class VisualIds:
    """Token ids of the visual block in one tokenizer."""

    start: int  # <visual>
    end: int  # </visual>
    codes: torch.Tensor  # (N,) long: token id of code i at index i

    def code_of(self, token_id: int) -> int:
        """The code index of a code token id (ValueError for any other id)."""
        hits = (self.codes == token_id).nonzero().flatten()
        if hits.numel() == 0:
            raise ValueError(f"token id {token_id} is not a visual code token")
        return int(hits[0])

    @property
    def all_ids(self) -> torch.Tensor:
        return torch.cat([torch.tensor([self.start, self.end]), self.codes])


def visual_ids(tokenizer: PreTrainedTokenizerFast, spec: VisualSpec) -> VisualIds:
    """The ids of `spec`'s tokens; a KeyError naming the fix if the tokenizer lacks them."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in visual_token_names(spec.codebook_size) if t not in vocab]
    if missing:
        raise KeyError(f"tokenizer: no visual token {missing[0]} (and {len(missing) - 1} more); the checkpoint was "
                       "not trained by the world stage (tools/train.py --stage world adds them)")
    codes = torch.tensor([vocab[code_token(i)] for i in range(spec.codebook_size)], dtype=torch.long)
    return VisualIds(vocab[VISUAL_START], vocab[VISUAL_END], codes)


def code_tokens_text(codes) -> str:
    """One token per code, no delimiters: the inside of a `<visual>` block."""
    return "".join(code_token(int(c)) for c in codes)


def codes_text(codes) -> str:
    """The answer text of one frame: `<visual>` + one token per code + `</visual>`."""
    return VISUAL_START + code_tokens_text(codes) + VISUAL_END


def world_question(current_codes=None) -> str:
    """The world stage's question; with `current_codes` (the codes of NOW's CAM_FRONT, an input) it
    shows the current frame first, as FSDrive's pretraining shows the current image."""
    if current_codes is None:
        return WORLD_QUESTION
    return f"Front camera now: {codes_text(current_codes)}\n{WORLD_QUESTION}"


def register_visual_tokens(tokenizer: PreTrainedTokenizerFast, codebook_size: int) -> list[int]:
    """Add the visual tokens as special tokens (those already there are kept); returns the new ids."""
    before = set(tokenizer.get_vocab().values())
    vocab = tokenizer.get_vocab()
    wanted = [t for t in visual_token_names(codebook_size) if t not in vocab]
    tokenizer.add_special_tokens({"additional_special_tokens": wanted}, replace_extra_special_tokens=False)
    return sorted(set(tokenizer.get_vocab().values()) - before)


def mean_init_rows(weight: torch.Tensor, new_ids: list[int], old_rows: int, noise: bool,
                   generator: torch.Generator | None = None) -> None:
    """Set rows `new_ids` of `weight` (V, H) to the mean of rows 0..old_rows-1 (+ N(0, 1/sqrt(H)) noise)."""
    if not new_ids:
        return
    with torch.no_grad():
        mean = weight[:old_rows].float().mean(dim=0)
        rows = mean.expand(len(new_ids), -1).clone()
        if noise:
            rows += torch.randn(rows.shape, generator=generator) * weight.shape[1] ** -0.5
        weight[torch.tensor(new_ids)] = rows.to(weight.dtype)


def add_visual_tokens(llm: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, codebook_size: int,
                      noise: bool = True, seed: int = 0) -> list[int]:
    """Register the visual tokens and grow `llm`'s tables to hold them; returns the ids that were new.

    The mean is over the rows of the tokenizer's vocabulary before growth (padding rows of a table
    rounded up to 64 are not vocabulary, so they are left out of the mean).
    """
    old_rows = len(tokenizer)
    new_ids = register_visual_tokens(tokenizer, codebook_size)
    if not new_ids:
        return []
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
        llm.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=False)
    generator = torch.Generator().manual_seed(seed)
    mean_init_rows(llm.get_input_embeddings().weight, new_ids, old_rows, noise, generator)
    if not llm.config.tie_word_embeddings:
        mean_init_rows(llm.get_output_embeddings().weight, new_ids, old_rows, noise, generator)
    return new_ids
