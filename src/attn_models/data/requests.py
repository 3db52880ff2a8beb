"""Held-out ranking requests: one user's history and a shuffled candidate list each."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from attn_models.data.negatives import UserItemSet, sample_negatives
from attn_models.data.sequences import (
    SequenceDataset,
    check_split_name,
    leave_last_out_split,
    pad_histories,
)

logger = logging.getLogger(__name__)

__all__ = ["RankingRequests", "heldout_requests"]


@dataclass(frozen=True)
class RankingRequests:
    """A batch of ranking requests in the model's input format, with labels.

    Attributes:
        history_ids: int64 [batch, seq_len], right-padded with 0.
        history_lengths: int64 [batch].
        candidate_ids: int64 [batch, num_candidates]. All candidates of a row differ.
        labels: float32 [batch, num_candidates], 1.0 for the held-out positive, else 0.0.
        user_ids: int64 [batch], original user id of each row, for per-user metrics.

    Raises:
        ValueError: from the constructor when shapes or dtypes do not match.
    """

    history_ids: np.ndarray
    history_lengths: np.ndarray
    candidate_ids: np.ndarray
    labels: np.ndarray
    user_ids: np.ndarray

    def __post_init__(self) -> None:
        expected = {
            "history_ids": (np.int64, 2),
            "history_lengths": (np.int64, 1),
            "candidate_ids": (np.int64, 2),
            "labels": (np.float32, 2),
            "user_ids": (np.int64, 1),
        }
        for name, (dtype, ndim) in expected.items():
            array = getattr(self, name)
            if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim:
                received = (
                    f"{array.dtype} with {array.ndim} dimensions"
                    if isinstance(array, np.ndarray)
                    else type(array).__name__
                )
                raise ValueError(
                    f"{name} must be a {np.dtype(dtype).name} numpy array with {ndim} "
                    f"dimensions, got {received}. Convert it with np.asarray(..., "
                    f"dtype=np.{np.dtype(dtype).name})."
                )
        batch = self.history_ids.shape[0]
        for name in ("history_lengths", "candidate_ids", "labels", "user_ids"):
            if getattr(self, name).shape[0] != batch:
                raise ValueError(
                    f"{name} has {getattr(self, name).shape[0]} rows but history_ids has "
                    f"{batch}. Every array needs one row per request."
                )
        if self.labels.shape != self.candidate_ids.shape:
            raise ValueError(
                f"labels has shape {self.labels.shape} but candidate_ids has "
                f"{self.candidate_ids.shape}. Give one label per candidate."
            )

    def __len__(self) -> int:
        return int(self.history_ids.shape[0])

    @property
    def num_candidates(self) -> int:
        """Candidates per request."""
        return int(self.candidate_ids.shape[1])

    def model_inputs(self) -> dict[str, np.ndarray]:
        """Return the three model inputs keyed by their contract names."""
        return {
            "history_ids": self.history_ids,
            "history_lengths": self.history_lengths,
            "candidate_ids": self.candidate_ids,
        }

    def take(self, rows: slice | np.ndarray) -> RankingRequests:
        """Return the requests at the given rows (a slice or an index array)."""
        return RankingRequests(
            history_ids=self.history_ids[rows],
            history_lengths=self.history_lengths[rows],
            candidate_ids=self.candidate_ids[rows],
            labels=self.labels[rows],
            user_ids=self.user_ids[rows],
        )


def heldout_requests(
    dataset: SequenceDataset,
    split: str = "test",
    num_negatives: int = 100,
    max_users: int | None = None,
    max_seq_len: int | None = 50,
    seed: int = 0,
) -> RankingRequests:
    """Build one ranking request per evaluation user from the leave-last-out split.

    The history is everything before the target (for "test" that includes the
    validation target), truncated to the most recent max_seq_len items. Candidates are
    the target plus num_negatives distinct items drawn uniformly from the items the user
    never interacted with (in the whole sequence), in a seeded random order. Users with
    fewer than 3 items have no targets and are not included.

    Args:
        dataset: the full sequences (not a training part).
        split: "test" or "validation".
        num_negatives: negatives per request, >= 1.
        max_users: if given, keep only the first max_users evaluation users in dataset
            order, which keeps subsets of one dataset nested.
        max_seq_len: maximum history length, or None for whole histories.
        seed: seed of the numpy Generator for negatives and candidate order.

    Raises:
        ValueError: if split is unknown, max_users < 1, no user has 3 items, or a user
            has fewer than num_negatives items outside their sequence.
    """
    check_split_name(split)
    if max_users is not None and max_users < 1:
        raise ValueError(f"max_users must be at least 1 or None, got {max_users}.")
    split_data = leave_last_out_split(dataset)
    if split_data.num_eval_users == 0:
        raise ValueError(
            f"no user of {dataset.source!r} has the 3 items needed for a held-out "
            "request. Use a dataset with longer sequences."
        )
    num_rows = split_data.num_eval_users
    if max_users is not None:
        num_rows = min(num_rows, max_users)

    rng = np.random.default_rng(seed)
    rows = np.arange(num_rows)
    histories = [split_data.heldout_history(int(row), split) for row in rows]
    history_ids, history_lengths = pad_histories(histories, max_seq_len=max_seq_len)

    eval_users = split_data.eval_users[rows]  # [batch]
    exclusions = UserItemSet(dataset.sequences, dataset.num_items)
    negatives = sample_negatives(
        eval_users, exclusions, num_negatives, rng, distinct=True
    )  # [batch, num_negatives]
    positives = split_data.targets(split)[rows]  # [batch]
    candidates = np.concatenate([positives[:, None], negatives], axis=1)  # [batch, 1 + num_negatives]
    labels = np.zeros(candidates.shape, dtype=np.float32)  # [batch, num_candidates]
    labels[:, 0] = 1.0

    order = rng.permuted(np.tile(np.arange(candidates.shape[1]), (num_rows, 1)), axis=1)
    candidates = np.take_along_axis(candidates, order, axis=1)
    labels = np.take_along_axis(labels, order, axis=1)

    logger.debug(
        "built %d %s requests with %d candidates from %s",
        num_rows,
        split,
        candidates.shape[1],
        dataset.source,
    )
    return RankingRequests(
        history_ids=history_ids,
        history_lengths=history_lengths,
        candidate_ids=np.ascontiguousarray(candidates, dtype=np.int64),
        labels=np.ascontiguousarray(labels),
        user_ids=dataset.user_ids[eval_users],
    )
