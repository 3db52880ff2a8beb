"""Ranking metrics (AUC, per-user GAUC) and the popularity baseline, in numpy."""

from __future__ import annotations

import logging

import numpy as np

from attn_models.data.sequences import SequenceDataset

logger = logging.getLogger(__name__)

__all__ = ["auc", "binary_auc", "gauc", "item_counts", "popularity_scores"]


def check_labels_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return labels and scores as float64 arrays after checking shape and values.

    Raises:
        ValueError: if the shapes differ, a label is not 0 or 1, or a score is not finite.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must have the same shape, got {labels.shape} and "
            f"{scores.shape}. Pass one score per label."
        )
    if not np.isin(labels, (0.0, 1.0)).all():
        bad = labels[~np.isin(labels, (0.0, 1.0))][:5]
        raise ValueError(f"labels must be 0 or 1, got values such as {bad.tolist()}.")
    if not np.isfinite(scores).all():
        raise ValueError(
            f"scores contain {int((~np.isfinite(scores)).sum())} NaN or infinite values. "
            "Check the model output before computing metrics."
        )
    return labels, scores


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1-D values from 1 upward, giving tied values the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start index of each run of equal values in sorted order.
    run_starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run_ends = np.r_[run_starts[1:], values.size]  # exclusive
    run_ranks = (run_starts + run_ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, run_ends - run_starts)
    return ranks


def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Compute AUC of flat arrays without input checks, or None for a single class.

    labels must contain only 0.0 and 1.0 and scores must be finite. auc() checks both
    and raises instead of returning None.
    """
    num_positive = float(labels.sum())
    num_negative = float(labels.size - num_positive)
    if num_positive == 0 or num_negative == 0:
        return None
    ranks = average_ranks(scores)
    positive_rank_sum = float(ranks[labels == 1.0].sum())
    # Mann-Whitney U: pairs where the positive wins, with ties counted as 1/2.
    wins = positive_rank_sum - num_positive * (num_positive + 1) / 2.0
    return wins / (num_positive * num_negative)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Compute ROC AUC over all labels and scores, of any matching shape.

    AUC is the fraction of (positive, negative) pairs where the positive scores higher,
    with tied pairs counted as 1/2. It uses average ranks, so it takes O(n log n).

    Raises:
        ValueError: if shapes differ, labels are not 0/1, scores are not finite, or the
            labels contain only one class.
    """
    labels, scores = check_labels_scores(labels, scores)
    value = binary_auc(labels.ravel(), scores.ravel())
    if value is None:
        raise ValueError(
            f"AUC needs positive and negative labels, but all {labels.size} labels are "
            f"{labels.ravel()[0] if labels.size else 'missing'}. Add both classes."
        )
    return value


def gauc(
    labels: np.ndarray,
    scores: np.ndarray,
    user_ids: np.ndarray | None = None,
) -> float:
    """Compute group AUC: per-user AUC averaged with weights = impressions per user.

    Args:
        labels: 0/1 labels, [batch, num_candidates] or flat [n].
        scores: same shape as labels.
        user_ids: user of each row (shape [batch] for 2-D input) or of each element
            (shape [n] for 1-D input). Rows of one user are pooled into one group. For
            2-D input it defaults to one user per row. 1-D input requires it.

    Users whose labels are all one class have no AUC and are skipped, with their weight.

    Raises:
        ValueError: for invalid labels or scores (see auc), a user_ids shape that does
            not match, or when no user has both classes.
    """
    labels, scores = check_labels_scores(labels, scores)
    if labels.ndim == 2:
        rows = labels.shape[0]
        groups = np.arange(rows) if user_ids is None else np.asarray(user_ids)
        if groups.shape != (rows,):
            raise ValueError(
                f"user_ids must have shape ({rows},), one id per row, got {groups.shape}."
            )
        groups = np.repeat(groups, labels.shape[1])  # [batch * num_candidates]
    elif labels.ndim == 1:
        if user_ids is None:
            raise ValueError(
                "gauc of flat labels needs user_ids with one id per label; pass user_ids "
                "or reshape labels to [batch, num_candidates]."
            )
        groups = np.asarray(user_ids)
        if groups.shape != labels.shape:
            raise ValueError(
                f"user_ids must have shape {labels.shape} like labels, got {groups.shape}."
            )
    else:
        raise ValueError(
            f"gauc takes 1-D or 2-D labels, got {labels.ndim} dimensions {labels.shape}."
        )

    flat_labels = labels.ravel()
    flat_scores = scores.ravel()
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    ends = np.r_[starts[1:], sorted_groups.size]

    weighted_sum = 0.0
    total_weight = 0
    skipped = 0
    for start, end in zip(starts, ends):
        members = order[start:end]
        value = binary_auc(flat_labels[members], flat_scores[members])
        if value is None:
            skipped += 1
            continue
        weighted_sum += value * members.size
        total_weight += members.size
    if total_weight == 0:
        raise ValueError(
            f"GAUC needs at least one user with both positive and negative labels, but "
            f"all {starts.size} users have a single class."
        )
    if skipped:
        logger.debug("gauc skipped %d of %d single-class users", skipped, starts.size)
    return weighted_sum / total_weight


def item_counts(dataset: SequenceDataset) -> np.ndarray:
    """Count each item id over the dataset's sequences, int64 [vocab_size], entry 0 is 0."""
    return dataset.item_counts()


def popularity_scores(
    dataset_or_counts: SequenceDataset | np.ndarray,
    candidate_ids: np.ndarray,
) -> np.ndarray:
    """Score candidates by how often they occur: log(1 + count), float32.

    Pass only training sequences (for example SequenceSplit.train) or their counts, so
    held-out targets do not leak into the baseline.

    Args:
        dataset_or_counts: a SequenceDataset to count, or counts int [vocab_size].
        candidate_ids: int ids in 0..vocab_size-1, any shape.

    Returns:
        float32 array shaped like candidate_ids. Tied counts give tied scores.

    Raises:
        ValueError: if counts is not 1-D or a candidate id is out of range.
    """
    if isinstance(dataset_or_counts, SequenceDataset):
        counts = dataset_or_counts.item_counts()
    else:
        counts = np.asarray(dataset_or_counts)
        if counts.ndim != 1:
            raise ValueError(
                f"counts must be 1-D [vocab_size], got shape {counts.shape}. Pass "
                "SequenceDataset.item_counts() or the dataset itself."
            )
    candidate_ids = np.asarray(candidate_ids)
    if candidate_ids.size and (candidate_ids.min() < 0 or candidate_ids.max() >= counts.size):
        raise ValueError(
            f"candidate_ids must be in 0..{counts.size - 1} (the vocabulary of the counts), "
            f"got min {candidate_ids.min()} and max {candidate_ids.max()}. Count items over "
            "the same id mapping as the candidates."
        )
    return np.log1p(counts[candidate_ids].astype(np.float64)).astype(np.float32)
