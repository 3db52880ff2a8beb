"""FLOPs of one TargetAttentionRanker forward pass, computed from its config.

Counting rules:
  * a matmul of [m, k] by [k, n] is 2 * m * n * k FLOPs; a Linear layer is a matmul, and the dot
    head's u . e_c (written as multiply and sum) counts 2 * embed_dim per candidate;
  * embedding and position-table gathers are free;
  * softmax, masks, bias adds, activations, residual adds and layer norms are not counted
    (their cost is linear in the tensor size, small next to the matmuls);
  * the user side (self-attention blocks, key and value projections) is counted once per user,
    the candidate side (query projection, attention scores, weighted sum, output projection,
    DIN unit, scoring head) once per candidate.

The formulas follow `attn_models.ranker`, `attention`, `din`, `self_attention` and `heads`.
Works on the plain config dict stored in an artifact's manifest, so it needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["RequestFlops", "ranker_flops", "mlp_flops"]


@dataclass(frozen=True)
class RequestFlops:
    """FLOPs of one call, split into the user side and the candidate side."""

    user_side: int
    candidate_side: int

    @property
    def total(self) -> int:
        return self.user_side + self.candidate_side


def mlp_flops(widths: Sequence[int]) -> int:
    """FLOPs of a stack of Linear layers through `widths` (input, hidden..., output) for one row."""
    return sum(2 * width_in * width_out for width_in, width_out in zip(widths[:-1], widths[1:]))


def _user_flops_per_user(config: Mapping[str, Any], seq_len: int) -> int:
    d = int(config["embed_dim"])
    flops = 0
    blocks = int(config.get("self_attention_blocks", 0) or 0)
    # Each block: qkv (d -> 3d), scores and weighted sum (2 * L * L * d each over all heads),
    # output projection (d -> d), feed-forward (d -> 2d -> d).
    per_block = seq_len * (mlp_flops([d, 3 * d]) + mlp_flops([d, d]) + mlp_flops([d, 2 * d, d]))
    per_block += 2 * (2 * seq_len * seq_len * d)
    flops += blocks * per_block

    kind = config["attention"]
    if kind == "din":
        hidden0 = int(config["din_hidden"][0])
        return flops + seq_len * mlp_flops([d, hidden0])  # key term
    attention_dim, value_width, projects_qk, projects_value, _ = _target_attention_shape(config)
    if projects_qk:
        flops += seq_len * mlp_flops([d, attention_dim])  # keys
    if projects_value:
        flops += seq_len * mlp_flops([d, value_width])  # values
    return flops


def _target_attention_shape(config: Mapping[str, Any]) -> tuple[int, int, bool, bool, bool]:
    """Return (attention_dim, value_width, projects_qk, projects_value, has_output) of TargetAttention."""
    d = int(config["embed_dim"])
    kind = config["attention"]
    resolved = int(config.get("attention_dim") or d)
    if kind == "dot":
        return d, d, False, bool(config.get("value_projection", True)), False
    if kind == "projected":
        return resolved, d, True, bool(config.get("value_projection", True)), False
    if kind == "multihead":
        heads = int(config.get("num_heads", 1))
        value_width = resolved if heads > 1 else d
        return resolved, value_width, True, True, True
    raise ValueError(f"Unknown attention kind {kind!r}; expected dot, projected, multihead or din.")


def _candidate_flops_per_candidate(config: Mapping[str, Any], seq_len: int) -> tuple[int, int]:
    """Return (FLOPs per candidate, width of the interest vector)."""
    d = int(config["embed_dim"])
    if config["attention"] == "din":
        hidden = [int(h) for h in config["din_hidden"]]
        flops = mlp_flops([d, hidden[0]])  # query term
        flops += seq_len * mlp_flops([d, hidden[0]])  # product term: history by diag(q) W_p
        flops += seq_len * mlp_flops([*hidden, 1])  # rest of the DIN MLP, per history slot
        flops += 2 * seq_len * d  # weighted sum of the history
        return flops, d
    attention_dim, value_width, projects_qk, _, has_output = _target_attention_shape(config)
    flops = mlp_flops([d, attention_dim]) if projects_qk else 0  # query
    flops += 2 * seq_len * attention_dim  # scores over all heads
    flops += 2 * seq_len * value_width  # weighted sum of the values
    if has_output:
        flops += mlp_flops([value_width, d])
        return flops, d
    return flops, value_width


def ranker_flops(config: Mapping[str, Any], batch: int, seq_len: int, num_candidates: int) -> RequestFlops:
    """Return the FLOPs of one call with `batch` users, `seq_len` slots and `num_candidates` each.

    `config` is a RankerConfig as a dict (`RankerConfig.to_dict()` or manifest["model"]["config"]).
    Padded slots are counted as real, because the graph computes them too.
    Raises ValueError on an attention or head kind this module does not know.
    """
    d = int(config["embed_dim"])
    per_candidate, interest_width = _candidate_flops_per_candidate(config, seq_len)
    head = config.get("head", "mlp")
    if head == "mlp":
        per_candidate += mlp_flops([interest_width + d, *[int(h) for h in config["mlp_hidden"]], 1])
    elif head == "dot":
        per_candidate += 2 * d
    else:
        raise ValueError(f"Unknown head kind {head!r}; expected mlp or dot.")
    user_side = batch * _user_flops_per_user(config, seq_len)
    candidate_side = batch * num_candidates * per_candidate
    return RequestFlops(user_side=user_side, candidate_side=candidate_side)
