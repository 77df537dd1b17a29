"""Build or load the VLA model a stage starts from, and set which parts learn.

Start points, in order of precedence:
  --resume        <out>/last of this stage (weights, optimizer, data position, RNG)
  --init PATH     any VLA checkpoint folder; `none` for a fresh model
  config `init`   auto: <out>/../<previous stage>/last (e.g. checkpoints/motion/last for planning)
A fresh `tiny` model trains its BPE tokenizer on every stage's example text plus the prompts.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from perception.tokens import PerceptionTokens
from vla_world.data.planner_input import planner_input
from vla_world.data.records import SampleRecord
from vla_world.model.llm import load_pretrained_llm
from vla_world.model.plan_head import EGO_STATE_INPUTS, PlanHeadSpec
from vla_world.model.sequence import (
    PLANNING_QUESTION,
    SYSTEM_PROMPT,
    WORLD_QUESTION,
    PromptOptions,
    chatml_prompt,
    user_text,
)
from vla_world.model.tokenizer import train_tokenizer
from vla_world.model.visual_tokens import VisualSpec
from vla_world.model.vla import VLAModel
from vla_world.qa import StageDataConfig
from vla_world.training.config import StageConfig
from vla_world.training.data import stage_examples
from vla_world.training.stages import STAGES, StageSpec

log = logging.getLogger(__name__)


def resolve_init(cfg: StageConfig, spec: StageSpec, out: Path, cli_init: str | None) -> Path | None:
    """The checkpoint folder to start from, or None for a fresh model."""
    choice = cli_init or cfg.init
    if choice == "none":
        return None
    if choice == "auto":
        if spec.previous is None:
            return None
        folder = out.parent / spec.previous / "last"
        if not (folder / "vla.json").is_file():
            raise FileNotFoundError(f"{folder}: the {spec.previous!r} stage's checkpoint, which {spec.name!r} starts "
                                    f"from (init: auto), is missing; train {spec.previous!r} first with --out "
                                    f"{out.parent / spec.previous}, or pass --init PATH / --init none")
        return folder
    return Path(choice)


def tokenizer_corpus(records: list[SampleRecord], seed: int, qa: StageDataConfig | None = None) -> list[str]:
    """All text the tiny LLM will see: every stage's examples and one prompt per record."""
    texts = [SYSTEM_PROMPT, PLANNING_QUESTION, WORLD_QUESTION]  # world answers are special tokens only
    for name, spec in STAGES.items():
        if spec.examples in ("world", "rewards"):
            continue  # world: codes, not text; grpo: planning's prompts again (counting them twice would change the tokenizer)
        texts += [f"{e.question}\n{e.answer}" for e in stage_examples(name, spec.examples, records, seed, qa)]
    counts = {"scene": 1, "agent": 1, "map": 1, "object": 1}
    texts += [chatml_prompt(user_text(planner_input(r), counts, PLANNING_QUESTION, PromptOptions(), True))
              for r in records]
    return texts


def fresh_model(cfg: StageConfig, llm_path: str | None, records: list[SampleRecord],
                tokens: dict[str, PerceptionTokens]) -> VLAModel:
    width = next(iter(tokens.values())).width
    prompt = PromptOptions(kinematic_prior=cfg.model.kinematic_prior, residual_answer=cfg.model.residual_answer,
                           ego_token=cfg.model.ego_token)
    if cfg.model.preset == "tiny":
        tokenizer = train_tokenizer(tokenizer_corpus(records, cfg.train.seed, cfg.data.qa), cfg.model.vocab_size)
        log.info("trained a byte-level BPE tokenizer: %d tokens", len(tokenizer))
        return VLAModel.create_tiny(tokenizer, width, cfg.model.tiny_size(), prompt, cfg.train.seed)
    llm, tokenizer = load_pretrained_llm(cfg.model.preset, llm_path or cfg.model.llm_path)
    return VLAModel.create_pretrained(llm, tokenizer, width, cfg.model.preset, prompt)


def start_model(cfg: StageConfig, spec: StageSpec, init: Path | None, llm_path: str | None,
                records: list[SampleRecord], tokens: dict[str, PerceptionTokens],
                visual: VisualSpec | None = None) -> VLAModel:
    """Fresh or loaded model, with LoRA applied/merged to match `cfg.finetune`.

    `visual` (world stage): the frame-code tokens the model must write; a model without them grows
    its vocabulary (vla_world.model.visual_tokens), one with other ones is an error.
    """
    if init is None:
        model = fresh_model(cfg, llm_path, records, tokens)
        log.info("start: fresh %s model", cfg.model.preset)
        if visual is not None:
            model.grow_visual(visual, seed=cfg.train.seed)
    else:
        model = VLAModel.from_folder(init, visual=visual)
        log.info("start: %s", init)
        grown = model.grow_vocabulary()
        if grown:
            log.info("vocabulary: %d new special tokens (answer block tags) get embedding rows", grown)
    if visual is not None:
        log.info("visual tokens: codebook %d, %d codes per frame; vocabulary %d tokens, embedding table %d rows",
                 visual.codebook_size, visual.codes_per_frame, len(model.tokenizer),
                 model.base_llm.get_input_embeddings().num_embeddings)
    if spec.examples == "planning":  # the answer form is the planning stage's; the model carries it on
        model.prompt = replace(model.prompt, answer_blocks=cfg.data.answer.blocks(),
                               residual_answer=cfg.model.residual_answer)
        log.info("planning answers: %s", "residual to the prior, cm" if cfg.model.residual_answer else "absolute, m")
        apply_ego_token(model, cfg, init)
    apply_plan_head(model, cfg, spec, init)
    want_lora = cfg.finetune.mode == "lora" and "llm" in spec.trainable
    if model.lora and (not want_lora or model.lora != cfg.finetune.lora_settings()):
        model.merge_lora()
    if want_lora and not model.lora:
        model.apply_lora(cfg.finetune.lora_settings())
    return model


def apply_ego_token(model: VLAModel, cfg: StageConfig, init: Path | None) -> None:
    """Turn the ego-state token on or off as `model.ego_token` says, and log where its projector comes from."""
    start = init or "the fresh model"
    if model.projectors.ego is not None and not cfg.model.ego_token:
        log.info("ego-state token: off (model.ego_token: false); the ego projector of %s is dropped", start)
    if model.set_ego_token(cfg.model.ego_token, seed=cfg.train.seed):
        log.info("ego-state token: on; %s has no ego projector, a fresh one (seed %d) trains from scratch", start,
                 cfg.train.seed)
    elif cfg.model.ego_token:
        log.info("ego-state token: on (the ego projector of %s)", start)


def apply_plan_head(model: VLAModel, cfg: StageConfig, spec: StageSpec, init: Path | None) -> None:
    """Give the planning stage the plan head `model.plan_head` asks for (fitted after its LLM steps), and
    drop it everywhere else: GRPO changes the LLM the head reads, so its policy is the written answer."""
    want = spec.examples == "planning" and cfg.model.plan_head.enabled
    if model.plan_head is not None and not want:
        why = "GRPO trains the written answer" if spec.examples == "rewards" else "model.plan_head.enabled: false"
        log.info("plan head: dropped (%s); this stage's planner decodes the written trajectory", why)
    if not want:
        model.set_plan_head(None)
        return
    head = cfg.model.plan_head
    width = model.base_llm.config.hidden_size
    if head.state_components > width:
        raise ValueError(f"model.plan_head.state_components: {head.state_components} is more than the LLM's hidden "
                         f"size {width}; use at most {width} (0: the whole state)")
    spec = PlanHeadSpec(width, head.hidden, head.layers, head.members, EGO_STATE_INPUTS if head.ego_state else 0,
                        head.state_components)
    model.set_plan_head(spec, seed=cfg.train.seed)
    state = f" (its top {head.state_components} principal components)" if head.state_components else ""
    ego = " and the prompt's ego state (21 numbers)" if head.ego_state else ""
    target = "the correction to the CTRA prior (m)" if cfg.model.residual_answer else "the waypoints (m)"
    log.info("plan head: mean of %d %d-layer MLPs (width %d) on the last prompt token's hidden state%s%s, fitted "
             "after the LLM steps on the frozen states (%d epochs each, L1, lr %.1e); target: %s", head.members,
             head.layers, head.hidden, state, ego, head.epochs, head.lr, target)


def set_trainable(model: VLAModel, spec: StageSpec) -> dict[str, tuple[int, int]]:
    """Freeze/unfreeze per part; returns {part: (trainable, frozen)} parameter counts."""
    model.projectors.requires_grad_("projectors" in spec.trainable)
    if model.plan_head is not None:  # fitted on its own after the LLM steps (StageTrainer.fit_plan_head)
        model.plan_head.requires_grad_(False)
    train_llm = "llm" in spec.trainable
    for name, param in model.llm.named_parameters():
        # LoRA: the adapters, and the new token rows' deltas (peft trainable tokens) of a model with visual tokens
        param.requires_grad_(train_llm and (not model.lora or "lora_" in name or "trainable_tokens_" in name))
    return parameter_counts(model)


def parameter_counts(model: VLAModel) -> dict[str, tuple[int, int]]:
    counts = {}
    parts = (("projectors", model.projectors), ("llm", model.llm))
    if model.plan_head is not None:
        parts += (("plan head (fitted after)", model.plan_head),)
    for part, module in parts:
        params = list(module.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        counts[part] = (trainable, sum(p.numel() for p in params) - trainable)
    return counts


def perception_status(token_source: str, spec: StageSpec, source: Path | None = None,
                      perception_loss_weight: float = 0.0) -> str:
    """One log line saying whether perception trains in this stage, and why not when it does not."""
    wanted = "perception" in spec.trainable
    if token_source == "online":
        rest = (f"the rest learns from the planning loss + {perception_loss_weight:g} x its own loss"
                if perception_loss_weight > 0 else "heads the planning loss does not reach stay frozen")
        return f"perception: fine-tuned online from {source} (camera backbone frozen; {rest})"
    if token_source == "oracle":
        return ("perception: none (oracle tokens from ground truth: there is no network to train"
                + (f"; {spec.name} trains projectors + LLM only)" if wanted else ")"))
    return ("perception: frozen (cached tokens; not in the graph"
            + ("; set data.token_source: online to fine-tune it)" if wanted else ")"))


def log_parameter_counts(counts: dict[str, tuple[int, int]], lora: bool, status: str) -> None:
    log.info(status)
    for part, (trainable, frozen) in counts.items():
        suffix = " (LoRA adapters)" if part == "llm" and lora and trainable else ""
        log.info("%-24s trainable %10d  frozen %10d%s", part + ":", trainable, frozen, suffix)
