"""Per-user item sequences, the leave-last-out split and history padding.

Item ids are remapped to 1..num_items so that id 0 is free for padding: no sequence
ever contains 0, and every padded history uses 0 for the slots past its length.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "PADDING_ID",
    "MIN_EVAL_SEQUENCE_LENGTH",
    "SequenceDataset",
    "SequenceSplit",
    "leave_last_out_split",
    "pad_histories",
]

PADDING_ID = 0
# A user needs a training item, a validation target and a test target.
MIN_EVAL_SEQUENCE_LENGTH = 3


@dataclass(frozen=True)
class SequenceDataset:
    """Item sequences of users, each in time order, with ids remapped to 1..num_items.

    Attributes:
        sequences: one int64 array per user, oldest item first. Ids are in
            1..num_items, and 0 (padding) never occurs.
        num_items: number of distinct items, so valid ids are 1..num_items.
        item_id_map: original item id -> remapped id in 1..num_items. It may be empty
            for generated data that has no original ids.
        source: free text naming where the data came from, for logs and reports.
        user_ids: original user id of each sequence, int64 [num_users].

    Raises:
        ValueError: from the constructor when an id is outside 1..num_items, a
            sequence is not 1-D, or user_ids does not match the number of sequences.
    """

    sequences: list[np.ndarray]
    num_items: int
    item_id_map: Mapping[int, int] = field(default_factory=dict)
    source: str = "unknown"
    user_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.num_items < 1:
            raise ValueError(
                f"num_items must be at least 1, got {self.num_items}. "
                "Build the dataset from at least one item."
            )
        sequences = [np.asarray(seq, dtype=np.int64) for seq in self.sequences]
        for index, seq in enumerate(sequences):
            if seq.ndim != 1:
                raise ValueError(
                    f"sequences[{index}] must be 1-D, got shape {seq.shape}. "
                    "Pass one flat list of item ids per user."
                )
            if seq.size and (seq.min() < 1 or seq.max() > self.num_items):
                raise ValueError(
                    f"sequences[{index}] contains ids outside 1..{self.num_items} "
                    f"(min {seq.min()}, max {seq.max()}). Remap item ids so that 0 "
                    "stays the padding id and the largest id equals num_items."
                )
        object.__setattr__(self, "sequences", sequences)

        if self.user_ids is None:
            user_ids = np.arange(len(sequences), dtype=np.int64)
        else:
            user_ids = np.asarray(self.user_ids, dtype=np.int64)
        if user_ids.shape != (len(sequences),):
            raise ValueError(
                f"user_ids must have shape ({len(sequences)},), one id per sequence, "
                f"got {user_ids.shape}."
            )
        object.__setattr__(self, "user_ids", user_ids)

    @property
    def vocab_size(self) -> int:
        """Size of an embedding table for these ids: num_items + 1 (row 0 is padding)."""
        return self.num_items + 1

    @property
    def num_users(self) -> int:
        """Number of user sequences."""
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        """Total number of items over all sequences."""
        return int(sum(seq.size for seq in self.sequences))

    def item_counts(self) -> np.ndarray:
        """Count occurrences of each id over all sequences, int64 [vocab_size].

        Entry 0 (padding) is always 0.
        """
        if not self.sequences:
            return np.zeros(self.vocab_size, dtype=np.int64)
        flat = np.concatenate(self.sequences)
        return np.bincount(flat, minlength=self.vocab_size).astype(np.int64)


@dataclass(frozen=True)
class SequenceSplit:
    """Leave-last-out split of a SequenceDataset.

    Attributes:
        train: training sequences for every user of the source dataset, with the same
            num_items and item_id_map. For a user with at least
            MIN_EVAL_SEQUENCE_LENGTH items it is the sequence without its last two
            items. A shorter user keeps the whole sequence here and gets no targets.
        eval_users: row indices into train.sequences of the users that have targets,
            int64 [num_eval_users], ascending.
        validation_targets: second-to-last item of each evaluation user,
            int64 [num_eval_users].
        test_targets: last item of each evaluation user, int64 [num_eval_users].
    """

    train: SequenceDataset
    eval_users: np.ndarray
    validation_targets: np.ndarray
    test_targets: np.ndarray

    @property
    def num_eval_users(self) -> int:
        """Number of users with a validation and a test target."""
        return int(self.eval_users.size)

    def heldout_history(self, row: int, split: str) -> np.ndarray:
        """Return the full history that precedes the target of one evaluation user.

        Args:
            row: position in eval_users (not a user id).
            split: "validation" (history is the training sequence) or "test"
                (history is the training sequence plus the validation target).

        Raises:
            ValueError: if split is neither "validation" nor "test".
        """
        check_split_name(split)
        train_sequence = self.train.sequences[int(self.eval_users[row])]
        if split == "validation":
            return train_sequence
        return np.append(train_sequence, self.validation_targets[row])

    def targets(self, split: str) -> np.ndarray:
        """Return the targets of a split, int64 [num_eval_users]."""
        check_split_name(split)
        return self.validation_targets if split == "validation" else self.test_targets


def check_split_name(split: str) -> None:
    """Raise ValueError unless split is "validation" or "test"."""
    if split not in ("validation", "test"):
        raise ValueError(
            f'split must be "validation" or "test", got {split!r}. '
            "Use validation for model selection and test for the final report."
        )


def leave_last_out_split(dataset: SequenceDataset) -> SequenceSplit:
    """Split every user's sequence into training items, a validation and a test target.

    Per user, the last item is the test target and the one before it the validation
    target. The rest is the training sequence. Users with fewer than
    MIN_EVAL_SEQUENCE_LENGTH (3) items are kept for training with their whole
    sequence and are left out of validation and test, so no interaction is lost.
    """
    train_sequences: list[np.ndarray] = []
    eval_users: list[int] = []
    validation_targets: list[int] = []
    test_targets: list[int] = []

    for index, seq in enumerate(dataset.sequences):
        if seq.size < MIN_EVAL_SEQUENCE_LENGTH:
            train_sequences.append(seq)
            continue
        train_sequences.append(seq[:-2])
        eval_users.append(index)
        validation_targets.append(int(seq[-2]))
        test_targets.append(int(seq[-1]))

    num_short = dataset.num_users - len(eval_users)
    if num_short:
        logger.info(
            "%d of %d users have fewer than %d items: kept for training only",
            num_short,
            dataset.num_users,
            MIN_EVAL_SEQUENCE_LENGTH,
        )

    train = SequenceDataset(
        sequences=train_sequences,
        num_items=dataset.num_items,
        item_id_map=dataset.item_id_map,
        source=f"{dataset.source} [training part of leave-last-out split]",
        user_ids=dataset.user_ids,
    )
    return SequenceSplit(
        train=train,
        eval_users=np.asarray(eval_users, dtype=np.int64),
        validation_targets=np.asarray(validation_targets, dtype=np.int64),
        test_targets=np.asarray(test_targets, dtype=np.int64),
    )


def pad_histories(
    histories: Sequence[Sequence[int] | np.ndarray],
    max_seq_len: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad item histories with PADDING_ID into one matrix.

    Args:
        histories: one sequence of item ids per row, oldest first. Ids must be >= 1.
        max_seq_len: if given, keep only the most recent max_seq_len items of each
            history. Must be >= 1.

    Returns:
        (history_ids int64 [batch, seq_len], history_lengths int64 [batch]). seq_len is
        the longest history after truncation, but at least 1, so that a batch of empty
        histories is still a valid [batch, 1] input of padding.

    Raises:
        ValueError: if max_seq_len < 1, a history is not 1-D, or a history contains an
            id below 1 (0 is reserved for padding).
    """
    if max_seq_len is not None and max_seq_len < 1:
        raise ValueError(
            f"max_seq_len must be at least 1 or None, got {max_seq_len}. "
            "Pass None to keep whole histories."
        )

    truncated: list[np.ndarray] = []
    for index, history in enumerate(histories):
        array = np.asarray(history, dtype=np.int64)
        if array.ndim != 1:
            raise ValueError(
                f"histories[{index}] must be 1-D, got shape {array.shape}. "
                "Pass one flat list of item ids per row."
            )
        if array.size and array.min() < 1:
            raise ValueError(
                f"histories[{index}] contains id {array.min()}, but item ids start at 1 "
                f"and {PADDING_ID} is the padding id. Remove padding before calling "
                "pad_histories."
            )
        if max_seq_len is not None:
            array = array[-max_seq_len:]
        truncated.append(array)

    lengths = np.asarray([array.size for array in truncated], dtype=np.int64)  # [batch]
    seq_len = max(1, int(lengths.max())) if truncated else 1
    ids = np.full((len(truncated), seq_len), PADDING_ID, dtype=np.int64)  # [batch, seq_len]
    for row, array in enumerate(truncated):
        ids[row, : array.size] = array
    return ids, lengths
