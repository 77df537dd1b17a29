"""Typed config of one LLM stage (align, instruct, motion, planning): `configs/<stage>/<size>.yaml`.

    cfg = load_config("configs/planning/tiny.yaml", StageConfig, overrides={"train.lr": 1e-4})

What a stage trains and which data it uses is fixed per stage in `vla_world.training.stages`;
this file holds the numbers (model size, learning rate, epochs, fine-tuning mode, token source).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vla_world.model.llm import PRESETS, TinyLLMSize

STAGE_NAMES = ("align", "instruct", "motion", "planning")


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
    kinematic_prior: bool = True  # put the CTRA rollout of the ego state into the prompt (model/kinematics.py)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r} is not one of {list(PRESETS)}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")

    def tiny_size(self) -> TinyLLMSize:
        return TinyLLMSize(self.hidden_size, self.intermediate_size, self.num_layers, self.num_heads, self.num_kv_heads)


@dataclass
class DataConfig:
    token_source: str = "cache"  # cache: <token_cache>/<split>.safetensors (tools/export_tokens.py) | oracle: from GT
    token_cache: str = "cache/tokens"  # folder of the token cache files
    perception_config: str | None = None  # oracle tokens: perception config for token sizes (None = its defaults)
    split: str = "train"  # records split to train on
    max_examples: int = 0  # keep at most this many examples (0 = all); smoke runs and quick demos
    kinematic_copy_examples: int = 0  # planning: extra pseudo-examples whose answer is the CTRA prior (data.py)
    max_length: int = 1536  # longest sequence in tokens; longer examples are an error, not truncated
    eval_split: str = "val"  # split the planner is evaluated on by tools/eval_planning.py

    def validate(self) -> None:
        if self.token_source not in ("cache", "oracle"):
            raise ValueError(f"token_source {self.token_source!r}: expected cache or oracle")
        if self.max_examples < 0 or self.max_length < 64:
            raise ValueError("max_examples must be >= 0 and max_length >= 64")


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
    epochs: float = 1.0  # passes over the examples (fractions allowed)
    batch_size: int = 4  # examples per optimizer step, per process
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03  # linear warm-up share of all steps, then cosine decay to 0
    grad_clip: float = 1.0  # max global grad norm
    seed: int = 0  # data order, init and dropout
    log_every: int = 10  # steps between log lines
    save_every: int = 0  # also save <out>/last every N steps (0 = only at the end)
    num_threads: int = 1  # torch intra-op threads per process (the target CPU has 2 cores)

    def validate(self) -> None:
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1:
            raise ValueError("lr and epochs must be > 0, batch_size >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")


@dataclass
class StageConfig:
    stage: str  # align | instruct | motion | planning (must match tools/train.py --stage)
    init: str = "auto"  # auto: checkpoints/<previous stage>/last | none: fresh model | a checkpoint folder
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.stage not in STAGE_NAMES:
            raise ValueError(f"stage {self.stage!r} is not one of {list(STAGE_NAMES)}")
