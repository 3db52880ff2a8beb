"""PyTorch target-attention models for recommendation ranking (torch and numpy only)."""

from .attention import TargetAttention
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .config import RankerConfig
from .din import DINAttention
from .heads import DotHead, MLPHead
from .masking import length_mask, masked_softmax
from .positional import LearnedPositions, SinusoidalPositions, recency_positions
from .ranker import TargetAttentionRanker
from .self_attention import HistoryEncoder, SelfAttentionBlock

__all__ = [
    "DINAttention",
    "DotHead",
    "HistoryEncoder",
    "LearnedPositions",
    "MLPHead",
    "RankerConfig",
    "SelfAttentionBlock",
    "SinusoidalPositions",
    "TargetAttention",
    "TargetAttentionRanker",
    "length_mask",
    "load_checkpoint",
    "masked_softmax",
    "read_checkpoint",
    "recency_positions",
    "save_checkpoint",
]
__version__ = "0.1.0"
