"""Data for target-attention rankers: sequences, splits, examples, requests, loaders.

Item ids are 1..num_items everywhere, and 0 is the padding id.
"""

from attn_models.data.examples import TrainingExamples, build_training_examples
from attn_models.data.movielens import MOVIELENS_DIR_ENV, load_movielens, movielens_dir_from_env
from attn_models.data.negatives import UserItemSet, sample_negatives
from attn_models.data.requests import RankingRequests, heldout_requests
from attn_models.data.sequences import (
    MIN_EVAL_SEQUENCE_LENGTH,
    PADDING_ID,
    SequenceDataset,
    SequenceSplit,
    leave_last_out_split,
    pad_histories,
)
from attn_models.data.synthetic import make_synthetic

__all__ = [
    "MIN_EVAL_SEQUENCE_LENGTH",
    "MOVIELENS_DIR_ENV",
    "PADDING_ID",
    "RankingRequests",
    "SequenceDataset",
    "SequenceSplit",
    "TrainingExamples",
    "UserItemSet",
    "build_training_examples",
    "heldout_requests",
    "leave_last_out_split",
    "load_movielens",
    "make_synthetic",
    "movielens_dir_from_env",
    "pad_histories",
    "sample_negatives",
]
