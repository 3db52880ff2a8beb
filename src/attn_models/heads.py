"""Scoring heads: turn an interest vector and a candidate embedding into one logit."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPHead", "DotHead"]


class MLPHead(nn.Module):
    """logit = MLP([u; e_c]) with ReLU hidden layers."""

    def __init__(self, interest_dim: int, embed_dim: int, hidden: tuple[int, ...] = (64, 32), dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = interest_dim + embed_dim
        for out in hidden:
            layers += [nn.Linear(width, out), nn.ReLU(), nn.Dropout(dropout)]
            width = out
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, interest: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        features = torch.cat([interest, candidates], dim=-1)  # [batch, num_candidates, interest_dim + embed_dim]
        return self.mlp(features).squeeze(-1)  # [batch, num_candidates]


class DotHead(nn.Module):
    """logit = u . e_c; needs the interest and the candidate embedding to have one width."""

    def forward(self, interest: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return (interest * candidates).sum(dim=-1)  # [batch, num_candidates]
