"""Tests of AUC, GAUC and the popularity baseline against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest

from attn_models.data import SequenceDataset
from attn_models.metrics import auc, gauc, popularity_scores


def pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC by counting every (positive, negative) pair, ties as 1/2."""
    positives = scores[labels == 1]
    negatives = scores[labels == 0]
    wins = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return (wins + 0.5 * ties) / (positives.size * negatives.size)


@pytest.mark.parametrize("seed", range(8))
def test_auc_matches_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(5, 300))
    labels = (rng.random(size) < rng.uniform(0.1, 0.9)).astype(np.float32)
    labels[0], labels[1] = 0.0, 1.0  # both classes present
    scores = rng.integers(0, 6, size).astype(np.float32)  # few values, many ties

    assert auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)


def test_auc_known_values():
    labels = np.array([0, 0, 1, 1])

    assert auc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(labels, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert auc(labels, np.array([0.1, 0.3, 0.2, 0.4])) == 0.75


def test_auc_accepts_2d():
    labels = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    scores = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]], dtype=np.float32)

    assert auc(labels, scores) == pytest.approx(pairwise_auc(labels.ravel(), scores.ravel()))


def test_auc_rejects_single_class():
    with pytest.raises(ValueError, match="both classes"):
        auc(np.zeros(4), np.arange(4.0))


def test_auc_rejects_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        auc(np.array([0, 1]), np.array([0.0, np.nan]))


def test_auc_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="0 or 1"):
        auc(np.array([0, 2]), np.array([0.0, 1.0]))


def test_gauc_weights_by_impressions():
    # User 10: 4 impressions, AUC 1.0. User 20: 2 impressions, AUC 0.0.
    labels = np.array([1, 0, 0, 0, 1, 0])
    scores = np.array([9.0, 1.0, 2.0, 3.0, 0.0, 5.0])
    users = np.array([10, 10, 10, 10, 20, 20])

    assert gauc(labels, scores, users) == pytest.approx((4 * 1.0 + 2 * 0.0) / 6)


def test_gauc_skips_single_class_users():
    labels = np.array([1, 0, 0, 0, 0])
    scores = np.array([2.0, 1.0, 0.0, 7.0, 8.0])
    users = np.array([1, 1, 2, 2, 2])  # user 2 has no positive

    assert gauc(labels, scores, users) == pytest.approx(1.0)


def test_gauc_matches_per_user_pairwise():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 12, 400)
    labels = (rng.random(400) < 0.3).astype(np.float32)
    scores = rng.integers(0, 4, 400).astype(np.float64)

    total = 0.0
    weight = 0
    for user in np.unique(users):
        member = users == user
        if labels[member].min() == labels[member].max():
            continue
        total += pairwise_auc(labels[member], scores[member]) * member.sum()
        weight += member.sum()
    assert gauc(labels, scores, users) == pytest.approx(total / weight, abs=1e-12)


def test_gauc_2d_rows_default_to_users():
    labels = np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32)
    scores = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]], dtype=np.float32)

    assert gauc(labels, scores) == pytest.approx((1.0 + 0.5) / 2)
    # Both rows of one user are pooled into one AUC over 2 x 4 pairs.
    pooled = pairwise_auc(labels.ravel(), scores.ravel())
    assert gauc(labels, scores, np.array([5, 5])) == pytest.approx(pooled)


def test_gauc_differs_from_auc_when_users_shift():
    # Each user is ranked perfectly, but user 2's scores sit above user 1's.
    labels = np.array([[1, 0], [1, 0]], dtype=np.float32)
    scores = np.array([[1.0, 0.0], [11.0, 10.0]], dtype=np.float32)

    assert gauc(labels, scores) == 1.0
    assert auc(labels, scores) == 0.75


def test_gauc_needs_users_for_flat_input():
    with pytest.raises(ValueError, match="user_ids"):
        gauc(np.array([0, 1]), np.array([0.0, 1.0]))


def test_gauc_rejects_all_single_class():
    with pytest.raises(ValueError, match="single class"):
        gauc(np.array([[1, 1], [0, 0]]), np.array([[0.0, 1.0], [2.0, 3.0]]))


def test_popularity_scores_from_dataset():
    dataset = SequenceDataset(sequences=[np.array([1, 2, 2]), np.array([2, 3])], num_items=4)
    scores = popularity_scores(dataset, np.array([[2, 1, 4], [3, 2, 0]]))

    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, np.log1p([[3, 1, 0], [1, 3, 0]]).astype(np.float32))


def test_popularity_scores_from_counts_orders_by_count():
    counts = np.array([0, 5, 1, 9])
    scores = popularity_scores(counts, np.array([1, 2, 3]))

    assert np.argsort(scores).tolist() == [1, 0, 2]


def test_popularity_scores_rejects_unknown_id():
    with pytest.raises(ValueError, match="candidate_ids"):
        popularity_scores(np.array([0, 1, 2]), np.array([1, 3]))
