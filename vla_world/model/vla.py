"""The VLA model: projected perception tokens spliced into the LLM's `inputs_embeds`.

    model = VLAModel.create_tiny(tokenizer, token_width=D)  or  VLAModel.from_folder(checkpoint)
    out = model(input_ids, attention_mask, features, labels)   # training: out.loss
    texts = model.generate_texts(batch, max_new_tokens=96)     # greedy, KV cache

Splicing: the text is embedded as usual, then every position holding a placeholder token
(`<SCENE>`, `<AGENT>`, `<MAP>`, `<OBJECT>`) is overwritten, in order, by the matching projected
perception token (`masked_scatter` walks the batch row by row, the same order the features are
concatenated in). A count mismatch is an error, never a silent shift.

Padding: training batches are right-padded (`vla_world.training.data.collate`), generation pads
on the left (`left_pad`). Both `forward` and `generate_ids` pass `padded_positions(mask)`, so every
real token has the position it has alone (tests/test_model_batching.py checks batch == alone).

A folder written by `save_files()` + the weights holds: `vla.json` (LLM config, token width,
LoRA settings, prompt options), the tokenizer files, and `model.safetensors` (via
`vla_world.checkpoint`). The LLM config is stored as `vla.json`, not `config.json`, so that
`AutoTokenizer` never swaps our tokenizer's pre-tokenizer (shared notes, dependencies §5).

Visual tokens (world stage, `vla_world.model.visual_tokens`): `grow_visual(spec)` adds the frame-code
tokens and grows the embedding tables; vla.json then stores the spec (`visual`) and the grown LLM
config, and the tokenizer files hold the new tokens. `from_folder(old, visual=spec)` loads a
checkpoint written before the world stage and grows it. With LoRA the new rows train through peft's
`trainable_token_indices` (the rest of the embedding table stays frozen).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from vla_world.checkpoint import (
    FIX_RETRAIN,
    CheckpointError,
    CheckpointMissing,
    load_checkpoint,
)
from vla_world.model.ego_token import EGO_WIDTH
from vla_world.model.llm import TinyLLMSize, build_tiny_llm, llm_from_config_dict
from vla_world.model.plan_head import PlanHead, PlanHeadSpec
from vla_world.model.projectors import Projectors
from vla_world.model.sequence import PromptOptions, SequenceBuilder
from vla_world.model.tokenizer import (
    EGO_PLACEHOLDER,
    IM_END,
    PLACEHOLDERS,
    load_tokenizer,
)
from vla_world.model.visual_tokens import (
    VisualIds,
    VisualSpec,
    add_visual_tokens,
    visual_ids,
)

PLACEHOLDER_KINDS: tuple[str, ...] = ("scene", "agent", "map", "object")
EGO_KIND = "ego"  # the ego-state token's placeholder kind (PromptOptions.ego_token)
Features = dict[str, torch.Tensor]


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and attention mask of `prompts` padded on the left (so every row ends where it generates)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


def padded_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding: a row's real tokens count 0, 1, 2, ... from its first real token.

    Left-padded rows then see the positions they have alone. Right-padded rows (training) get
    exactly `arange`, padding included, so training batches are unchanged. Padding positions are
    never attended; they keep `arange` values.
    """
    mask = mask.long()
    steps = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), mask.cumsum(-1) - 1, steps)


def tied_copy(key: str, tied: bool) -> bool:
    """Whether state-dict `key` is the output layer's copy of the tied input embeddings (not saved:
    safetensors refuses shared tensors). Also the output side of peft's trainable token rows."""
    return tied and "lm_head." in key


def ego_width(prompt: PromptOptions | None) -> int:
    """The ego projector's input width a model with these prompt options needs (0: no ego token)."""
    return EGO_WIDTH if prompt is not None and prompt.ego_token else 0


class VLAModel(nn.Module):
    """LLM + three projectors + the tokenizer and prompt options that go with them."""

    def __init__(self, llm: PreTrainedModel, projectors: Projectors, tokenizer: PreTrainedTokenizerFast,
                 prompt: PromptOptions | None = None, preset: str = "tiny", lora: dict | None = None,
                 visual: VisualSpec | None = None, plan_head: PlanHead | None = None):
        super().__init__()
        self.llm = llm
        self.projectors = projectors
        self.tokenizer = tokenizer
        self.prompt = prompt or PromptOptions()
        self.preset = preset
        self.lora = lora  # the peft settings applied to self.llm, or None
        self.visual = visual  # the frame-code tokens this model writes (world stage on), or None
        self.plan_head = plan_head  # trajectories from the hidden state (vla_world.model.plan_head), or None
        self.slot_ids = {k: tokenizer.convert_tokens_to_ids(PLACEHOLDERS[k]) for k in PLACEHOLDER_KINDS}
        self.slot_ids[EGO_KIND] = tokenizer.convert_tokens_to_ids(EGO_PLACEHOLDER)
        if self.prompt.ego_token and projectors.ego is None:
            raise ValueError("PromptOptions.ego_token needs an ego projector: build the model with "
                             "Projectors(..., ego_width=EGO_WIDTH) or call VLAModel.set_ego_token")
        self.eos_id = tokenizer.convert_tokens_to_ids(IM_END)
        self.pad_id = tokenizer.pad_token_id

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def create_tiny(cls, tokenizer: PreTrainedTokenizerFast, token_width: int, size: TinyLLMSize | None = None,
                    prompt: PromptOptions | None = None, seed: int = 0) -> VLAModel:
        size = size or TinyLLMSize()
        llm = build_tiny_llm(len(tokenizer), size, seed)
        return cls(llm, Projectors(token_width, size.hidden_size, ego_width(prompt)), tokenizer, prompt, "tiny")

    @classmethod
    def create_pretrained(cls, llm: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, token_width: int,
                          preset: str, prompt: PromptOptions | None = None) -> VLAModel:
        return cls(llm, Projectors(token_width, llm.config.hidden_size, ego_width(prompt)), tokenizer, prompt, preset)

    @classmethod
    def from_folder(cls, folder: str | Path, visual: VisualSpec | None = None) -> VLAModel:
        """Rebuild the model a training run saved (weights, tokenizer, LoRA adapters if any).

        `visual`: the frame-code vocabulary the caller needs; a checkpoint without it (written before
        the world stage) is grown to hold it (LoRA adapters are merged first), one with another spec is an error.
        """
        folder = Path(folder)
        meta = read_vla_meta(folder)
        llm = llm_from_config_dict(meta["llm_config"])
        saved = VisualSpec(**meta["visual"]) if meta.get("visual") else None
        if visual is not None and saved is not None and saved != visual:
            raise ValueError(f"{folder}: its visual tokens are {saved}, not the {visual} asked for; the frame "
                             "tokenizer changed since the world stage, retrain from the world stage on")
        prompt = PromptOptions(**meta["prompt"])
        if prompt.ego_token and meta.get("ego_width") != EGO_WIDTH:
            raise ValueError(f"{folder}: its ego-state vector has width {meta.get('ego_width')}, this code builds "
                             f"{EGO_WIDTH} (vla_world.model.ego_token changed); retrain the planning stage")
        head = PlanHead(PlanHeadSpec(**meta["plan_head"])) if meta.get("plan_head") else None
        model = cls(llm, Projectors(meta["token_width"], llm.config.hidden_size, ego_width(prompt)),
                    load_tokenizer(folder), prompt, meta["preset"], visual=saved, plan_head=head)
        if meta.get("lora"):
            model.apply_lora(meta["lora"])
        state, _, _ = load_checkpoint(folder)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not tied_copy(k, llm.config.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"{folder}/model.safetensors does not fit vla.json: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        if isinstance(model.base_llm.get_input_embeddings(), nn.Embedding):  # peft-wrapped rows stay tied by peft
            model.llm.tie_weights()
        if visual is not None and saved is None:
            model.merge_lora()
            model.grow_visual(visual)
        return model

    def set_ego_token(self, enabled: bool, seed: int = 0) -> bool:
        """Turn the ego-state token on (adding a fresh ego projector if there is none) or off (dropping it).

        Returns whether a fresh projector was made: a checkpoint written before the ego token (e.g. the
        motion stage's) has none, and the stage that turns it on trains it from scratch.
        """
        fresh = enabled and self.projectors.ego is None
        if fresh:
            self.projectors.set_ego(EGO_WIDTH, seed=seed)
        elif not enabled:
            self.projectors.set_ego(0)
        self.prompt = replace(self.prompt, ego_token=enabled)
        return fresh

    def set_plan_head(self, spec: PlanHeadSpec | None, seed: int = 0) -> bool:
        """Give the model a fresh, unfitted plan head of `spec` (seeded init), or drop it (None).

        A head of the same spec is kept (returns False); the planning stage refits it after its steps anyway.
        """
        if spec is None or (self.plan_head is not None and self.plan_head.spec == spec):
            self.plan_head = None if spec is None else self.plan_head
            return False
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.plan_head = PlanHead(spec).to(next(self.parameters()).device)
        return True

    def grow_visual(self, spec: VisualSpec, seed: int = 0) -> list[int]:
        """Add the frame-code tokens of `spec` and grow the embedding tables (mean init); returns the new ids."""
        if self.lora:
            raise ValueError("grow_visual: merge the LoRA adapters first (VLAModel.merge_lora)")
        if self.visual is not None and self.visual != spec:
            raise ValueError(f"this model already writes {self.visual}; it cannot also write {spec}")
        new_ids = add_visual_tokens(self.llm, self.tokenizer, spec.codebook_size, seed=seed)
        self.visual = spec
        return new_ids

    @property
    def visual_ids(self) -> VisualIds | None:
        """Token ids of the visual block, or None for a model without visual tokens."""
        return visual_ids(self.tokenizer, self.visual) if self.visual is not None else None

    def apply_lora(self, settings: dict) -> None:
        """Wrap the LLM with peft LoRA adapters; settings: r, alpha, dropout, target_modules.

        A model with visual tokens also trains their embedding rows (peft `trainable_token_indices`:
        a delta on those rows only): of the input embeddings, and of the output layer when it is not
        tied to them (tied, as in the tiny preset, peft keeps the two in step).
        """
        from peft import LoraConfig, get_peft_model

        tokens = None
        if self.visual is not None:
            ids = self.visual_ids.all_ids.tolist()
            tokens = {"embed_tokens": ids} if self.llm.config.tie_word_embeddings else \
                {"embed_tokens": ids, "lm_head": ids}
        config = LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                            target_modules=list(settings["target_modules"]), bias="none",
                            trainable_token_indices=tokens)
        self.llm = get_peft_model(self.llm, config)
        self.lora = dict(settings)

    def merge_lora(self) -> None:
        """Fold LoRA adapters into the LLM weights (before a stage with other fine-tuning settings)."""
        if self.lora:
            self.llm = self.llm.merge_and_unload()
            self.lora = None

    def grow_vocabulary(self) -> int:
        """Give every tokenizer token an embedding row; returns how many rows were added.

        Why: a checkpoint saved before new special tokens existed (the structured answer's block
        tags) loads with a tokenizer that registers them (`load_tokenizer`), so their ids lie past
        the embedding table. New rows start at the mean of the old ones (LLaMA-Factory's rule), the
        output layer (tied in the tiny preset) follows, and the saved config records the new size.
        Only training calls this: a loaded model that never writes the new tokens keeps its logits.
        """
        embeddings = self.base_llm.get_input_embeddings()
        old = embeddings.weight.shape[0]
        if len(self.tokenizer) <= old:
            return 0
        with torch.no_grad():
            mean = embeddings.weight.mean(dim=0)
            self.base_llm.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
            self.base_llm.get_input_embeddings().weight[old:] = mean
            output = self.base_llm.get_output_embeddings()
            if output is not None and output.weight.data_ptr() != self.base_llm.get_input_embeddings().weight.data_ptr():
                output.weight[old:] = output.weight[:old].mean(dim=0)
        return len(self.tokenizer) - old

    @property
    def base_llm(self) -> PreTrainedModel:
        return self.llm.get_base_model() if self.lora else self.llm

    @property
    def placeholder_ids(self) -> dict[str, int]:
        """Token id of each placeholder kind this model's prompts hold (`ego` only with the ego token)."""
        kinds = PLACEHOLDER_KINDS + ((EGO_KIND,) if self.prompt.ego_token else ())
        return {k: self.slot_ids[k] for k in kinds}

    @property
    def sequence_builder(self) -> SequenceBuilder:
        return SequenceBuilder(self.tokenizer, self.prompt)

    def save_files(self) -> dict[str, str]:
        """Text files that describe this model: vla.json and the tokenizer (for `save_checkpoint`)."""
        meta = {"preset": self.preset, "llm_config": self.base_llm.config.to_dict(),
                "token_width": self.projectors.token_width, "ego_width": self.projectors.ego_width,
                "prompt": asdict(self.prompt), "lora": self.lora,
                "visual": asdict(self.visual) if self.visual is not None else None,
                "plan_head": self.plan_head.meta() if self.plan_head is not None else None}
        files = {"vla.json": json.dumps(meta, indent=1)}
        with tempfile.TemporaryDirectory() as tmp:
            self.tokenizer.save_pretrained(tmp)
            files.update({p.name: p.read_text() for p in Path(tmp).iterdir() if p.is_file()})
        return files

    # ---- forward ----------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, features: list[Features]) -> torch.Tensor:
        """(B, T) ids + per-sample features -> (B, T, H) embeddings with the projected tokens spliced in."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        for kind, slot_id in self.placeholder_ids.items():
            slots = input_ids == slot_id
            if any(kind not in f for f in features):
                raise ValueError(f"{kind}: a sample's features lack them; the ids were not built by this model's "
                                 "SequenceBuilder (model.sequence_builder)")
            rows = torch.cat([f[kind] for f in features]).to(embeds.device)
            if int(slots.sum()) != rows.shape[0]:
                raise ValueError(f"{kind}: {int(slots.sum())} placeholders in the ids but {rows.shape[0]} tokens; "
                                 "the ids were not built by SequenceBuilder for these features")
            # projected even when empty, so every projector is in the graph (DDP wants all used)
            projected = self.projectors.project(kind, rows).to(embeds.dtype)
            embeds = embeds.masked_scatter(slots.unsqueeze(-1), projected)
        return embeds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: list[Features],
                labels: torch.Tensor | None = None):
        embeds = self.embed(input_ids, features)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask,
                        position_ids=padded_positions(attention_mask), labels=labels)

    def last_prompt_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: list[Features],
                           positions: torch.Tensor) -> torch.Tensor:
        """(B, H) final-layer hidden state (after the final norm) at `positions` (one per row): the plan head's input.

        Runs the decoder only (no output layer: logits over the vocabulary at every position would cost
        more than the whole pass for a large vocabulary). Causal attention makes the state at the last
        prompt token the same whether or not the answer follows it in the ids.
        """
        out = self.base_llm.get_decoder()(inputs_embeds=self.embed(input_ids, features), attention_mask=attention_mask,
                                          position_ids=padded_positions(attention_mask))
        return out.last_hidden_state[torch.arange(len(positions)), positions.to(input_ids.device)]

    @torch.no_grad()
    def plan_from_head(self, prompts: list[list[int]], features: list[Features],
                       ego: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 6, 2) plan-head output for prompt-only ids (left-padded, one forward pass): corrections to
        the prior for residual answers, waypoints for absolute ones; metres, LiDAR frame. `ego`: the prompts'
        (B, 21) ego states (`plan_head.ego_state_rows`), needed by a head that reads them."""
        if self.plan_head is None:
            raise ValueError("plan_from_head: this checkpoint has no plan head (model.plan_head.enabled was false "
                             "in its planning stage); decode with --decoding constrained")
        if not bool(self.plan_head.fitted):
            raise ValueError("plan_from_head: this checkpoint's plan head was never fitted (saved before its planning "
                             "stage ended); finish the run with tools/train.py --resume, or decode with --decoding "
                             "constrained")
        ids, mask = left_pad(prompts, self.pad_id)
        device = next(self.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        hidden = self.last_prompt_hidden(ids, mask, features, torch.full((len(prompts),), ids.shape[1] - 1))
        return self.plan_head(self.plan_head.head_inputs(hidden, ego))

    @torch.no_grad()
    def generate_ids(self, prompts: list[list[int]], features: list[Features], max_new_tokens: int = 96,
                     use_cache: bool = True) -> list[list[int]]:
        """Greedy decoding of a left-padded batch; returns only the new ids, cut at <|im_end|>."""
        ids, mask = left_pad(prompts, self.pad_id)
        device = next(self.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        out = self.llm.generate(inputs_embeds=self.embed(ids, features), attention_mask=mask,
                                position_ids=padded_positions(mask), max_new_tokens=max_new_tokens,
                                do_sample=False, num_beams=1, eos_token_id=self.eos_id, pad_token_id=self.pad_id,
                                use_cache=use_cache)
        return [self._until_eos(row.tolist()) for row in out]

    def _until_eos(self, ids: list[int]) -> list[int]:
        return ids[:ids.index(self.eos_id)] if self.eos_id in ids else ids

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids, keeping structure tokens like <traj_start> (the parser wants them)."""
        return self.tokenizer.decode(ids, skip_special_tokens=False)


VLA_META_FIELDS = ("preset", "llm_config", "token_width", "prompt")


def read_vla_meta(folder: str | Path) -> dict:
    """vla.json of a checkpoint folder; missing, unparsable or incomplete is one `CheckpointError` line."""
    meta_file = Path(folder) / "vla.json"
    if not meta_file.is_file():
        raise CheckpointMissing(f"{meta_file}: not a VLA checkpoint (written by tools/train.py --stage "
                                "align|instruct|motion|planning); check the --checkpoint / init path")
    try:
        meta = json.loads(meta_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_file}: not valid JSON ({exc}); {FIX_RETRAIN}") from exc
    missing = [k for k in VLA_META_FIELDS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise CheckpointError(f"{meta_file}: fields {missing} missing; {FIX_RETRAIN}")
    return meta
