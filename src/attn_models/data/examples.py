"""Next-item training examples built from training sequences."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from attn_models.data.negatives import UserItemSet, sample_negatives
from attn_models.data.sequences import PADDING_ID, SequenceDataset

logger = logging.getLogger(__name__)

__all__ = ["TrainingExamples", "build_training_examples"]


@dataclass(frozen=True)
class TrainingExamples:
    """Next-item prediction examples, one per row.

    Attributes:
        history_ids: int64 [num_examples, seq_len], right-padded with 0.
        history_lengths: int64 [num_examples], between 1 and seq_len.
        positive_ids: int64 [num_examples], the item that followed the history.
        negative_ids: int64 [num_examples, num_negatives], items not in the user's
            training sequence.
        user_rows: int64 [num_examples], row of the user in the source dataset.
    """

    history_ids: np.ndarray
    history_lengths: np.ndarray
    positive_ids: np.ndarray
    negative_ids: np.ndarray
    user_rows: np.ndarray

    def __len__(self) -> int:
        return int(self.positive_ids.size)


def build_training_examples(
    dataset: SequenceDataset,
    max_seq_len: int,
    num_negatives: int,
    rng: np.random.Generator | int,
    max_examples: int | None = None,
) -> TrainingExamples:
    """Build one example for every position t >= 1 of every training sequence.

    The example for position t has the history seq[:t] truncated to its most recent
    max_seq_len items, the positive seq[t], and num_negatives uniform negatives that are
    not anywhere in the user's sequence. Position 0 has no history and is skipped.

    Args:
        dataset: training sequences, for example SequenceSplit.train.
        max_seq_len: maximum history length, >= 1.
        num_negatives: negatives per example, >= 1. They may repeat within a row.
        rng: a numpy Generator or an integer seed. The same seed and inputs return
            identical arrays.
        max_examples: if given, keep a uniform random subset of this many examples
            (drawn from rng), in their original order.

    Raises:
        ValueError: if max_seq_len or max_examples is < 1, or no sequence has 2 items.
    """
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be at least 1, got {max_seq_len}.")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be at least 1 or None, got {max_examples}.")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    lengths = np.asarray([seq.size for seq in dataset.sequences], dtype=np.int64)
    examples_per_user = np.maximum(lengths - 1, 0)  # [num_users]
    total = int(examples_per_user.sum())
    if total == 0:
        raise ValueError(
            f"no training examples: every sequence of {dataset.source!r} has fewer than "
            "2 items. Use a dataset with longer sequences."
        )

    # Position t of each example inside its user's sequence, and the user row.
    user_rows = np.repeat(np.arange(lengths.size, dtype=np.int64), examples_per_user)
    first_example = np.cumsum(examples_per_user) - examples_per_user  # [num_users]
    positions = np.arange(total, dtype=np.int64) - first_example[user_rows] + 1
    if max_examples is not None and max_examples < total:
        keep = np.sort(generator.choice(total, size=max_examples, replace=False))
        user_rows = user_rows[keep]
        positions = positions[keep]

    flat = np.concatenate(dataset.sequences)
    offsets = np.cumsum(lengths) - lengths  # [num_users], start of each user in flat
    history_lengths = np.minimum(positions, max_seq_len)  # [num_examples]
    starts = offsets[user_rows] + positions - history_lengths  # [num_examples]
    columns = np.arange(max_seq_len, dtype=np.int64)
    gather = starts[:, None] + columns[None, :]  # [num_examples, max_seq_len]
    valid = columns[None, :] < history_lengths[:, None]  # [num_examples, max_seq_len]
    history_ids = np.where(valid, flat[np.minimum(gather, flat.size - 1)], PADDING_ID)
    seq_len = int(history_lengths.max())
    history_ids = np.ascontiguousarray(history_ids[:, :seq_len])  # [num_examples, seq_len]

    positive_ids = flat[offsets[user_rows] + positions]  # [num_examples]
    exclusions = UserItemSet(dataset.sequences, dataset.num_items)
    negative_ids = sample_negatives(
        user_rows, exclusions, num_negatives, generator, distinct=False
    )  # [num_examples, num_negatives]

    return TrainingExamples(
        history_ids=history_ids.astype(np.int64, copy=False),
        history_lengths=history_lengths,
        positive_ids=positive_ids,
        negative_ids=negative_ids,
        user_rows=user_rows,
    )
