"""DETR-style query decoder over BEV features for map elements (polylines).

Agents are detected by dense centre heads instead (perception/centre_head.py says why). The decoder is a stack of `nn.TransformerDecoderLayer` whose memory is the flattened BEV grid
plus its positional embedding. Each query also has a learned reference point in the grid
(normalised to [0, 1]); polyline points are predicted as offsets from it in logit space, which
spreads the queries over the grid from the first step. Outputs (metres, LiDAR frame):

  MapDecoder   -> embeddings (B, Q, D), logits (B, Q, types), points (B, Q, P, 2)
"""

from __future__ import annotations

import torch
from torch import nn

from perception.bev_encoder import PositionMLP, normalised_coords
from perception.config import BevModelConfig, GridConfig


def mlp(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))


class QueryDecoder(nn.Module):
    """Learned queries + reference points attending to a BEV grid."""

    def __init__(self, cfg: BevModelConfig, num_queries: int) -> None:
        super().__init__()
        dim = cfg.token_dim
        self.query = nn.Embedding(num_queries, dim)
        self.reference = nn.Embedding(num_queries, 2)
        nn.init.uniform_(self.reference.weight, -2.0, 2.0)  # logits of reference points spread over the grid
        self.position = PositionMLP(dim)
        layer = nn.TransformerDecoderLayer(dim, cfg.decoder_heads, cfg.ffn_dim, cfg.dropout, batch_first=True)
        self.layers = nn.TransformerDecoder(layer, cfg.decoder_layers)

    def forward(self, bev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """bev (B, D, H, W) -> query embeddings (B, Q, D) and reference points (B, Q, 2) in [0, 1]."""
        batch, _, height, width = bev.shape
        memory = bev.flatten(2).transpose(1, 2) + self.position(normalised_coords(height, width).to(bev))
        reference = self.reference.weight.sigmoid()
        queries = (self.query.weight + self.position(reference * 2 - 1)).expand(batch, -1, -1)
        return self.layers(queries, memory), reference.expand(batch, -1, -1)


class MapDecoder(nn.Module):
    def __init__(self, cfg: BevModelConfig, grid: GridConfig, num_types: int) -> None:
        super().__init__()
        self.decoder = QueryDecoder(cfg, cfg.num_map_queries)
        self.register_buffer("grid_half", torch.tensor([grid.x_half, grid.y_half]), persistent=False)
        self.num_points = cfg.map_points
        self.cls_head = nn.Linear(cfg.token_dim, num_types)
        nn.init.constant_(self.cls_head.bias, -4.6)
        self.points_head = mlp(cfg.token_dim, 2 * cfg.map_points)

    def forward(self, bev: torch.Tensor) -> dict[str, torch.Tensor]:
        embeddings, reference = self.decoder(bev)
        raw = self.points_head(embeddings).unflatten(-1, (self.num_points, 2))
        points_unit = (torch.logit(reference, eps=1e-4)[..., None, :] + raw).sigmoid()
        return {"embeddings": embeddings, "logits": self.cls_head(embeddings), "points": (points_unit * 2 - 1) * self.grid_half}
