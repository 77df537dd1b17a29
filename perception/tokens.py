"""The tokens perception hands to the LLM: the interface between `perception/` and `vla_world/`.

Scene, agent and map tokens all have one width D. Counts: scene tokens are fixed per config
(cameras x pooled cells), agents and map elements vary per sample. Decoded boxes and polylines
travel with their tokens so prompts, captions and pictures can refer to them.

Frames: boxes (x, y, z, w, l, h, yaw) and polylines are in the current LiDAR_TOP frame
(x right, y forward, metres; yaw CCW from +x), as in `vla_world.data.records`.

A token cache (one safetensors file per split) lets the LLM stages skip perception:
    save_token_cache(path, {sample_token: PerceptionTokens}); load_token_cache(path)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vla_world.data.fingerprint import check_data_identity


@dataclass
class PerceptionTokens:
    """Tokens for one sample. Shapes: scene (S, D), agents (A, D), map (M, D)."""

    scene: torch.Tensor
    agents: torch.Tensor
    map: torch.Tensor
    agent_boxes: torch.Tensor  # (A, 7) decoded (or GT, in oracle mode) boxes, LiDAR frame
    agent_classes: torch.Tensor  # (A,) int64 index into DETECTION_CLASSES
    agent_track_ids: torch.Tensor  # (A,) int64; GT track id of the matched instance, -1 if unmatched
    map_types: torch.Tensor  # (M,) int64 index into MAP_CLASSES
    map_points: torch.Tensor  # (M, P, 2) decoded polylines, fixed P points each
    # (A, 2) m/s decoded (or GT, in oracle mode) velocities, LiDAR frame; None in caches written before
    # they were stored (the LLM never reads them; text renderings of perception do, vla_world/export)
    agent_velocities: torch.Tensor | None = None

    @property
    def width(self) -> int:
        return int(self.scene.shape[-1])

    def counts(self) -> dict[str, int]:
        return {"scene": int(self.scene.shape[0]), "agents": int(self.agents.shape[0]), "map": int(self.map.shape[0])}

    def to_flat(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}/{k}": v.contiguous() for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_flat(cls, tensors: dict[str, torch.Tensor], prefix: str) -> PerceptionTokens:
        optional = {"agent_velocities"}  # absent from older caches
        return cls(**{k: tensors[f"{prefix}/{k}"] for k in cls.__dataclass_fields__
                      if k not in optional or f"{prefix}/{k}" in tensors})


def save_token_cache(path: str | Path, tokens: dict[str, PerceptionTokens], meta: dict | None = None) -> None:
    """Write {sample_token: tokens} to one safetensors file (atomically) plus meta in its header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat: dict[str, torch.Tensor] = {}
    for sample_token, tok in tokens.items():
        flat.update(tok.to_flat(sample_token))
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(flat, str(tmp), metadata={"meta": json.dumps(meta or {}), "samples": json.dumps(list(tokens))})
    tmp.replace(path)


def load_token_cache(path: str | Path) -> dict[str, PerceptionTokens]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no token cache; build it with `python tools/export_tokens.py` "
                                "or train with `token_source: oracle`")
    flat = load_file(str(path))
    samples = sorted({k.split("/", 1)[0] for k in flat})
    return {s: PerceptionTokens.from_flat(flat, s) for s in samples}


def token_cache_meta(path: str | Path) -> dict:
    """The meta dict a cache was saved with ({} for none), without reading its tensors."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    try:
        meta = json.loads(header.get("meta", "{}"))
    except json.JSONDecodeError:
        return {}
    return meta if isinstance(meta, dict) else {}


def load_tokens_for(path: str | Path, sample_tokens: list[str], dataroot: str | Path | None = None,
                    version: str | None = None) -> dict[str, PerceptionTokens]:
    """`load_token_cache`, refusing a cache that lacks any of `sample_tokens` (a KeyError naming the fix).

    With `dataroot`, a cache exported from another world (its stored data fingerprint) is refused too.
    """
    if dataroot is not None and Path(path).is_file():
        check_data_identity(path, token_cache_meta(path), dataroot, version,
                            fix="re-run tools/export_tokens.py --dataroot with this dataroot")
    tokens = load_token_cache(path)
    missing = [t for t in sample_tokens if t not in tokens]
    if missing:
        raise KeyError(f"{path}: no tokens for {len(missing)} of {len(sample_tokens)} samples (e.g. {missing[0]}); "
                       "re-run tools/export_tokens.py for this dataroot and split")
    return tokens
