"""The id-level target-attention ranker: item ids in, one logit per candidate out.

Inputs (the contract every exported graph keeps):
  history_ids      int64 [batch, seq_len], right-padded with padding id 0
  history_lengths  int64 [batch], number of real slots per row
  candidate_ids    int64 [batch, num_candidates]
Output:
  scores           float32 [batch, num_candidates], logits

`encode_user` is the user side: everything that does not depend on the candidates, computed once
per user. `score_candidates` is the candidate side. `forward` composes them, so the history is
never tiled per candidate.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import TargetAttention
from .config import RankerConfig
from .din import DINAttention
from .heads import DotHead, MLPHead
from .masking import length_mask
from .positional import make_positional, recency_positions
from .self_attention import HistoryEncoder

__all__ = ["TargetAttentionRanker", "build_attention"]


def build_attention(config: RankerConfig) -> nn.Module:
    """Build the attention module that `config.attention` names."""
    d = config.embed_dim
    if config.attention == "dot":
        return TargetAttention(d, project_query_key=False, project_value=config.value_projection)
    if config.attention == "projected":
        return TargetAttention(
            d, attention_dim=config.resolved_attention_dim, project_value=config.value_projection
        )
    if config.attention == "multihead":
        return TargetAttention(
            d,
            attention_dim=config.resolved_attention_dim,
            num_heads=config.num_heads,
            project_value=True,
            output_projection=True,
        )
    return DINAttention(d, hidden=config.din_hidden, softmax=config.din_softmax)


class TargetAttentionRanker(nn.Module):
    def __init__(self, config: RankerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.item_embedding = nn.Embedding(config.vocab_size, d, padding_idx=config.padding_id)
        nn.init.normal_(self.item_embedding.weight, std=d**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[config.padding_id].zero_()
        self.positional = make_positional(config.positional, d, config.max_seq_len)
        self.history_encoder = (
            HistoryEncoder(d, config.self_attention_blocks, config.self_attention_heads, config.dropout)
            if config.self_attention_blocks
            else None
        )
        self.attention = build_attention(config)
        if config.head == "mlp":
            self.head: nn.Module = MLPHead(self.attention.value_dim, d, config.mlp_hidden, config.dropout)
        else:
            if self.attention.value_dim != d:
                raise ValueError(
                    f"head='dot' needs an interest vector of width embed_dim ({d}), but the attention "
                    f"returns width {self.attention.value_dim}; use head='mlp'."
                )
            self.head = DotHead()

    def encode_user(
        self, history_ids: torch.Tensor, history_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the user state (keys, values, valid) computed once per user.

        keys and values are [batch, seq_len, width]; valid is bool [batch, seq_len].
        """
        seq_len = history_ids.shape[1]
        valid = length_mask(history_lengths, seq_len)  # [batch, seq_len]
        history = self.item_embedding(history_ids)  # [batch, seq_len, embed_dim]
        if self.positional is not None:
            history = history + self.positional(recency_positions(history_lengths, seq_len))
        if self.history_encoder is not None:
            history = self.history_encoder(history, valid)  # [batch, seq_len, embed_dim]
        keys, values = self.attention.prepare(history)
        return keys, values, valid

    def score_candidates(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        valid: torch.Tensor,
        candidate_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Score candidates against a user state: float32 [batch, num_candidates]."""
        candidates = self.item_embedding(candidate_ids)  # [batch, num_candidates, embed_dim]
        interest = self.attention.attend(keys, values, valid, candidates)  # [batch, num_candidates, value_dim]
        return self.head(interest, candidates)  # [batch, num_candidates]

    def forward(
        self, history_ids: torch.Tensor, history_lengths: torch.Tensor, candidate_ids: torch.Tensor
    ) -> torch.Tensor:
        keys, values, valid = self.encode_user(history_ids, history_lengths)
        return self.score_candidates(keys, values, valid, candidate_ids)

    def attention_weights(
        self, history_ids: torch.Tensor, history_lengths: torch.Tensor, candidate_ids: torch.Tensor
    ) -> torch.Tensor:
        """Return the target-attention weights for inspection (not part of the exported graph)."""
        keys, values, valid = self.encode_user(history_ids, history_lengths)
        candidates = self.item_embedding(candidate_ids)
        _, weights = self.attention.attend(keys, values, valid, candidates, return_weights=True)
        return weights
