"""DIN's attention unit: an MLP over [q, k, q - k, q * k] gives one weight per history item.

The first layer is applied in decomposed form. For a first-layer weight split into blocks
W = [W_q; W_k; W_d; W_p] over the four inputs,
  [q, k, q - k, q * k] W = q (W_q + W_d) + k (W_k - W_d) + (q * k) W_p,
so the key term is computed once per user, the query term once per candidate, and the product
term as k diag(q) W_p, which never materializes the [batch, num_candidates, seq_len, 4 * dim]
concatenation. `concat_logits` keeps the literal form as the reference for tests.
"""

from __future__ import annotations

import torch
from torch import nn

from .masking import masked_softmax

__all__ = ["DINAttention"]


class DINAttention(nn.Module):
    """DIN local activation unit with optional softmax normalization (DIN itself uses none)."""

    def __init__(self, embed_dim: int, hidden: tuple[int, ...] = (32, 16), softmax: bool = False) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("DINAttention needs at least one hidden layer width in `hidden`.")
        self.embed_dim = embed_dim
        self.value_dim = embed_dim
        self.softmax = softmax
        self.first = nn.Linear(4 * embed_dim, hidden[0])
        layers: list[nn.Module] = []
        for width_in, width_out in zip(hidden[:-1], hidden[1:]):
            layers += [nn.ReLU(), nn.Linear(width_in, width_out)]
        layers += [nn.ReLU(), nn.Linear(hidden[-1], 1)]
        self.rest = nn.Sequential(*layers)

    def _blocks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # nn.Linear stores weight as [out, in]; transpose to [in, out] blocks.
        return tuple(self.first.weight.t().split(self.embed_dim, dim=0))  # 4 x [embed_dim, hidden0]

    def prepare(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the per-user key term [batch, seq_len, hidden0] and the values (the history)."""
        _, w_k, w_d, _ = self._blocks()
        key_term = torch.matmul(history, w_k - w_d) + self.first.bias  # [batch, seq_len, hidden0]
        return key_term, history

    def attend(
        self,
        key_term: torch.Tensor,
        values: torch.Tensor,
        valid: torch.Tensor,
        candidates: torch.Tensor,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        w_q, _, w_d, w_p = self._blocks()
        query_term = torch.matmul(candidates, w_q + w_d)  # [batch, num_candidates, hidden0]
        product_weight = candidates.unsqueeze(-1) * w_p  # [batch, num_candidates, embed_dim, hidden0]
        product_term = torch.matmul(values.unsqueeze(1), product_weight)  # [batch, num_candidates, seq_len, hidden0]
        hidden = product_term + query_term.unsqueeze(2) + key_term.unsqueeze(1)  # [batch, num_candidates, seq_len, hidden0]
        logits = self.rest(hidden).squeeze(-1)  # [batch, num_candidates, seq_len]
        return self._pool(logits, values, valid, return_weights)

    def concat_logits(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Reference logits from the literal concatenation: [batch, num_candidates, seq_len]."""
        seq_len, num_candidates = history.shape[1], candidates.shape[1]
        q = candidates.unsqueeze(2).expand(-1, -1, seq_len, -1)  # [batch, num_candidates, seq_len, embed_dim]
        k = history.unsqueeze(1).expand(-1, num_candidates, -1, -1)  # [batch, num_candidates, seq_len, embed_dim]
        features = torch.cat([q, k, q - k, q * k], dim=-1)  # [batch, num_candidates, seq_len, 4 * embed_dim]
        return self.rest(self.first(features)).squeeze(-1)

    def _pool(self, logits, values, valid, return_weights):
        mask = valid.unsqueeze(1)  # [batch, 1, seq_len]
        if self.softmax:
            weights = masked_softmax(logits, mask)
        else:
            weights = logits * mask.to(logits.dtype)  # [batch, num_candidates, seq_len]
        interest = torch.matmul(weights, values)  # [batch, num_candidates, embed_dim]
        return (interest, weights) if return_weights else interest

    def forward(self, history, valid, candidates, return_weights: bool = False):
        key_term, values = self.prepare(history)
        return self.attend(key_term, values, valid, candidates, return_weights=return_weights)
