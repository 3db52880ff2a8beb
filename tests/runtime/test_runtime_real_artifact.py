"""The runtime against a real exported artifact: equal to PyTorch, ragged input, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from attn_models import load_checkpoint
from attn_runtime import InputError, Scorer


@pytest.fixture(scope="module")
def scorer(small_artifact):
    return Scorer.from_artifact(small_artifact)


@pytest.fixture(scope="module")
def reference(small_artifact):
    return load_checkpoint(small_artifact / "reference" / "checkpoint.pt")


def _request(rng, batch, seq_len, num_candidates):
    lengths = rng.integers(0, seq_len + 1, size=batch)
    ids = rng.integers(1, 2001, size=(batch, seq_len))
    ids[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
    return ids, lengths, rng.integers(1, 2001, size=(batch, num_candidates))


def _torch_scores(model, ids, lengths, candidates):
    with torch.inference_mode():
        return model(torch.as_tensor(ids), torch.as_tensor(lengths), torch.as_tensor(candidates)).numpy()


def test_scores_match_pytorch(scorer, reference):
    ids, lengths, candidates = _request(np.random.default_rng(0), 8, 30, 40)
    scores = scorer.score(ids, lengths, candidates)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, _torch_scores(reference, ids, lengths, candidates), atol=1e-5, rtol=0)


def test_ragged_lists_match_padded(scorer):
    histories = [[5, 9, 13], [], [7]]
    candidates = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    ragged = scorer.score(histories=histories, candidates=candidates)
    padded = scorer.score(np.array([[5, 9, 13], [0, 0, 0], [7, 0, 0]]), np.array([3, 0, 1]), np.array(candidates))
    for row in range(3):
        np.testing.assert_allclose(ragged[row], padded[row], atol=1e-6, rtol=0)


def test_int32_ids_widened(scorer):
    ids, lengths, candidates = _request(np.random.default_rng(1), 2, 5, 3)
    np.testing.assert_array_equal(
        scorer.score(ids.astype(np.int32), lengths.astype(np.int32), candidates.astype(np.int32)),
        scorer.score(ids, lengths, candidates),
    )


def test_out_of_vocab_id_rejected(scorer):
    with pytest.raises(InputError, match="candidate_ids"):
        scorer.score(np.array([[1, 2]]), np.array([2]), np.array([[2001]]))


def test_concurrent_scoring_equals_serial(scorer):
    rng = np.random.default_rng(2)
    requests = [_request(rng, int(rng.integers(1, 5)), int(rng.integers(1, 40)), int(rng.integers(1, 30)))
                for _ in range(64)]
    serial = [scorer.score(*request) for request in requests]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda request: scorer.score(*request), requests))
    for expected, got in zip(serial, concurrent):
        np.testing.assert_array_equal(got, expected)
