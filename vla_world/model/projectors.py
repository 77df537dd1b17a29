"""Projectors: map perception tokens (width D) into the LLM's embedding space (width H).

One 2-layer GELU MLP per token type, Linear(D, H) -> GELU -> Linear(H, H), no norm, as in
OpenDriveVLA (its Table 1 projector sizes are exactly 3 x [(D*H + H) + (H*H + H)]).
The focus `object` token of agent questions is an agent token, so it uses the agent projector.
"""

from __future__ import annotations

import torch
from torch import nn

TOKEN_TYPES: tuple[str, ...] = ("scene", "agent", "map")


class TokenProjector(nn.Sequential):
    def __init__(self, token_width: int, llm_width: int):
        super().__init__(nn.Linear(token_width, llm_width), nn.GELU(), nn.Linear(llm_width, llm_width))


class Projectors(nn.Module):
    """`scene`, `agent` and `map` projectors; `project(kind, x)` with kind in those or `object`."""

    def __init__(self, token_width: int, llm_width: int):
        super().__init__()
        self.token_width = token_width
        self.scene = TokenProjector(token_width, llm_width)
        self.agent = TokenProjector(token_width, llm_width)
        self.map = TokenProjector(token_width, llm_width)

    def project(self, kind: str, tokens: torch.Tensor) -> torch.Tensor:
        """(N, D) perception tokens -> (N, H) LLM embeddings."""
        if tokens.shape[-1] != self.token_width:
            raise ValueError(f"{kind} tokens have width {tokens.shape[-1]}, the projectors expect {self.token_width}; "
                             "the token cache and the checkpoint come from different perception configs")
        module = self.agent if kind == "object" else getattr(self, kind)
        return module(tokens.to(module[0].weight.dtype))  # bf16 under DeepSpeed or mixed precision
