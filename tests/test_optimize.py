"""Tests of `attn-export optimize`: the attention rewrites, the optimized variant, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch

from attn_export.artifact import read_manifest
from attn_export.optimize import MODEL_FILE, PARITY_FILE, optimize_artifact, optimize_onnx_file
from attn_export.optimize.empty_history_gate import gate_values_by_history_presence
from attn_export.optimize.gemm_flattening import flatten_matmul_add_to_gemm
from attn_export.optimize.generic_passes import run_onnxscript_optimizer
from attn_export.optimize.head_major_projections import project_into_head_major_layout
from attn_export.optimize.mask_fill_to_bias import masked_fill_to_bias
from attn_export.optimize.mask_to_values import move_mask_to_values
from attn_export.optimize.output_projection_folding import fold_projection_into_concat_matmul
from attn_export.optimize.position_table import tabulate_sinusoidal_positions
from attn_export.optimize.query_key_folding import fold_query_key_product
from attn_export.optimize.scale_folding import fold_attention_scale
from attn_export.pipeline import export_ranker
from attn_export.sources import DataSource
from attn_models import RankerConfig, TargetAttentionRanker

SMALL = dict(embed_dim=16, mlp_hidden=(16,), din_hidden=(16, 8))
KINDS = {
    "multihead": dict(attention="multihead"),
    "projected": dict(attention="projected"),
    "dot": dict(attention="dot"),
    "din": dict(attention="din"),
    "self_attention": dict(attention="multihead", self_attention_blocks=1),
}
MAX_REQUESTS = 32


@pytest.fixture(scope="module")
def synthetic() -> DataSource:
    return DataSource("synthetic")


@pytest.fixture(scope="module")
def vocab_size(synthetic: DataSource) -> int:
    return synthetic.load().vocab_size


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synthetic, vocab_size):
    """Export each attention kind once per module; return a function kind -> artifact path."""
    cache: dict[str, Path] = {}

    def make(kind: str, **overrides) -> Path:
        key = kind + json.dumps(overrides, sort_keys=True)
        if key not in cache:
            torch.manual_seed(0)
            config = RankerConfig(vocab_size=vocab_size, **{**SMALL, **KINDS[kind], **overrides})
            path = tmp_path_factory.mktemp(kind) / "artifact"
            export_ranker(TargetAttentionRanker(config).eval(), path, synthetic, max_requests=MAX_REQUESTS)
            cache[key] = path
        return cache[key]

    return make


def _requests(vocab_size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Id-level requests including empty histories, padding and one candidate."""
    rng = np.random.default_rng(seed)
    feeds = []
    for lengths, seq_len, num_candidates in [([0, 5, 9], 9, 7), ([1], 1, 1), ([30, 0, 12, 30], 30, 40)]:
        lengths_arr = np.asarray(lengths, dtype=np.int64)
        ids = rng.integers(1, vocab_size, size=(len(lengths), seq_len)).astype(np.int64)
        ids[np.arange(seq_len)[None, :] >= lengths_arr[:, None]] = 0
        candidates = rng.integers(1, vocab_size, size=(len(lengths), num_candidates)).astype(np.int64)
        feeds.append({"history_ids": ids, "history_lengths": lengths_arr, "candidate_ids": candidates})
    return feeds


def _rewrite_and_compare(artifact: Path, rewrite, tmp_path: Path, vocab_size: int) -> tuple[int, float]:
    """Apply one rewrite to the exported graph; return (times applied, max abs diff of scores)."""
    model = ir.load(artifact / "model.onnx")
    run_onnxscript_optimizer(model)
    applied = rewrite(model.graph)
    run_onnxscript_optimizer(model)
    rewritten = tmp_path / "rewritten.onnx"
    ir.save(model, rewritten)
    reference = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    candidate = ort.InferenceSession(str(rewritten), providers=["CPUExecutionProvider"])
    diff = 0.0
    for feeds in _requests(vocab_size):
        expected, got = reference.run(["scores"], feeds)[0], candidate.run(["scores"], feeds)[0]
        assert np.isfinite(got).all()
        diff = max(diff, float(np.abs(expected - got).max()))
    return applied, diff


@pytest.mark.parametrize("kind", ["multihead", "dot", "self_attention"])
def test_scale_folding_parity(exported, kind, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported(kind), fold_attention_scale, tmp_path, vocab_size)
    assert applied >= 1
    assert diff <= 1e-5


def test_query_key_folding_parity(exported, tmp_path, vocab_size):
    def both(graph):
        fold_attention_scale(graph)
        return fold_query_key_product(graph)

    applied, diff = _rewrite_and_compare(exported("projected"), both, tmp_path, vocab_size)
    assert applied == 1
    assert diff <= 1e-5


def test_query_key_folding_skips_low_rank(exported, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported("projected", attention_dim=8), fold_query_key_product,
                                         tmp_path, vocab_size)
    assert applied == 0
    assert diff == 0.0


def test_query_key_folding_skips_multihead(exported, tmp_path, vocab_size):
    applied, _ = _rewrite_and_compare(exported("multihead"), fold_query_key_product, tmp_path, vocab_size)
    assert applied == 0


@pytest.mark.parametrize("kind", ["multihead", "dot", "self_attention"])
def test_masked_fill_to_bias_parity(exported, kind, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported(kind), masked_fill_to_bias, tmp_path, vocab_size)
    assert applied >= 1
    assert diff <= 1e-6


@pytest.mark.parametrize("kind", ["multihead", "din", "self_attention"])
def test_mask_to_values_parity(exported, kind, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported(kind), move_mask_to_values, tmp_path, vocab_size)
    assert applied >= 1
    assert diff <= 1e-6


def test_bias_then_mask_keeps_empty_history_zero(exported, tmp_path, vocab_size):
    """Both mask rewrites together: an empty history still scores like the fp32 graph."""

    def both(graph):
        return masked_fill_to_bias(graph) + move_mask_to_values(graph)

    applied, diff = _rewrite_and_compare(exported("multihead"), both, tmp_path, vocab_size)
    assert applied == 2
    assert diff <= 1e-6


@pytest.mark.parametrize("kind", ["multihead", "din"])
def test_position_table_parity(exported, kind, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported(kind), tabulate_sinusoidal_positions,
                                         tmp_path, vocab_size)
    assert applied == 1
    assert diff <= 1e-5


def test_position_table_odd_width(exported, tmp_path, vocab_size):
    """An odd embed_dim slices the table's last column off after the Concat."""
    applied, diff = _rewrite_and_compare(exported("multihead", embed_dim=15, num_heads=3),
                                         tabulate_sinusoidal_positions, tmp_path, vocab_size)
    assert applied == 1
    assert diff <= 1e-5


def test_position_table_lengths_above_seq_len(exported, tmp_path):
    """Positions past seq_len still get their own encoding: the table grows with max(position)."""
    artifact = exported("multihead")
    model = ir.load(artifact / "model.onnx")
    run_onnxscript_optimizer(model)
    assert tabulate_sinusoidal_positions(model.graph) == 1
    run_onnxscript_optimizer(model)
    rewritten = tmp_path / "rewritten.onnx"
    ir.save(model, rewritten)
    reference = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    candidate = ort.InferenceSession(str(rewritten), providers=["CPUExecutionProvider"])
    feeds = {
        "history_ids": np.arange(1, 13, dtype=np.int64).reshape(2, 6),
        "history_lengths": np.asarray([40, 3], dtype=np.int64),
        "candidate_ids": np.asarray([[7, 8, 9], [1, 2, 3]], dtype=np.int64),
    }
    expected = reference.run(["scores"], feeds)[0]
    got = candidate.run(["scores"], feeds)[0]
    assert np.abs(expected - got).max() <= 1e-5


def test_position_table_skips_learned(exported, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported("multihead", positional="learned", max_seq_len=64), tabulate_sinusoidal_positions,
                                         tmp_path, vocab_size)
    assert applied == 0
    assert diff == 0.0


@pytest.mark.parametrize("kind", ["multihead", "projected", "self_attention"])
def test_history_gate_parity(exported, kind, tmp_path, vocab_size):
    """The gate replaces the per-slot value mask; empty histories in the requests must still match."""

    def chain(graph):
        masked_fill_to_bias(graph)
        move_mask_to_values(graph)
        return gate_values_by_history_presence(graph)

    applied, diff = _rewrite_and_compare(exported(kind), chain, tmp_path, vocab_size)
    assert applied >= 1
    assert diff <= 1e-5


def test_history_gate_without_bias_rewrite(exported, tmp_path, vocab_size):
    """The exported Where fill is recognized too, not only the additive bias."""

    def chain(graph):
        move_mask_to_values(graph)
        return gate_values_by_history_presence(graph)

    applied, diff = _rewrite_and_compare(exported("multihead"), chain, tmp_path, vocab_size)
    assert applied == 1
    assert diff <= 1e-5


def test_history_gate_skips_din(exported, tmp_path, vocab_size):
    """DIN multiplies unnormalized logits by the mask, so the per-slot mask must stay."""

    def chain(graph):
        move_mask_to_values(graph)
        return gate_values_by_history_presence(graph)

    applied, _ = _rewrite_and_compare(exported("din"), chain, tmp_path, vocab_size)
    assert applied == 0


@pytest.mark.parametrize("kind", ["multihead", "self_attention"])
def test_head_major_projections_parity(exported, kind, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported(kind), project_into_head_major_layout, tmp_path, vocab_size)
    assert applied >= 3  # queries, keys and values of the target attention
    assert diff <= 1e-5


def test_head_major_projections_skip_single_head(exported, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported("projected"), project_into_head_major_layout, tmp_path, vocab_size)
    assert applied == 0
    assert diff == 0.0


def test_output_projection_folding_parity(exported, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported("multihead"), fold_projection_into_concat_matmul,
                                         tmp_path, vocab_size)
    assert applied == 1
    assert diff <= 1e-5


def test_output_projection_folding_removes_concat(exported):
    model = ir.load(exported("multihead") / "model.onnx")
    run_onnxscript_optimizer(model)
    before = [node.op_type for node in model.graph]
    fold_projection_into_concat_matmul(model.graph)
    run_onnxscript_optimizer(model)
    after = [node.op_type for node in model.graph]
    assert after.count("Concat") == before.count("Concat") - 1  # the head's [u; e_c]
    assert after.count("MatMul") == before.count("MatMul")  # W_o W1_u and W1_e replace W_o and W1


def test_output_projection_folding_skips_dot(exported, tmp_path, vocab_size):
    """Plain dot attention has no projection before the head's Concat, so nothing is folded."""
    applied, diff = _rewrite_and_compare(exported("dot"), fold_projection_into_concat_matmul, tmp_path, vocab_size)
    assert applied == 0
    assert diff == 0.0


@pytest.mark.parametrize("kind", ["multihead", "dot", "din"])
def test_gemm_flattening_parity(exported, kind, tmp_path, vocab_size):
    applied, diff = _rewrite_and_compare(exported(kind), flatten_matmul_add_to_gemm, tmp_path, vocab_size)
    assert applied >= 2  # SMALL's MLP head has a hidden layer and the output layer
    assert diff <= 1e-5


def test_head_rewrites_together_keep_empty_history(exported, tmp_path, vocab_size):
    """Every new rewrite after the mask rewrites, as the pipeline runs them."""

    def chain(graph):
        applied = masked_fill_to_bias(graph) + move_mask_to_values(graph)
        applied += gate_values_by_history_presence(graph)
        applied += project_into_head_major_layout(graph)
        applied += fold_projection_into_concat_matmul(graph)
        return applied + flatten_matmul_add_to_gemm(graph)

    applied, diff = _rewrite_and_compare(exported("multihead"), chain, tmp_path, vocab_size)
    assert applied == 2 + 1 + 3 + 1 + 3
    assert diff <= 1e-5


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_optimized_variant_passes(exported, kind, tmp_path):
    artifact = exported(kind)
    result = optimize_artifact(artifact, max_requests=MAX_REQUESTS)
    assert result.against_pytorch.passed, result.failures
    assert result.against_fp32_onnx.passed, result.failures
    assert result.against_pytorch.max_abs_diff <= 1e-4
    assert any(r.case == "heldout" for r in result.against_fp32_onnx.outputs)

    manifest = read_manifest(artifact)
    variant = manifest["variants"]["optimized"]
    assert variant["passed"] is True
    assert variant["model_file"] == MODEL_FILE
    assert manifest["default_variant"] == "optimized"
    assert variant["gate"]["optimization"]["op_counts_after"]
    parity = json.loads((artifact / PARITY_FILE).read_text())
    assert parity["passed"] is True
    assert parity["against_fp32_onnx"]["outputs"][0]["atol"] == 1e-5
    plain = ort.InferenceSession(str(artifact / MODEL_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in plain.get_inputs()] == ["history_ids", "history_lengths", "candidate_ids"]


def test_op_counts_reported(exported, tmp_path):
    report = optimize_onnx_file(exported("multihead") / "model.onnx", tmp_path / "out.onnx")
    assert [s["stage"] for s in report["stages"]] == [
        "exported", "onnxscript_optimizer", "attention_rewrites", "onnxruntime_offline"]
    for stage in report["stages"]:
        assert stage["nodes"] == sum(stage["op_counts"].values())
    assert report["attention_rewrites"] == {
        "fold_attention_scale": 1, "fold_query_key_product": 0, "masked_fill_to_bias": 1, "move_mask_to_values": 1,
        "gate_values_by_history_presence": 1, "project_into_head_major_layout": 3,
        "fold_projection_into_concat_matmul": 1, "flatten_matmul_add_to_gemm": 3,
        "tabulate_sinusoidal_positions": 1}
    # The scale Mul, the weights-times-mask Mul and the angle Mul (now a MatMul) are gone.
    # The values-times-presence Mul is new.
    assert report["op_counts_after"]["Mul"] == report["op_counts_before"]["Mul"] - 2
    assert report["op_counts_after"]["Softmax"] == 1
    assert report["embedding_gathers"] == {"item_embedding.weight": 2}
    assert report["bytes_after"] > 0


def test_ort_fusions_parity(exported, tmp_path, vocab_size):
    """With onnxscript's ORT fusions the target attention becomes MultiHeadAttention; scores hold."""
    artifact = exported("multihead")
    target = tmp_path / "fused.onnx"
    report = optimize_onnx_file(artifact / "model.onnx", target, ort_fusions=True)
    assert report["ort_fusions"].get("sdpa_via_mha") == 1
    assert report["op_counts_after"].get("com.microsoft.MultiHeadAttention") == 1
    reference = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    fused = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    for feeds in _requests(vocab_size):
        np.testing.assert_allclose(fused.run(["scores"], feeds)[0], reference.run(["scores"], feeds)[0], atol=1e-5)


def test_cli_optimize(exported):
    from typer.testing import CliRunner

    from attn_export.cli import app

    artifact = exported("dot")
    result = CliRunner().invoke(app, ["optimize", str(artifact), "--max-requests", str(MAX_REQUESTS)])
    assert result.exit_code == 0, result.output
    assert "Op counts" in result.output
    assert "fold_attention_scale" in result.output
    assert "parity passed" in result.output
    assert "default variant: optimized" in result.output


def test_cli_optimize_json(exported):
    from typer.testing import CliRunner

    from attn_export.cli import app

    result = CliRunner().invoke(app, ["optimize", str(exported("multihead")), "--json",
                                      "--max-requests", str(MAX_REQUESTS)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["passed"] is True
    assert document["optimization"]["nodes_before"] > 0


def test_cli_optimize_rejects_non_artifact(tmp_path):
    from typer.testing import CliRunner

    from attn_export.cli import app

    result = CliRunner().invoke(app, ["optimize", str(tmp_path)])
    assert result.exit_code == 6
    assert "not an attn-export artifact" in result.output


def test_runtime_loads_optimized_variant(exported):
    attn_runtime = pytest.importorskip("attn_runtime")
    artifact = exported("projected")
    optimize_artifact(artifact, max_requests=MAX_REQUESTS)
    optimized = attn_runtime.Scorer.from_artifact(artifact, variant="optimized")
    fp32 = attn_runtime.Scorer.from_artifact(artifact, variant="fp32")
    feeds = _requests(read_manifest(artifact)["vocab_size"])[2]
    got = optimized.score(feeds["history_ids"], feeds["history_lengths"], feeds["candidate_ids"])
    expected = fp32.score(feeds["history_ids"], feeds["history_lengths"], feeds["candidate_ids"])
    np.testing.assert_allclose(got, expected, atol=1e-5)


# Runs optimize_artifact in a child process that SIGKILLs itself once the parity checks start,
# which is after the optimized graph has been written to the scratch directory.
_KILLED_OPTIMIZE = """
import os, signal, sys
from attn_export.optimize import optimize_artifact

def kill_at_parity(step):
    if step.startswith("parity"):
        os.kill(os.getpid(), signal.SIGKILL)

optimize_artifact(sys.argv[1], max_requests=8, progress=kill_at_parity)
"""


def test_killed_optimize_leaves_no_scratch(exported, tmp_path):
    folder = tmp_path / "artifacts"
    artifact = folder / "artifact"
    shutil.copytree(exported("dot"), artifact)
    manifest_before = read_manifest(artifact)
    system_temp = tmp_path / "system_temp"
    system_temp.mkdir()

    result = subprocess.run([sys.executable, "-c", _KILLED_OPTIMIZE, str(artifact)],
                            env={**os.environ, "TMPDIR": str(system_temp)}, capture_output=True, text=True,
                            timeout=600)

    assert result.returncode == -signal.SIGKILL, result.stderr
    assert sorted(path.name for path in folder.iterdir()) == ["artifact"]
    leftovers = sorted(system_temp.glob("attn-optimize-*"))
    assert len(leftovers) == 1, leftovers
    assert (leftovers[0] / MODEL_FILE).is_file()
    assert read_manifest(artifact) == manifest_before
