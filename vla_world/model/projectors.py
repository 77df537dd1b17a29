"""Projectors: map perception tokens (width D) into the LLM's embedding space (width H).

One 2-layer GELU MLP per token type, Linear(D, H) -> GELU -> Linear(H, H), no norm, as in
OpenDriveVLA (its Table 1 projector sizes are exactly 3 x [(D*H + H) + (H*H + H)]).
The focus `object` token of agent questions is an agent token, so it uses the agent projector.
A model with the ego-state token (`vla_world.model.ego_token`) has a fourth one, `ego`, of the
same form from the ego vector's width E.
"""

from __future__ import annotations

import torch
from torch import nn

TOKEN_TYPES: tuple[str, ...] = ("scene", "agent", "map")


class TokenProjector(nn.Sequential):
    def __init__(self, token_width: int, llm_width: int):
        super().__init__(nn.Linear(token_width, llm_width), nn.GELU(), nn.Linear(llm_width, llm_width))


class Projectors(nn.Module):
    """`scene`, `agent`, `map` (and `ego` when ego_width > 0) projectors; `project(kind, x)`, kind in those or `object`."""

    def __init__(self, token_width: int, llm_width: int, ego_width: int = 0):
        super().__init__()
        self.token_width = token_width
        self.llm_width = llm_width
        self.scene = TokenProjector(token_width, llm_width)
        self.agent = TokenProjector(token_width, llm_width)
        self.map = TokenProjector(token_width, llm_width)
        self.ego: TokenProjector | None = None
        if ego_width:
            self.set_ego(ego_width)

    @property
    def ego_width(self) -> int:
        """Input width of the ego projector, 0 without one."""
        return self.ego[0].in_features if self.ego is not None else 0

    def set_ego(self, ego_width: int, seed: int | None = None) -> None:
        """Add a fresh ego projector (ego_width > 0; `seed` makes its init reproducible) or drop it (0)."""
        if not ego_width:
            self.ego = None
            return
        generator_state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(seed)
        self.ego = TokenProjector(ego_width, self.llm_width).to(self.scene[0].weight)  # device and dtype
        if seed is not None:
            torch.random.set_rng_state(generator_state)  # the caller's random stream stays where it was

    def project(self, kind: str, tokens: torch.Tensor) -> torch.Tensor:
        """(N, D) perception tokens (or (N, E) ego vectors for kind `ego`) -> (N, H) LLM embeddings."""
        width = self.ego_width if kind == "ego" else self.token_width
        if kind == "ego" and self.ego is None:
            raise ValueError("ego tokens given to a model without an ego projector (PromptOptions.ego_token is off)")
        if tokens.shape[-1] != width:
            what = ("the ego vector changed since this checkpoint (vla_world.model.ego_token); retrain the planning stage"
                    if kind == "ego" else "the token cache and the checkpoint come from different perception configs")
            raise ValueError(f"{kind} tokens have width {tokens.shape[-1]}, the projector expects {width}; {what}")
        module = self.agent if kind == "object" else getattr(self, kind)
        return module(tokens.to(module[0].weight.dtype))  # bf16 under DeepSpeed or mixed precision
