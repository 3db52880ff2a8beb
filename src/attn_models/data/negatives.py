"""Uniform negative sampling that excludes each user's own items."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["UserItemSet", "sample_negatives"]

# Rejection rounds before giving up. Each round redraws only the rejected entries, so
# this bound is reached only when a user has almost every item in the exclusion set.
MAX_REJECTION_ROUNDS = 1000


class UserItemSet:
    """Set of (user row, item id) pairs for fast vectorized membership tests.

    Args:
        sequences: one int64 array of item ids per user row.
        num_items: largest valid item id.
    """

    def __init__(self, sequences: Sequence[np.ndarray], num_items: int) -> None:
        self.num_items = num_items
        self.vocab_size = num_items + 1
        distinct_items = [np.unique(np.asarray(seq, dtype=np.int64)) for seq in sequences]
        keys = [row * self.vocab_size + items for row, items in enumerate(distinct_items)]
        self.keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        self.keys.sort()
        self.distinct_counts = np.asarray(
            [items.size for items in distinct_items], dtype=np.int64
        )  # [num_users]

    def contains(self, user_rows: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Test membership elementwise. user_rows broadcasts against item_ids."""
        keys = user_rows * self.vocab_size + item_ids
        if self.keys.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        positions = np.searchsorted(self.keys, keys)
        positions = np.minimum(positions, self.keys.size - 1)
        return self.keys[positions] == keys


def duplicates_of_earlier_columns(matrix: np.ndarray) -> np.ndarray:
    """Mark entries equal to an entry further left in the same row, bool like matrix."""
    equal = matrix[:, :, None] == matrix[:, None, :]  # [rows, cols, cols]
    earlier = np.tril(np.ones((matrix.shape[1],) * 2, dtype=bool), k=-1)
    return (equal & earlier).any(axis=2)


def sample_negatives(
    user_rows: np.ndarray,
    exclusions: UserItemSet,
    num_negatives: int,
    rng: np.random.Generator,
    distinct: bool,
) -> np.ndarray:
    """Draw item ids uniformly from 1..num_items, never from the row's user's items.

    Args:
        user_rows: int64 [batch], the user row of each output row in `exclusions`.
        exclusions: items of each user that must not be drawn.
        num_negatives: negatives per row, >= 1.
        rng: source of randomness. The result depends only on its state and the inputs.
        distinct: if True, the negatives of one row are all different.

    Returns:
        int64 [batch, num_negatives].

    Raises:
        ValueError: if a user has too few items outside the exclusion set.
        RuntimeError: if rejection sampling has not finished after
            MAX_REJECTION_ROUNDS rounds.
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1, got {num_negatives}.")
    user_rows = np.asarray(user_rows, dtype=np.int64)
    num_items = exclusions.num_items

    available = num_items - exclusions.distinct_counts[user_rows]  # [batch]
    needed = num_negatives if distinct else 1
    if user_rows.size and available.min() < needed:
        worst = int(user_rows[np.argmin(available)])
        raise ValueError(
            f"user row {worst} has only {int(available.min())} items outside its history "
            f"out of {num_items}, but {needed} negatives are needed. Lower num_negatives "
            "or drop users that interacted with almost every item."
        )

    negatives = rng.integers(1, num_items + 1, size=(user_rows.size, num_negatives))
    rows = np.broadcast_to(user_rows[:, None], negatives.shape)  # [batch, num_negatives]
    for _ in range(MAX_REJECTION_ROUNDS):
        rejected = exclusions.contains(rows, negatives)
        if distinct:
            rejected |= duplicates_of_earlier_columns(negatives)
        num_rejected = int(rejected.sum())
        if num_rejected == 0:
            return negatives.astype(np.int64, copy=False)
        negatives[rejected] = rng.integers(1, num_items + 1, size=num_rejected)
    raise RuntimeError(
        f"negative sampling still had {num_rejected} rejected draws after "
        f"{MAX_REJECTION_ROUNDS} rounds. Lower num_negatives, since some users cover "
        "most of the item catalogue."
    )
