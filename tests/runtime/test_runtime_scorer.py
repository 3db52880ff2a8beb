"""Scorer call forms, top_k, the generic run path and concurrent use."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from attn_runtime import InputError, Scorer, SessionConfig

from runtime_builders import VOCAB_SIZE, BuiltArtifact, reference_scores


def padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, max(len(row) for row in rows))
    ids = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
    return ids, np.array([len(row) for row in rows], dtype=np.int64)


def test_scorer_properties(ranking_scorer: Scorer, ranking_artifact: BuiltArtifact) -> None:
    assert ranking_scorer.variant == "optimized"
    assert ranking_scorer.input_names == ("history_ids", "history_lengths", "candidate_ids")
    assert ranking_scorer.output_names == ("scores",)
    assert ranking_scorer.manifest.vocab_size == VOCAB_SIZE
    assert ranking_scorer.artifact_path == ranking_artifact.path


def test_external_data_variant_scores(ranking_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(ranking_artifact.path, variant="fp32")
    history, lengths = padded([[3, 5, 9], [7]])
    candidates = np.array([[1, 2, 3], [4, 5, 6]])
    scores = scorer.score(history, lengths, candidates)
    np.testing.assert_allclose(scores, reference_scores(ranking_artifact.table, history, lengths, candidates), rtol=1e-5, atol=1e-5)


def test_failed_variant_loads_with_allow_failed(ranking_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(ranking_artifact.path, variant="int8", allow_failed=True)
    assert scorer.variant == "int8"


def test_ragged_lists_match_padded(ranking_scorer: Scorer, ranking_artifact: BuiltArtifact) -> None:
    histories = [[3, 5, 9], [], [2, 4, 6, 8, 10, 12], [7]]
    candidates = [[1, 2], [4], [], [11, 12, 13, 14, 15]]
    result = ranking_scorer.score(histories=histories, candidates=candidates)

    assert isinstance(result, list)
    assert [row.shape for row in result] == [(2,), (1,), (0,), (5,)]
    assert all(row.dtype == np.float32 for row in result)

    history_ids, lengths = padded(histories)
    for user, user_candidates in enumerate(candidates):
        if not user_candidates:
            continue
        expected = reference_scores(
            ranking_artifact.table, history_ids[user : user + 1], lengths[user : user + 1], np.array([user_candidates])
        )[0]
        np.testing.assert_allclose(result[user], expected, rtol=1e-5, atol=1e-5)


def test_ragged_empty_history_scores_zero(ranking_scorer: Scorer) -> None:
    result = ranking_scorer.score(histories=[[]], candidates=[[1, 2, 3]])
    np.testing.assert_array_equal(result[0], np.zeros(3, dtype=np.float32))


def test_ragged_all_candidates_empty(ranking_scorer: Scorer) -> None:
    result = ranking_scorer.score(histories=[[1], [2, 3]], candidates=[[], []])
    assert [row.shape for row in result] == [(0,), (0,)]


def test_ragged_no_users(ranking_scorer: Scorer) -> None:
    assert ranking_scorer.score(histories=[], candidates=[]) == []


def test_ragged_accepts_numpy_rows(ranking_scorer: Scorer) -> None:
    from_lists = ranking_scorer.score(histories=[[3, 5]], candidates=[[1, 2]])
    from_arrays = ranking_scorer.score(
        histories=[np.array([3, 5], dtype=np.int32)], candidates=[np.array([1, 2], dtype=np.uint8)]
    )
    np.testing.assert_array_equal(from_lists[0], from_arrays[0])


def test_ragged_padding_does_not_warn(ranking_artifact: BuiltArtifact, caplog: pytest.LogCaptureFixture) -> None:
    scorer = Scorer.from_artifact(ranking_artifact.path, padding_id_policy="raise")
    result = scorer.score(histories=[[3], [4, 5, 6]], candidates=[[1, 2, 3], [4]])
    assert [row.shape for row in result] == [(3,), (1,)]


def test_ragged_user_count_mismatch(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(histories=[[1], [2]], candidates=[[3]])
    message = str(caught.value)
    assert "histories has 2 users" in message
    assert "candidates has 1" in message


def test_ragged_float_row_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(histories=[[1], [2.5]], candidates=[[3], [4]])
    assert "histories[1]" in str(caught.value)
    assert "floating-point" in str(caught.value)


def test_ragged_nested_row_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(histories=[[1], [[2, 3]]], candidates=[[3], [4]])
    assert "histories[1]" in str(caught.value)
    assert "flat list" in str(caught.value)


def test_ragged_error_maps_positions(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(histories=[[1], [2]], candidates=[[3], [4, -1]])
    message = str(caught.value)
    assert "(1, 1) (value -1)" in message
    assert "Ids in 'candidate_ids' must be >= 0" in message
    assert "real slots" not in message
    assert "candidate_ids[i, j] is candidates[i][j]" in message


def test_ragged_needs_both_lists(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(histories=[[1]])
    assert "both histories and candidates" in str(caught.value)


def test_mixed_call_forms_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(np.array([[1]]), histories=[[1]], candidates=[[2]])
    assert "Use one form per call" in str(caught.value)


def test_incomplete_array_form_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(np.array([[1]]), np.array([1]))
    assert "['candidate_ids']" in str(caught.value)


def test_top_k_from_inputs(ranking_scorer: Scorer) -> None:
    history, lengths = padded([[3, 5, 9], [7, 8]])
    candidates = np.array([[1, 2, 3, 4, 6], [10, 11, 12, 13, 14]])
    scores = ranking_scorer.score(history, lengths, candidates)

    indices, values = ranking_scorer.top_k(
        {"history_ids": history, "history_lengths": lengths, "candidate_ids": candidates}, 3
    )
    assert indices.shape == (2, 3)
    expected_indices = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected_indices, axis=1))


def test_top_k_ragged_clips_per_user(ranking_scorer: Scorer) -> None:
    indices, values = ranking_scorer.top_k({"histories": [[3, 5], [7]], "candidates": [[1, 2, 4], [6]]}, 2)
    assert [row.shape for row in indices] == [(2,), (1,)]
    assert np.all(np.diff(values[0]) <= 0)
    np.testing.assert_array_equal(indices[1], [0])


def test_scorer_run_generic_model(custom_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(custom_artifact.path)
    item_ids = np.array([[1, 2, 3], [4, 5, 0]])
    weights = np.array([[1.0, 0.5, 2.0], [1.0, 1.0, 0.0]], dtype=np.float32)
    outputs = scorer.run({"item_ids": item_ids, "weights": weights})
    assert list(outputs) == ["total"]
    expected = (custom_artifact.bias[item_ids] * weights).sum(axis=1)
    np.testing.assert_allclose(outputs["total"], expected, rtol=1e-5, atol=1e-5)


def test_score_rejects_custom_model(custom_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(custom_artifact.path)
    with pytest.raises(InputError) as caught:
        scorer.score(histories=[[1]], candidates=[[2]])
    message = str(caught.value)
    assert "['item_ids', 'weights']" in message
    assert "Scorer.run(feeds)" in message


def test_concurrent_scoring_matches_serial(ranking_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(ranking_artifact.path, config=SessionConfig(intra_op_threads=1))
    rng = np.random.default_rng(42)
    requests = []
    for _ in range(200):
        batch = int(rng.integers(1, 6))
        seq_len = int(rng.integers(1, 12))
        num_candidates = int(rng.integers(1, 9))
        history = rng.integers(1, VOCAB_SIZE, size=(batch, seq_len))
        lengths = rng.integers(0, seq_len + 1, size=batch)
        candidates = rng.integers(1, VOCAB_SIZE, size=(batch, num_candidates))
        requests.append((history, lengths, candidates))

    serial = [scorer.score(*request) for request in requests]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda request: scorer.score(*request), requests))

    assert len(concurrent) == len(serial)
    for index, (expected, actual) in enumerate(zip(serial, concurrent)):
        np.testing.assert_array_equal(actual, expected, err_msg=f"request {index}")
    for (history, lengths, candidates), expected in zip(requests, serial):
        np.testing.assert_allclose(
            expected, reference_scores(ranking_artifact.table, history, lengths, candidates), rtol=1e-5, atol=1e-5
        )
