"""Length masks and the masked softmax shared by every attention module.

Dimension glossary used across `attn_models`:
  batch           users in a request batch
  seq_len         history slots, right-padded with padding id 0
  num_candidates  candidate items scored per user
  heads, head_dim multi-head split of the attention width
"""

from __future__ import annotations

import torch

__all__ = ["MASK_FILL", "length_mask", "masked_softmax"]

# Finite fill for masked scores. A finite value keeps an all-padding row at uniform weights
# instead of NaN (a -inf fill gives 0/0); `masked_softmax` then zeroes those weights.
MASK_FILL = -1e9


def length_mask(lengths: torch.Tensor, seq_len: int | torch.SymInt) -> torch.Tensor:
    """Return a bool mask, True on real history slots: position < length."""
    positions = torch.arange(seq_len, device=lengths.device)  # [seq_len]
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # [batch, seq_len]


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis that gives padding slots exactly zero weight.

    `valid` broadcasts against `scores`. A row with no valid slot (an empty history) gets all
    zero weights, so its interest vector is zero, never NaN and never a mean over padding.
    """
    filled = scores.masked_fill(~valid, MASK_FILL)
    weights = torch.softmax(filled, dim=-1)
    return weights * valid.to(weights.dtype)
