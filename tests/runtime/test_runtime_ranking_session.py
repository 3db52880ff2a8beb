"""top_k selection rules and SessionConfig settings."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from attn_runtime import InputError, SessionConfig, top_k


def test_top_k_sorted_descending() -> None:
    scores = np.array([[0.1, 0.9, 0.5, -2.0]], dtype=np.float32)
    indices, values = top_k(scores, 3)
    np.testing.assert_array_equal(indices, [[1, 2, 0]])
    np.testing.assert_array_equal(values, np.array([[0.9, 0.5, 0.1]], dtype=np.float32))
    assert indices.dtype == np.int64
    assert values.dtype == np.float32


def test_top_k_clipped_to_candidates() -> None:
    indices, values = top_k(np.array([[1.0, 3.0]], dtype=np.float32), 10)
    np.testing.assert_array_equal(indices, [[1, 0]])
    assert values.shape == (1, 2)


def test_top_k_zero_returns_empty() -> None:
    indices, values = top_k(np.ones((2, 4), dtype=np.float32), 0)
    assert indices.shape == (2, 0)
    assert values.shape == (2, 0)


def test_top_k_ties_keep_candidate_order() -> None:
    indices, _ = top_k(np.array([[2.0, 5.0, 2.0, 5.0, 2.0]], dtype=np.float32), 4)
    np.testing.assert_array_equal(indices, [[1, 3, 0, 2]])


def test_top_k_single_row_and_empty_candidates() -> None:
    indices, values = top_k(np.array([0.3, 0.7], dtype=np.float32), 1)
    np.testing.assert_array_equal(indices, [1])
    indices, values = top_k(np.zeros((3, 0), dtype=np.float32), 5)
    assert indices.shape == (3, 0)


def test_top_k_ragged_lists() -> None:
    indices, values = top_k([np.array([1.0, 2.0, 3.0], dtype=np.float32), np.zeros(0, dtype=np.float32)], 2)
    np.testing.assert_array_equal(indices[0], [2, 1])
    assert indices[1].shape == (0,)
    np.testing.assert_array_equal(values[0], np.array([3.0, 2.0], dtype=np.float32))


@pytest.mark.parametrize("k", [-1, 1.5, True, "3"])
def test_top_k_invalid_k_rejected(k: object) -> None:
    with pytest.raises(InputError) as caught:
        top_k(np.ones((1, 3), dtype=np.float32), k)  # type: ignore[arg-type]
    assert "k must be an int >= 0" in str(caught.value)


def test_top_k_nan_rejected() -> None:
    with pytest.raises(InputError) as caught:
        top_k(np.array([[1.0, np.nan]], dtype=np.float32), 1)
    assert "NaN" in str(caught.value)


def test_top_k_integer_scores_rejected() -> None:
    with pytest.raises(InputError) as caught:
        top_k(np.array([[1, 2]]), 1)
    assert "float array" in str(caught.value)


def test_session_config_defaults() -> None:
    config = SessionConfig()
    options = config.to_session_options("fp32")
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_session_config_auto_optimization_level() -> None:
    config = SessionConfig()
    assert config.resolve_optimization_level("fp32") == "all"
    assert config.resolve_optimization_level("int8") == "all"
    assert config.resolve_optimization_level("optimized") == "basic"
    options = config.to_session_options("optimized")
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


def test_session_config_forced_level_and_spinning() -> None:
    config = SessionConfig(graph_optimization_level="disable", allow_spinning=True, intra_op_threads=0)
    options = config.to_session_options("optimized")
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.intra_op_num_threads == 0


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"intra_op_threads": -1}, "intra_op_threads"),
        ({"inter_op_threads": 1.5}, "inter_op_threads"),
        ({"graph_optimization_level": "max"}, "graph_optimization_level"),
        ({"execution_mode": "async"}, "execution_mode"),
    ],
)
def test_session_config_invalid_rejected(changes: dict, field: str) -> None:
    with pytest.raises(ValueError) as caught:
        SessionConfig(**changes)
    assert f"SessionConfig.{field}" in str(caught.value)
