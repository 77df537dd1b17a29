"""Perception in the planning stage's graph (`data.token_source: online`): tokens with gradients, every step.

OpenDriveVLA's stage 3 (paper 002, Table 1 and its training details) optimises the whole model
end to end except the 2D backbone. Cached tokens cannot do that, so in online mode each training
step runs the trainable tail of the BEV perception (perception/tail.py) on the batch's frozen
camera features (perception/feature_cache.py: built once per split, reused while the backbone and
dataroot are unchanged), decodes its outputs with perception/inference.py (the same thresholds as
token export; which agents and map elements become tokens is a discrete choice, their embeddings
carry the gradient), encodes the examples with the SequenceBuilder (token counts change as the
heads train, so per batch), and the planning loss back-propagates into the tail. Optionally the
perception stage's own loss on the same keyframes is added (`train.perception_loss_weight`), which
keeps the heads detecting: the score thresholds, not the planning loss, then decide which tokens exist.

    online = OnlinePerception.load("checkpoints/perception/last", records, "data/mini_world")
    counts = online.set_trainable()            # {"perception.backbone": (0, 157520), ...}
    batches = OnlineBatches(examples, records, online, model.sequence_builder, model.pad_id, 1536)
    batch = batches.batch(indices)             # collated, features with grad into online.forward_module

A planning checkpoint trained online holds the fine-tuned perception in `<ckpt>/perception/`, in
the format of `tools/train.py --stage perception` (perception.train.load_perception_model and
tools/export_tokens.py --checkpoint read it), plus its optimizer state for `--resume`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn

from perception.config import PerceptionConfig
from perception.feature_cache import FeatureStore, LiveFeatures, load_or_build_features
from perception.inference import outputs_to_tokens, per_keyframe
from perception.losses import perception_loss
from perception.tail import PerceptionTail
from perception.targets import FrameTargets, frame_targets
from perception.tokens import PerceptionTokens
from vla_world.checkpoint import load_checkpoint, save_checkpoint
from vla_world.config import config_to_dict
from vla_world.data.records import SampleRecord
from vla_world.model.sequence import SequenceBuilder
from vla_world.training.data import (
    TrainingExample,
    collate,
    encode_examples,
    source_token,
)

log = logging.getLogger(__name__)

PERCEPTION_DIR = "perception"  # sub-folder of a planning checkpoint holding the fine-tuned perception
BACKBONE = ("backbone",)  # frozen in stage 3 by design (paper 002)
# Without the perception loss (`train.perception_loss_weight: 0`) the planning loss never reaches the
# training-only auxiliary BEV masks nor the map heads that only decode classes and polylines (tokens
# are the decoder's embeddings): they are frozen too, so the logged counts are honest and DDP does
# not wait for gradients that never come.
UNREACHED = ("aux_heads", "map_decoder.cls_head", "map_decoder.points_head", "map_decoder.segmentation",
             "map_decoder.refine")
PARTS = ("backbone", "bev_encoder", "scene_sampler", "agent_head", "map_decoder", "aux_heads")


def in_parts(name: str, parts: tuple[str, ...]) -> bool:
    return any(name == part or name.startswith(part + ".") for part in parts)


@dataclass
class OnlinePerception:
    """A BEV perception whose tail trains with the LLM, and the frozen features it reads."""

    tail: PerceptionTail
    cfg: PerceptionConfig
    features: FeatureStore | LiveFeatures
    source: Path  # the folder the weights were loaded from
    loss_weight: float = 0.0  # weight of the perception stage's own loss added to the planning loss
    forward_module: nn.Module | None = field(default=None, repr=False)  # tail as prepared by accelerate (DDP)
    targets: dict[str, FrameTargets] = field(default_factory=dict, repr=False)  # GT per keyframe, built on first use

    @classmethod
    def load(cls, folder: str | Path, records: list[SampleRecord], dataroot: str | Path,
             cache_dir: str | Path | None = None, progress: bool = True, cache: bool = True) -> OnlinePerception:
        """Weights + config from a perception checkpoint folder; frozen features of `records` (cached on
        disk, or computed from the images per batch with `cache=False`)."""
        from perception.train import load_perception_model

        folder = Path(folder)
        if not (folder / "model.safetensors").is_file() or not (folder / "config.yaml").is_file():
            raise FileNotFoundError(f"{folder}: no perception checkpoint (model.safetensors + config.yaml), which "
                                    "data.token_source online fine-tunes; train it with tools/train.py --stage "
                                    "perception, or set data.perception_checkpoint / data.token_source cache|oracle")
        model, cfg = load_perception_model(folder)
        if cache:
            store = load_or_build_features(model, cfg, records, dataroot, cache_dir, progress)
        else:
            store = LiveFeatures(model, cfg, records, dataroot)
        log.info("online perception: %s; frozen camera features: %s", folder, store.path or "computed per batch")
        return cls(PerceptionTail(model), cfg, store, folder)

    @property
    def width(self) -> int:
        return self.cfg.model.token_dim

    def set_trainable(self) -> dict[str, tuple[int, int]]:
        """Freeze the backbone (+ UNREACHED without the perception loss); {"perception.<part>": (trainable, frozen)}."""
        frozen = BACKBONE if self.loss_weight > 0 else BACKBONE + UNREACHED
        for name, param in self.tail.perception.named_parameters():
            param.requires_grad_(not in_parts(name, frozen))
        counts = {}
        for part in PARTS:
            params = list(getattr(self.tail.perception, part).parameters())
            trainable = sum(p.numel() for p in params if p.requires_grad)
            counts[f"perception.{part}"] = (trainable, sum(p.numel() for p in params) - trainable)
        return counts

    def outputs(self, records: list[SampleRecord]) -> dict:
        module = self.forward_module or self.tail
        return module(self.features.get([r.sample_token for r in records]))

    def frame_targets(self, records: list[SampleRecord]) -> list[FrameTargets]:
        """GT targets of `records` (for token track ids and the perception loss), built once per keyframe."""
        for r in records:
            if r.sample_token not in self.targets:
                self.targets[r.sample_token] = frame_targets(r, self.cfg.grid, self.cfg.model.map_points)
        return [self.targets[r.sample_token] for r in records]

    def tokens(self, records: list[SampleRecord]) -> dict[str, PerceptionTokens]:
        """Tokens of `records` from the tail (with grad when grad is enabled and the tail trains)."""
        return outputs_to_tokens(per_keyframe(self.outputs(records)), records, self.cfg, self.frame_targets(records))

    def forward(self, records: list[SampleRecord]) -> tuple[dict[str, PerceptionTokens], torch.Tensor | None]:
        """Tokens of `records` and, with `loss_weight` > 0, the weighted perception loss on them."""
        outputs = self.outputs(records)
        targets = self.frame_targets(records)
        tokens = outputs_to_tokens(per_keyframe(outputs), records, self.cfg, targets)
        if self.loss_weight <= 0:
            return tokens, None
        loss, _ = perception_loss(outputs, targets, self.tail.perception.map_decoder.grid_half, self.cfg.loss,
                                  self.cfg.grid)
        return tokens, self.loss_weight * loss

    @torch.no_grad()
    def all_tokens(self, records: list[SampleRecord], batch_size: int = 8) -> dict[str, PerceptionTokens]:
        """Detached tokens of every record (eval mode): inference, and the first look at a split."""
        was_training = self.tail.training
        self.tail.eval()
        tokens = {}
        for start in range(0, len(records), batch_size):
            tokens.update(self.tokens(records[start:start + batch_size]))
        self.tail.train(was_training)
        return tokens

    def optimizer(self, lr: float, weight_decay: float) -> torch.optim.AdamW:
        params = [p for p in self.tail.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def save(self, folder: Path, optimizer: torch.optim.Optimizer, state: dict) -> Path:
        """`folder` in the perception stage's checkpoint format (+ where it started from)."""
        config = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
        meta = {**state, "stage": "planning", "fine_tuned_from": str(self.source)}
        return save_checkpoint(folder, self.tail.perception.state_dict(), optimizer.state_dict(), meta,
                               {"config.yaml": config})

    @staticmethod
    def saved_state(folder: Path) -> tuple[dict, dict]:
        """(optimizer state, state.json) of a folder written by `save`; for an exact resume."""
        _, optimizer_state, state = load_checkpoint(folder)
        if optimizer_state is None:
            raise FileNotFoundError(f"{folder}/optimizer.safetensors: missing, so the run cannot resume exactly")
        return optimizer_state, state


def perception_folder(checkpoint: str | Path) -> Path | None:
    """`<checkpoint>/perception` when that planning checkpoint was trained online, else None."""
    folder = Path(checkpoint) / PERCEPTION_DIR
    return folder if (folder / "model.safetensors").is_file() else None


class OnlineBatches:
    """Batches whose perception tokens are computed by the online tail at the moment they are drawn."""

    def __init__(self, examples: list[TrainingExample], records: list[SampleRecord], online: OnlinePerception,
                 builder: SequenceBuilder, pad_id: int, max_length: int):
        self.examples, self.records, self.online = examples, records, online
        self.builder, self.pad_id, self.max_length = builder, pad_id, max_length
        self.by_token = {r.sample_token: r for r in records}

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: list[int]) -> dict:
        chosen = [self.examples[i] for i in indices]
        # one tail pass per real keyframe: kinematic-copy pseudo-records share their source's tokens
        sources = sorted({source_token(e.sample_token) for e in chosen})
        tokens, perception_loss = self.online.forward([self.by_token[s] for s in sources])
        samples, dropped = encode_examples(self.builder, chosen, self.records, tokens, self.max_length)
        if not samples:
            raise ValueError(f"online batch {list(indices)}: every example was dropped ({dict(dropped)})")
        batch = collate(samples, self.pad_id)
        if perception_loss is not None:
            batch["perception_loss"] = perception_loss  # weighted; the runner adds it to the LLM's loss
        return batch
