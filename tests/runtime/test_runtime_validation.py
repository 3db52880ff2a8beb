"""One test per input-validation rule, run through real onnxruntime sessions.

Each rejection test checks that the message names the input and the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from attn_runtime import InputError, Scorer, ScoringError
from attn_runtime.validation import FeedValidator

from runtime_builders import (
    VOCAB_SIZE,
    BuiltArtifact,
    VariantPlan,
    build_custom_model,
    build_ranking_artifact,
    make_table,
    reference_scores,
    write_artifact,
)

HISTORY_IDS = np.array([[3, 5, 9, 0], [7, 0, 0, 0], [11, 12, 13, 14]], dtype=np.int64)
HISTORY_LENGTHS = np.array([3, 1, 4], dtype=np.int64)
CANDIDATE_IDS = np.array([[1, 2], [4, 6], [8, 10]], dtype=np.int64)


def expected_scores(built: BuiltArtifact) -> np.ndarray:
    return reference_scores(built.table, HISTORY_IDS, HISTORY_LENGTHS, CANDIDATE_IDS)


def test_scores_match_numpy_reference(ranking_scorer: Scorer, ranking_artifact: BuiltArtifact) -> None:
    scores = ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, CANDIDATE_IDS)
    assert scores.dtype == np.float32
    assert scores.shape == (3, 2)
    np.testing.assert_allclose(scores, expected_scores(ranking_artifact), rtol=1e-5, atol=1e-5)


def test_unknown_input_name_rejected(ranking_scorer: Scorer) -> None:
    feeds = {"history_ids": HISTORY_IDS, "history_lengths": HISTORY_LENGTHS, "candidate_ids": CANDIDATE_IDS, "user_id": np.zeros(3)}
    with pytest.raises(InputError) as caught:
        ranking_scorer.run(feeds)
    message = str(caught.value)
    assert "'user_id'" in message
    assert "Remove or rename" in message


def test_missing_input_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.run({"history_ids": HISTORY_IDS, "candidate_ids": CANDIDATE_IDS})
    message = str(caught.value)
    assert "'history_lengths'" in message
    assert "Add the missing" in message


def test_int32_ids_widened(ranking_scorer: Scorer, ranking_artifact: BuiltArtifact) -> None:
    scores = ranking_scorer.score(
        HISTORY_IDS.astype(np.int32), HISTORY_LENGTHS.astype(np.int32), CANDIDATE_IDS.astype(np.int32)
    )
    np.testing.assert_allclose(scores, expected_scores(ranking_artifact), rtol=1e-5, atol=1e-5)


def test_unsigned_ids_widened(ranking_scorer: Scorer, ranking_artifact: BuiltArtifact) -> None:
    scores = ranking_scorer.score(
        HISTORY_IDS.astype(np.uint16), HISTORY_LENGTHS.astype(np.uint8), CANDIDATE_IDS.astype(np.uint64)
    )
    np.testing.assert_allclose(scores, expected_scores(ranking_artifact), rtol=1e-5, atol=1e-5)


def test_uint64_out_of_range_rejected(ranking_scorer: Scorer) -> None:
    candidates = CANDIDATE_IDS.astype(np.uint64)
    candidates[0, 0] = np.iinfo(np.uint64).max
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, candidates)
    message = str(caught.value)
    assert "'candidate_ids'" in message
    assert "do not fit" in message
    assert "Remove or remap" in message


def test_float_ids_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, CANDIDATE_IDS.astype(np.float32))
    message = str(caught.value)
    assert "'candidate_ids'" in message
    assert "floating-point" in message
    assert "integer ids" in message
    assert "whole numbers stored as floats" in message
    assert "astype(np.int64)" in message


def test_float_lengths_called_lengths(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS.astype(np.float64), CANDIDATE_IDS)
    message = str(caught.value)
    assert "'history_lengths'" in message
    assert "integer lengths" in message
    assert "ids" not in message
    assert "If the lengths are whole numbers stored as floats" in message


def test_bool_lengths_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, np.array([True, True, False]), CANDIDATE_IDS)
    message = str(caught.value)
    assert "'history_lengths'" in message
    assert "bool" in message
    assert "integer lengths" in message
    assert "dtype=np.int64" in message
    assert "floats" not in message
    assert "ids" not in message


def test_string_ids_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, CANDIDATE_IDS.astype(str))
    message = str(caught.value)
    assert "'candidate_ids'" in message
    assert "string" in message
    assert "item keys" in message
    assert "astype(np.int64)" in message
    assert "floats" not in message


def test_object_ids_rejected(ranking_scorer: Scorer) -> None:
    candidates = np.array([["1", "2"], ["4", "6"], ["8", "10"]], dtype=object)
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, candidates)
    message = str(caught.value)
    assert "'candidate_ids'" in message
    assert "object" in message
    assert "contain None" in message
    assert "floats" not in message


def test_ragged_nested_list_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score([[3, 5], [7]], [2, 1], [[1], [2]])
    message = str(caught.value)
    assert "'history_ids'" in message
    assert "histories=" in message


def test_wrong_rank_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS[0], HISTORY_LENGTHS[:1], CANDIDATE_IDS[:1])
    message = str(caught.value)
    assert "'history_ids'" in message
    assert "rank 2" in message
    assert "np.newaxis" in message


def test_batch_size_mismatch_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, CANDIDATE_IDS[:2])
    message = str(caught.value)
    assert "'candidate_ids' has batch size 2" in message
    assert "'history_ids' has batch size 3" in message
    assert "same rows" in message


def test_lengths_above_seq_len_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, np.array([3, 5, 4]), CANDIDATE_IDS)
    message = str(caught.value)
    assert "'history_lengths'" in message
    assert "[0, 4]" in message
    assert "1 (value 5)" in message
    assert "fix the lengths" in message


def test_negative_lengths_rejected(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, np.array([3, -1, 4]), CANDIDATE_IDS)
    assert "'history_lengths'" in str(caught.value)
    assert "value -1" in str(caught.value)


def test_negative_candidate_id_rejected(ranking_scorer: Scorer) -> None:
    candidates = CANDIDATE_IDS.copy()
    candidates[1, 1] = -1
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, candidates)
    message = str(caught.value)
    assert "'candidate_ids'" in message
    assert "(1, 1) (value -1)" in message
    assert "Ids in 'candidate_ids' must be >= 0" in message
    assert "end of the embedding table" in message
    assert "Map unknown items" in message


def test_negative_history_id_rejected(ranking_scorer: Scorer) -> None:
    history = HISTORY_IDS.copy()
    history[0, 1] = -3
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(history, HISTORY_LENGTHS, CANDIDATE_IDS)
    assert "'history_ids'" in str(caught.value)
    assert "(0, 1) (value -3)" in str(caught.value)
    assert "Ids in real slots of 'history_ids' must be >= 0" in str(caught.value)


def test_id_at_vocab_size_rejected(ranking_scorer: Scorer) -> None:
    candidates = CANDIDATE_IDS.copy()
    candidates[2, 0] = VOCAB_SIZE
    with pytest.raises(InputError) as caught:
        ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, candidates)
    message = str(caught.value)
    assert "'candidate_ids'" in message
    assert f"vocab_size {VOCAB_SIZE}" in message
    assert "same id mapping" in message


def test_padded_slot_garbage_ignored(ranking_scorer: Scorer, ranking_artifact: BuiltArtifact) -> None:
    history = HISTORY_IDS.copy()
    history[0, 3] = -5
    history[1, 1:] = [VOCAB_SIZE + 100, 17, -1]
    scores = ranking_scorer.score(history, HISTORY_LENGTHS, CANDIDATE_IDS)
    np.testing.assert_allclose(scores, expected_scores(ranking_artifact), rtol=1e-5, atol=1e-5)
    assert history[1, 1] == VOCAB_SIZE + 100, "the caller's array must not be modified"


def test_extra_padding_columns_ignored(ranking_scorer: Scorer, ranking_artifact: BuiltArtifact) -> None:
    history = np.pad(HISTORY_IDS, ((0, 0), (0, 5)))
    scores = ranking_scorer.score(history, HISTORY_LENGTHS, CANDIDATE_IDS)
    np.testing.assert_allclose(scores, expected_scores(ranking_artifact), rtol=1e-5, atol=1e-5)


def test_padding_id_real_slot_warns(ranking_artifact: BuiltArtifact, caplog: pytest.LogCaptureFixture) -> None:
    scorer = Scorer.from_artifact(ranking_artifact.path, padding_id_policy="warn")
    candidates = CANDIDATE_IDS.copy()
    candidates[0, 1] = 0
    with caplog.at_level(logging.WARNING, logger="attn_runtime.validation"):
        for _ in range(10):
            scorer.score(HISTORY_IDS, HISTORY_LENGTHS, candidates)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2, "expected warnings for the 1st and 10th occurrence only"
    assert "'candidate_ids'" in warnings[0]
    assert "(0, 1) (value 0)" in warnings[0]
    assert "Seen in 1 request(s)" in warnings[0]
    assert "Seen in 10 request(s)" in warnings[1]


def test_padding_id_real_slot_raises(ranking_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(ranking_artifact.path, padding_id_policy="raise")
    history = HISTORY_IDS.copy()
    history[2, 2] = 0
    with pytest.raises(InputError) as caught:
        scorer.score(history, HISTORY_LENGTHS, CANDIDATE_IDS)
    message = str(caught.value)
    assert "'history_ids'" in message
    assert "(2, 2) (value 0)" in message
    assert "padding_id_policy='warn'" in message


def test_padding_id_policy_ignore_is_silent(ranking_artifact: BuiltArtifact, caplog: pytest.LogCaptureFixture) -> None:
    scorer = Scorer.from_artifact(ranking_artifact.path, padding_id_policy="ignore")
    candidates = CANDIDATE_IDS.copy()
    candidates[0, 0] = 0
    with caplog.at_level(logging.WARNING, logger="attn_runtime.validation"):
        scorer.score(HISTORY_IDS, HISTORY_LENGTHS, candidates)
    assert not [record for record in caplog.records if record.name == "attn_runtime.validation"]


def test_max_seq_len_cuts_padding(tmp_path: Path) -> None:
    built = build_ranking_artifact(tmp_path / "a", max_seq_len=4)
    scorer = Scorer.from_artifact(built.path, padding_id_policy="ignore")
    history = np.pad(HISTORY_IDS, ((0, 0), (0, 6)), constant_values=7)
    scores = scorer.score(history, HISTORY_LENGTHS, CANDIDATE_IDS)
    np.testing.assert_allclose(scores, expected_scores(built), rtol=1e-5, atol=1e-5)


def test_max_seq_len_exceeded_rejected(tmp_path: Path) -> None:
    built = build_ranking_artifact(tmp_path / "a", max_seq_len=3)
    scorer = Scorer.from_artifact(built.path)
    with pytest.raises(InputError) as caught:
        scorer.score(HISTORY_IDS, HISTORY_LENGTHS, CANDIDATE_IDS)
    message = str(caught.value)
    assert "'history_ids'" in message
    assert "max_seq_len=3" in message
    assert "most recent 3 items" in message


def test_empty_history_scores_zero(ranking_scorer: Scorer) -> None:
    scores = ranking_scorer.score(HISTORY_IDS, np.zeros(3, dtype=np.int64), CANDIDATE_IDS)
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, np.zeros((3, 2), dtype=np.float32))


def test_zero_width_history_scores_zero(ranking_scorer: Scorer) -> None:
    scores = ranking_scorer.score(np.zeros((3, 0), dtype=np.int64), np.zeros(3, dtype=np.int64), CANDIDATE_IDS)
    assert scores.shape == (3, 2)
    np.testing.assert_array_equal(scores, np.zeros((3, 2), dtype=np.float32))


def test_zero_candidates_returns_empty(ranking_scorer: Scorer) -> None:
    scores = ranking_scorer.score(HISTORY_IDS, HISTORY_LENGTHS, np.zeros((3, 0), dtype=np.int64))
    assert scores.shape == (3, 0)
    assert scores.dtype == np.float32


def test_zero_batch_returns_empty(ranking_scorer: Scorer) -> None:
    scores = ranking_scorer.score(
        np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros((0, 5), dtype=np.int64)
    )
    assert scores.shape == (0, 5)
    assert scores.dtype == np.float32


def test_non_contiguous_made_contiguous(ranking_scorer: Scorer, ranking_artifact: BuiltArtifact) -> None:
    history = np.asfortranarray(HISTORY_IDS)
    wide_candidates = np.repeat(CANDIDATE_IDS, 2, axis=1)[:, ::2]  # strided view [3, 2]
    assert not wide_candidates.flags.c_contiguous

    validator = FeedValidator(ranking_scorer.manifest)
    validated = validator.validate(
        {"history_ids": history, "history_lengths": HISTORY_LENGTHS, "candidate_ids": wide_candidates}
    )
    for name, array in validated.feeds.items():
        assert array.flags.c_contiguous, name

    scores = ranking_scorer.score(history, HISTORY_LENGTHS, wide_candidates)
    np.testing.assert_allclose(scores, expected_scores(ranking_artifact), rtol=1e-5, atol=1e-5)


def test_non_finite_output_rejected(tmp_path: Path) -> None:
    table = make_table()
    table[6] = np.nan
    built = build_ranking_artifact(tmp_path / "a", table=table)
    scorer = Scorer.from_artifact(built.path)
    with pytest.raises(ScoringError) as caught:
        scorer.score(HISTORY_IDS, HISTORY_LENGTHS, CANDIDATE_IDS)
    message = str(caught.value)
    assert "'scores'" in message
    assert "(1, 1)" in message
    assert "non-finite" in message
    assert "fp32" in message


def test_static_dim_mismatch_rejected(tmp_path: Path) -> None:
    model, _ = build_custom_model()
    write_artifact(
        tmp_path / "a",
        {"fp32": VariantPlan(model=model)},
        default_variant="fp32",
        inputs=[
            {"name": "item_ids", "dtype": "int64", "shape": ["batch", 3]},
            {"name": "weights", "dtype": "float32", "shape": ["batch", 3]},
        ],
        outputs=[{"name": "total", "dtype": "float32", "shape": ["batch"]}],
        id_inputs={"item_ids": None},
        vocab_size=None,
    )
    scorer = Scorer.from_artifact(tmp_path / "a")
    with pytest.raises(InputError) as caught:
        scorer.run({"item_ids": np.ones((2, 4), dtype=np.int64), "weights": np.ones((2, 4), dtype=np.float32)})
    message = str(caught.value)
    assert "'item_ids'" in message
    assert "size 3 on axis 1" in message
    assert "Pad or slice" in message


def test_named_axis_mismatch_rejected(custom_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(custom_artifact.path)
    with pytest.raises(InputError) as caught:
        scorer.run({"item_ids": np.ones((2, 4), dtype=np.int64), "weights": np.ones((2, 3), dtype=np.float32)})
    message = str(caught.value)
    assert "'weights' has items size 3" in message
    assert "'item_ids' has items size 4" in message


def test_float64_weights_rejected(custom_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(custom_artifact.path)
    with pytest.raises(InputError) as caught:
        scorer.run({"item_ids": np.ones((2, 3), dtype=np.int64), "weights": np.ones((2, 3))})
    message = str(caught.value)
    assert "'weights'" in message
    assert "float64" in message
    assert "astype(np.float32)" in message


def test_negative_id_rejected_without_vocab(custom_artifact: BuiltArtifact) -> None:
    scorer = Scorer.from_artifact(custom_artifact.path)
    with pytest.raises(InputError) as caught:
        scorer.run({"item_ids": np.array([[1, -2]]), "weights": np.ones((1, 2), dtype=np.float32)})
    assert "'item_ids'" in str(caught.value)
    assert "negative" in str(caught.value)


def test_feeds_must_be_mapping(ranking_scorer: Scorer) -> None:
    with pytest.raises(InputError) as caught:
        ranking_scorer.run([HISTORY_IDS, HISTORY_LENGTHS, CANDIDATE_IDS])
    assert "mapping from input name" in str(caught.value)
    assert "history_ids" in str(caught.value)
