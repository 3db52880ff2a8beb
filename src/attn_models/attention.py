"""Target attention: the candidate is the query, the user's history supplies keys and values.

Shapes (see `masking` for the glossary):
  history     [batch, seq_len, embed_dim]
  valid       [batch, seq_len] bool, True on real slots
  candidates  [batch, num_candidates, embed_dim]
  interest    [batch, num_candidates, value_dim]

The work is split in two so that the user side runs once per user and is broadcast over the
candidates: `prepare` maps the history to keys and values, `attend` scores candidates against them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .masking import masked_softmax

__all__ = ["TargetAttention"]


class TargetAttention(nn.Module):
    """Scaled dot-product target attention with optional projections and heads.

    With `project_query_key=False` the scores are plain dot products e_c . h_i, scaled by
    1/sqrt(embed_dim). With projections they are (e_c W_q) . (h_i W_k) / sqrt(head_dim).
    `num_heads > 1` needs projections and adds an output projection W_o.
    """

    def __init__(
        self,
        embed_dim: int,
        attention_dim: int | None = None,
        num_heads: int = 1,
        project_query_key: bool = True,
        project_value: bool = False,
        output_projection: bool = False,
    ) -> None:
        super().__init__()
        attention_dim = attention_dim or embed_dim
        if not project_query_key and (num_heads != 1 or attention_dim != embed_dim):
            raise ValueError(
                "TargetAttention without query/key projections has one head of width embed_dim; "
                f"got num_heads={num_heads}, attention_dim={attention_dim}, embed_dim={embed_dim}."
            )
        if attention_dim % num_heads:
            raise ValueError(f"attention_dim {attention_dim} is not divisible by num_heads {num_heads}.")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = attention_dim // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = nn.Linear(embed_dim, attention_dim, bias=False) if project_query_key else None
        self.key = nn.Linear(embed_dim, attention_dim, bias=False) if project_query_key else None
        value_dim = attention_dim if num_heads > 1 else embed_dim
        self.value = nn.Linear(embed_dim, value_dim, bias=False) if (project_value or num_heads > 1) else None
        self.output = nn.Linear(value_dim, embed_dim, bias=False) if (output_projection or num_heads > 1) else None
        self.value_dim = embed_dim if self.output is not None else value_dim

    def prepare(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute keys and values once per user: both [batch, seq_len, width]."""
        keys = self.key(history) if self.key is not None else history
        values = self.value(history) if self.value is not None else history
        return keys, values

    def attend(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        valid: torch.Tensor,
        candidates: torch.Tensor,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return the interest vectors [batch, num_candidates, embed_dim] (and weights on request).

        Weights are [batch, num_candidates, seq_len] for one head and
        [batch, heads, num_candidates, seq_len] for several.
        """
        queries = self.query(candidates) if self.query is not None else candidates  # [batch, num_candidates, attention_dim]
        if self.num_heads == 1:
            scores = torch.matmul(queries, keys.transpose(1, 2)) * self.scale  # [batch, num_candidates, seq_len]
            weights = masked_softmax(scores, valid.unsqueeze(1))
            interest = torch.matmul(weights, values)  # [batch, num_candidates, value_dim]
        else:
            queries = self._split_heads(queries)  # [batch, heads, num_candidates, head_dim]
            keys = self._split_heads(keys)  # [batch, heads, seq_len, head_dim]
            values = self._split_heads(values)  # [batch, heads, seq_len, head_dim]
            scores = torch.matmul(queries, keys.transpose(2, 3)) * self.scale  # [batch, heads, num_candidates, seq_len]
            weights = masked_softmax(scores, valid[:, None, None, :])
            interest = torch.matmul(weights, values)  # [batch, heads, num_candidates, head_dim]
            interest = interest.transpose(1, 2).flatten(2)  # [batch, num_candidates, heads * head_dim]
        if self.output is not None:
            interest = self.output(interest)  # [batch, num_candidates, embed_dim]
        return (interest, weights) if return_weights else interest

    def forward(
        self,
        history: torch.Tensor,
        valid: torch.Tensor,
        candidates: torch.Tensor,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.prepare(history)
        return self.attend(keys, values, valid, candidates, return_weights=return_weights)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, -1).transpose(1, 2)
