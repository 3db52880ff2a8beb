"""Positional encodings for behaviour histories.

Convention: position 0 is the most recent behaviour. For a history of length n, the slot i
(0-based, left to right in time order) has position n - 1 - i. Positions depend only on the
length and the slot, so appending padding on the right never changes a real item's position.
Padding slots get position 0; they are masked downstream.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["recency_positions", "LearnedPositions", "SinusoidalPositions", "make_positional"]


def recency_positions(lengths: torch.Tensor, seq_len: int | torch.SymInt) -> torch.Tensor:
    """Return int64 positions [batch, seq_len]: 0 for the most recent item, 0 on padding."""
    slots = torch.arange(seq_len, device=lengths.device).unsqueeze(0)  # [1, seq_len]
    return (lengths.unsqueeze(1) - 1 - slots).clamp(min=0)  # [batch, seq_len]


class LearnedPositions(nn.Module):
    """A learned table of `max_seq_len` position vectors."""

    def __init__(self, max_seq_len: int, embed_dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max_seq_len, embed_dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table(positions)  # [batch, seq_len, embed_dim]


class SinusoidalPositions(nn.Module):
    """Fixed sine/cosine encodings; any position is valid, so there is no maximum length."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        half = (embed_dim + 1) // 2
        inv_freq = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.embed_dim = embed_dim

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        angles = positions.to(torch.float32).unsqueeze(-1) * self.inv_freq  # [batch, seq_len, half]
        encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)  # [batch, seq_len, 2 * half]
        return encoding[..., : self.embed_dim]  # [batch, seq_len, embed_dim]


def make_positional(kind: str, embed_dim: int, max_seq_len: int | None) -> nn.Module | None:
    if kind == "none":
        return None
    if kind == "learned":
        if not max_seq_len:
            raise ValueError("Learned positions need max_seq_len.")
        return LearnedPositions(max_seq_len, embed_dim)
    if kind == "sinusoidal":
        return SinusoidalPositions(embed_dim)
    raise ValueError(f"Unknown positional encoding {kind!r}; use 'none', 'learned' or 'sinusoidal'.")
