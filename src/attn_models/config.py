"""Configuration of the target-attention ranker: a small, JSON-serializable dataclass."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["RankerConfig", "ATTENTION_KINDS", "POSITIONAL_KINDS", "HEAD_KINDS"]

ATTENTION_KINDS = ("dot", "projected", "multihead", "din")
POSITIONAL_KINDS = ("none", "learned", "sinusoidal")
HEAD_KINDS = ("mlp", "dot")


@dataclass
class RankerConfig:
    """Hyperparameters of `TargetAttentionRanker`.

    attention:
      - "dot": s_i = e_c . h_i / sqrt(embed_dim), no projections.
      - "projected": s_i = (e_c W_q) . (h_i W_k) / sqrt(attention_dim), one head.
      - "multihead": `num_heads` projected heads, then an output projection W_o.
      - "din": DIN's MLP attention unit over [q, k, q - k, q * k].
    positional: encoding added to the history embeddings. Position 0 is the most recent
      behaviour, so right-padding never shifts the position of a real item.
    max_seq_len: the maximum history length the model accepts. Required by "learned" positions
      (the size of the position table); None means unbounded.
    """

    vocab_size: int
    embed_dim: int = 32
    attention: Literal["dot", "projected", "multihead", "din"] = "multihead"
    attention_dim: int | None = None
    num_heads: int = 2
    value_projection: bool = True
    positional: Literal["none", "learned", "sinusoidal"] = "sinusoidal"
    max_seq_len: int | None = None
    self_attention_blocks: int = 0
    self_attention_heads: int = 2
    din_hidden: tuple[int, ...] = (32, 16)
    din_softmax: bool = False
    head: Literal["mlp", "dot"] = "mlp"
    mlp_hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.0
    padding_id: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.din_hidden = tuple(int(x) for x in self.din_hidden)
        self.mlp_hidden = tuple(int(x) for x in self.mlp_hidden)
        self._check_choice("attention", self.attention, ATTENTION_KINDS)
        self._check_choice("positional", self.positional, POSITIONAL_KINDS)
        self._check_choice("head", self.head, HEAD_KINDS)
        if self.vocab_size < 2:
            raise ValueError(
                f"RankerConfig.vocab_size must be at least 2 (padding id 0 plus one item), "
                f"got {self.vocab_size}."
            )
        if self.embed_dim < 1:
            raise ValueError(f"RankerConfig.embed_dim must be positive, got {self.embed_dim}.")
        if self.attention == "multihead" and self.resolved_attention_dim % self.num_heads:
            raise ValueError(
                f"RankerConfig.attention_dim ({self.resolved_attention_dim}) must be divisible by "
                f"num_heads ({self.num_heads}); change one of them."
            )
        if self.self_attention_blocks and self.embed_dim % self.self_attention_heads:
            raise ValueError(
                f"RankerConfig.embed_dim ({self.embed_dim}) must be divisible by "
                f"self_attention_heads ({self.self_attention_heads})."
            )
        if self.positional == "learned" and not self.max_seq_len:
            raise ValueError(
                "RankerConfig.positional='learned' needs max_seq_len (the size of the position "
                "table); set max_seq_len or use positional='sinusoidal'."
            )
        if self.max_seq_len is not None and self.max_seq_len < 1:
            raise ValueError(f"RankerConfig.max_seq_len must be positive or None, got {self.max_seq_len}.")

    @staticmethod
    def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
        if value not in choices:
            raise ValueError(f"RankerConfig.{name} must be one of {choices}, got {value!r}.")

    @property
    def resolved_attention_dim(self) -> int:
        """Width of queries and keys: `attention_dim`, or `embed_dim` when unset."""
        return self.attention_dim or self.embed_dim

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["din_hidden"] = list(self.din_hidden)
        data["mlp_hidden"] = list(self.mlp_hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RankerConfig":
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - known - {"padding_id"})
        if unknown:
            raise ValueError(f"Unknown RankerConfig fields {unknown}; known fields are {sorted(known)}.")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
