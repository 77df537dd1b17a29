"""Typed config of one LLM stage (align, instruct, motion, planning, grpo): `configs/<stage>/<size>.yaml`.

    cfg = load_config("configs/planning/tiny.yaml", StageConfig, overrides={"train.lr": 1e-4})

What a stage trains and which data it uses is fixed per stage in `vla_world.training.stages`;
this file holds the numbers (model size, learning rate, epochs, fine-tuning mode, token source).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planning.structured import AnswerConfig
from vla_world.model.plan_head_config import PlanHeadConfig
from vla_world.model.presets import PRESETS, TinyLLMSize
from vla_world.qa.config import StageDataConfig
from vla_world.training.stages import STAGES, stage_spec


@dataclass
class ModelConfig:
    preset: str = "tiny"  # tiny | qwen2.5-0.5b | qwen2.5-3b | qwen2.5-7b
    llm_path: str | None = None  # local Qwen2.5 folder for non-tiny presets (tools/train.py --llm overrides)
    vocab_size: int = 4096  # tiny only: BPE vocabulary to train
    hidden_size: int = 256  # tiny only: LLM width H
    intermediate_size: int = 688  # tiny only: MLP width
    num_layers: int = 4  # tiny only
    num_heads: int = 4  # tiny only: attention heads
    num_kv_heads: int = 2  # tiny only: key/value heads (grouped-query attention)
    kinematic_prior: bool = True  # put the CTRA rollout of the ego state into the prompt (planning.kinematic)
    # planning answers as the correction to that rollout, in whole centimetres (planning.codec "Residual answers");
    # set by the stage that trains planning answers, kept by the checkpoint (vla.json) for inference
    residual_answer: bool = False
    # one <EGO> prompt token: the ego state (PlannerInput fields + the CTRA prior) as a float vector through
    # its own projector (vla_world.model.ego_token); set by the planning stage, kept by the checkpoint
    ego_token: bool = False
    # planning: an MLP fitted on the LLM's hidden state at the last prompt token after the LLM steps; inference
    # then reads the trajectory from it, not from the digits (vla_world.model.plan_head); kept by the checkpoint
    plan_head: PlanHeadConfig = field(default_factory=PlanHeadConfig)

    def validate(self) -> None:
        self.plan_head.validate()
        if self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r} is not one of {list(PRESETS)}")
        if self.residual_answer and not self.kinematic_prior:
            raise ValueError("model.residual_answer: true needs model.kinematic_prior: true (the answer corrects the "
                             "prior the prompt shows)")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")

    def tiny_size(self) -> TinyLLMSize:
        return TinyLLMSize(self.hidden_size, self.intermediate_size, self.num_layers, self.num_heads, self.num_kv_heads)


TOKEN_SOURCES = ("cache", "oracle", "online")


@dataclass
class DataConfig:
    # cache: <token_cache>/<split>.safetensors (tools/export_tokens.py), perception not in the graph |
    # oracle: from GT, no perception network | online: perception_checkpoint runs every step after its
    # frozen camera backbone and trains with the LLM (planning only; vla_world/training/online_perception.py)
    token_source: str = "cache"
    token_cache: str = "cache/tokens"  # folder of the token cache files
    perception_config: str | None = None  # oracle tokens: perception config for token sizes (None = its defaults)
    perception_checkpoint: str = "checkpoints/perception/last"  # online: the trained perception to fine-tune
    feature_cache: str | None = None  # online: folder of the frozen-feature caches (None: <dataroot>/.vla_world_cache)
    cache_features: bool = True  # online: false = run the frozen backbone every step (features too big for disk)
    split: str = "train"  # records split to train on
    max_examples: int = 0  # keep at most this many examples (0 = all); smoke runs and quick demos
    # QA stages: a sample's questions in two multi-turn sequences (vla_world/model/packing.py); the long
    # prompt is paid per sequence, not per question
    pack_questions: bool = False
    kinematic_copy_examples: int = 0  # planning: extra pseudo-examples whose answer is the CTRA prior (data.py)
    max_length: int = 1536  # longest sequence in tokens; longer examples are an error, not truncated
    # world stage, and planning with data.answer.visual: folder of the frame-code caches
    # <frame_codes>/<split>.safetensors (tools/export_frame_codes.py)
    frame_codes: str = "cache/frames"
    # world stage: show the current CAM_FRONT's codes in the question (an input: the camera image of now);
    # without them the LLM must imagine the next frame from perception tokens alone
    world_current_frame: bool = False
    qa: StageDataConfig = field(default_factory=StageDataConfig)  # QA stages: the question builders' settings
    # planning: the answer's form, plain trajectory (default) or structured blocks, each one flag
    # (planning/structured.py; e.g. --set data.answer.structured=true --set data.answer.think=false)
    answer: AnswerConfig = field(default_factory=AnswerConfig)

    def validate(self) -> None:
        if self.token_source not in TOKEN_SOURCES:
            raise ValueError(f"token_source {self.token_source!r}: expected one of {list(TOKEN_SOURCES)}")
        if self.max_examples < 0 or self.max_length < 64:
            raise ValueError("max_examples must be >= 0 and max_length >= 64")
        self.qa.validate()
        self.answer.validate()


LOSS_NORMALISATIONS = ("segment", "token")


@dataclass
class LossConfig:
    """Weights of the answer's segments in the LM loss (vla_world/training/losses.py).

    Why: a world-stage answer is K (64..384) code tokens and a few text tokens; averaged per token,
    the codes would drown the text (and, in the structured answer, the trajectory). `segment`
    averages each segment on its own and mixes the means with these weights; `token` weights every
    token and divides by the summed weights. Without visual tokens both equal the plain token mean.
    """

    normalise: str = "segment"  # segment: sum_s w_s * mean_s(CE) / sum_s w_s | token: sum_i w_i CE_i / sum_i w_i
    visual_weight: float = 1.0  # the code tokens inside <visual>...</visual>
    text_weight: float = 1.0  # every other supervised token (delimiters, text, trajectory, <|im_end|>)

    def validate(self) -> None:
        if self.normalise not in LOSS_NORMALISATIONS:
            raise ValueError(f"loss.normalise {self.normalise!r}: expected one of {list(LOSS_NORMALISATIONS)}")
        if self.visual_weight < 0 or self.text_weight < 0 or self.visual_weight + self.text_weight == 0:
            raise ValueError("loss.visual_weight and loss.text_weight must be >= 0 and not both 0")


@dataclass
class FinetuneConfig:
    mode: str = "full"  # full: every trainable part's weights | lora: LoRA adapters on the LLM (peft)
    r: int = 8  # LoRA rank
    alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = 0.0  # LoRA dropout
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])

    def validate(self) -> None:
        if self.mode not in ("full", "lora"):
            raise ValueError(f"mode {self.mode!r}: expected full or lora")
        if self.r < 1:
            raise ValueError("LoRA r must be >= 1")

    def lora_settings(self) -> dict:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout, "target_modules": list(self.target_modules)}


@dataclass
class TrainConfig:
    lr: float = 1e-4  # peak AdamW learning rate
    perception_lr: float | None = None  # online tokens: peak lr of the perception tail (None = lr; paper 002 Table 1)
    # online tokens: + this weight x the perception stage's own loss (detection, map, BEV masks) on the batch's
    # keyframes. Why: the planning loss alone moves the heads' scores freely, and the score thresholds then
    # decide which tokens exist (measured, tiny: lr 2e-3 without it left 0 agent tokens, detection mAP 0)
    perception_loss_weight: float = 0.0
    epochs: float = 1.0  # passes over the examples (fractions allowed)
    batch_size: int = 4  # examples per micro-batch, per process
    # micro-batches per optimizer step: the global batch is batch_size x processes x grad_accum (logged);
    # each micro-batch's loss is weighted by its label tokens, so 2 x 4 steps like one batch of 8
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03  # linear warm-up share of all steps, then cosine decay to 0
    grad_clip: float = 1.0  # max global grad norm
    seed: int = 0  # data order, init and dropout
    log_every: int = 10  # steps between log lines
    save_every: int = 0  # also save <out>/last every N steps (0 = only at the end)
    save_minutes: float = 5.0  # also save <out>/last every M minutes, so a kill loses at most that (0 = off)
    num_threads: int = 1  # torch intra-op threads per process (the target CPU has 2 cores)

    def validate(self) -> None:
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1:
            raise ValueError("lr and epochs must be > 0, batch_size >= 1")
        if self.grad_accum < 1 or self.save_every < 0 or self.save_minutes < 0:
            raise ValueError("grad_accum must be >= 1, save_every and save_minutes >= 0 (0 = off)")
        if self.perception_loss_weight < 0:
            raise ValueError("perception_loss_weight must be >= 0 (0: the planning loss alone trains perception)")
        if self.perception_lr is not None and self.perception_lr < 0:
            raise ValueError("perception_lr must be >= 0 (0 keeps the perception tail fixed; null = lr)")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")

    def perception_peak_lr(self) -> float:
        """Peak learning rate of the perception tail in online mode."""
        return self.lr if self.perception_lr is None else self.perception_lr


@dataclass
class GRPOConfig:
    """The grpo stage's own numbers (vla_world/training/grpo.py; paper 004 A.1 / B.2). Other stages ignore it."""

    group_size: int = 4  # G: sampled answers per prompt (8 in the paper)
    temperature: float = 1.0  # sampling temperature over the template's allowed tokens (also scales the log-probs)
    top_p: float = 1.0  # nucleus sampling mass over the allowed tokens
    clip_eps: float = 0.2  # PPO ratio clip: the ratio is kept in [1 - eps, 1 + eps]
    kl_coef: float = 1e-2  # beta of the k3 KL penalty to the frozen reference (1e-2 in the paper)
    updates_per_batch: int = 1  # optimizer steps on one batch of rollouts (1: ratio = 1, the clip never binds)
    adv_eps: float = 1e-4  # eps of (r - mean) / (std + eps)
    # RewardConfig fields to override (planning/rewards.py), e.g. {collision_weight: 0.5}; {} = its defaults
    reward: dict = field(default_factory=dict)
    convention: str = "uniad"  # whose obstacle content the collision verifier uses (planning.reward_targets)

    def validate(self) -> None:
        if self.group_size < 2:
            raise ValueError("grpo.group_size must be >= 2: advantages compare answers within a group")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("grpo.temperature must be > 0 and grpo.top_p in (0, 1]")
        if self.clip_eps <= 0 or self.kl_coef < 0 or self.updates_per_batch < 1 or self.adv_eps <= 0:
            raise ValueError("grpo: clip_eps > 0, kl_coef >= 0, updates_per_batch >= 1 and adv_eps > 0 are required")
        from planning.rewards import RewardConfig

        try:
            RewardConfig(**self.reward)
        except TypeError as exc:
            raise ValueError(f"grpo.reward: {exc}; use RewardConfig's field names (planning/rewards.py)") from exc


@dataclass
class StageConfig:
    stage: str  # align | instruct | motion | planning | grpo (must match tools/train.py --stage)
    init: str = "auto"  # auto: checkpoints/<previous stage>/last | none: fresh model | a checkpoint folder
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)  # grpo stage only

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r} is not one of {list(STAGES)}")
        frozen_online = stage_spec(self.stage).examples == "rewards"  # grpo: the start's perception, frozen
        if self.data.token_source == "online" and "perception" not in stage_spec(self.stage).trainable \
                and not frozen_online:
            raise ValueError(f"data.token_source online: stage {self.stage!r} does not train perception; "
                             "use cache (tools/export_tokens.py) or oracle tokens")
        if self.model.plan_head.enabled and self.data.answer.structured:
            raise ValueError("model.plan_head.enabled: the plan head replaces the trajectory of a plain answer; with "
                             "data.answer.structured the blocks around it would no longer be the model's reasoning "
                             "for it. For a structured answer add --set model.plan_head.enabled=false")
        if self.data.pack_questions and stage_spec(self.stage).examples != "qa":
            raise ValueError(f"data.pack_questions: stage {self.stage!r} has one question per sample, nothing to pack")
