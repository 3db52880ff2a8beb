"""Custom-model factories that tests pass to `attn-export export --factory tests.factories:NAME`."""

from __future__ import annotations

import torch

from attn_export.spec import ranker_export_spec


class FrozenCandidates(torch.nn.Module):
    """Reshapes scores to a fixed width, so torch.export freezes num_candidates to 5."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(50, 4)

    def forward(self, history, lengths, candidates):
        scores = (self.embedding(candidates) * self.embedding(history).sum(1, keepdim=True)).sum(-1)
        return scores.reshape(scores.shape[0], 5)


class MeanPool(torch.nn.Module):
    """A custom id-level model with its own argument names: masked mean of history, dot product."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(50, 8, padding_idx=0)

    def forward(self, ids, lengths, candidates):
        valid = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).float()  # [batch, seq_len]
        pooled = (self.embedding(ids) * valid[..., None]).sum(1)  # [batch, dim]
        pooled = pooled / lengths.clamp(min=1)[:, None].float()
        return (self.embedding(candidates) * pooled[:, None, :]).sum(-1)  # [batch, num_candidates]


class FixedWidthHistory(torch.nn.Module):
    """Exports fine at the sample width 7, but fails in PyTorch on any other seq_len."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(50, 4)

    def forward(self, history, lengths, candidates):
        history = history.reshape(-1, 7)  # [batch, 7]: only valid when seq_len divides evenly
        return (self.embedding(candidates) * self.embedding(history).sum(1, keepdim=True)).sum(-1)


def fixed_width():
    return FixedWidthHistory().eval(), ranker_export_spec(50, None)


def frozen():
    return FrozenCandidates().eval(), ranker_export_spec(50, None)


def mean_pool():
    return MeanPool().eval(), ranker_export_spec(50, None)


def not_a_model():
    return 42
