"""Self-attention blocks over the history, run before the target attention.

Each block is a pre-norm transformer layer whose keys are masked to the real history slots.
Outputs on padding slots are finite but meaningless; the target attention masks them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .masking import masked_softmax

__all__ = ["SelfAttentionBlock", "HistoryEncoder"]


class SelfAttentionBlock(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.scale = 1.0 / math.sqrt(embed_dim // num_heads)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dim, 2 * embed_dim), nn.GELU(), nn.Linear(2 * embed_dim, embed_dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, seq_len, dim = x.shape
        qkv = self.qkv(self.norm1(x))  # [batch, seq_len, 3 * embed_dim]
        qkv = qkv.view(batch, seq_len, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # [3, batch, heads, seq_len, head_dim]
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scale  # [batch, heads, seq_len, seq_len]
        weights = masked_softmax(scores, valid[:, None, None, :])
        attended = torch.matmul(weights, v)  # [batch, heads, seq_len, head_dim]
        attended = attended.transpose(1, 2).reshape(batch, seq_len, dim)  # [batch, seq_len, embed_dim]
        x = x + self.dropout(self.proj(attended))
        return x + self.dropout(self.ffn(self.norm2(x)))


class HistoryEncoder(nn.Module):
    """A stack of `SelfAttentionBlock`s followed by a final LayerNorm."""

    def __init__(self, embed_dim: int, num_blocks: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SelfAttentionBlock(embed_dim, num_heads, dropout) for _ in range(num_blocks))
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, valid)
        return self.norm(x)
