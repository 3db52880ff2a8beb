"""Quantization: gate metrics of every variant, table outliers, calibration traps, exclusion, runtime, CLI.

A ranker is trained briefly on MovieLens (ATTN_MOVIELENS_DIR) or, without it, on the embedded
synthetic data, because accuracy gates mean little on random weights.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from attn_export.artifact import read_manifest
from attn_export.errors import QuantizeError
from attn_export.gate import GateThresholds
from attn_export.parity import compare_rankings
from attn_export.pipeline import export_ranker
from attn_export.quantize import (
    AUTO_SCHEMES,
    QuantizeOptions,
    StaticInt8,
    VariantOutcome,
    attention_weight_tensors,
    calibrate,
    calibration_feeds,
    compress_tables,
    prepare_for_quantization,
    quantize_artifact,
    quantize_rows_int8,
)
from attn_export.quantize.run import DEFAULT_MARGIN, choose_default
from attn_export.sources import DataSource, requests_for_artifact
from attn_models import RankerConfig, TargetAttentionRanker

THRESHOLDS = GateThresholds()


def _data_source() -> DataSource:
    path = os.environ.get("ATTN_MOVIELENS_DIR")
    return DataSource("movielens", path=path) if path else DataSource("synthetic")


@pytest.fixture(scope="module")
def trained_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained ranker exported to an fp32 artifact (read-only: tests copy it)."""
    from attn_models.train import TrainConfig, train_ranker

    source = _data_source()
    dataset = source.load()
    result = train_ranker(dataset, RankerConfig(vocab_size=dataset.vocab_size),
                          TrainConfig(epochs=1, max_train_examples=20000, threads=2, eval_max_users=64))
    target = tmp_path_factory.mktemp("trained") / "artifact"
    export_ranker(result.model, target, source, force=True, max_requests=64)
    return target


@pytest.fixture(scope="module")
def quantized_artifact(trained_artifact: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every --auto scheme built, gated and recorded, timed in-process to keep the test fast."""
    target = tmp_path_factory.mktemp("quantized") / "artifact"
    shutil.copytree(trained_artifact, target)
    options = QuantizeOptions(schemes=AUTO_SCHEMES, auto=True, gate_users=256, calibration_users=64,
                              bench_runs=50, timer="inprocess")
    summary = quantize_artifact(target, options)
    return target, summary


@pytest.fixture(scope="module")
def prepared(trained_artifact: Path, tmp_path_factory: pytest.TempPathFactory):
    """The pre-processed fp32 graph with the attention weights exposed as a second output."""
    workdir = tmp_path_factory.mktemp("prepared")
    path = prepare_for_quantization(trained_artifact / "model.onnx", workdir / "prepared.onnx")
    model = onnx.load(str(path))
    weights = attention_weight_tensors(model)
    assert len(weights) == 1
    model.graph.output.append(helper.make_tensor_value_info(weights[0], onnx.TensorProto.FLOAT, None))
    exposed = workdir / "exposed.onnx"
    onnx.save_model(model, str(exposed))
    manifest = read_manifest(trained_artifact)
    feeds = calibration_feeds(requests_for_artifact(manifest, split="validation", max_users=64))
    return exposed, feeds, workdir


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _flat_history(seq_len: int) -> dict[str, np.ndarray]:
    """One user who watched the same item `seq_len` times: every attention weight is 1/seq_len."""
    return {"history_ids": np.full((1, seq_len), 7, dtype=np.int64),
            "history_lengths": np.array([seq_len], dtype=np.int64),
            "candidate_ids": np.arange(1, 11, dtype=np.int64)[None, :]}


# --- every variant against fp32 and PyTorch -----------------------------------------------------


# Dynamic int8 takes activation ranges per call over the whole batch, so a row's scores depend
# on the other rows: these variants pass the ranking gate but must fail the contract check.
BATCH_DEPENDENT = {"int8_dynamic", "int8_dynamic_rows"}


def test_every_variant_passes_ranking_gate(quantized_artifact):
    _, summary = quantized_artifact
    assert [v.name for v in summary.variants] == list(AUTO_SCHEMES)
    for variant in summary.variants:
        metrics = variant.gate.to_dict()["metrics"]
        if variant.name in BATCH_DEPENDENT:
            assert not variant.passed, variant.name
            assert any("rows_independent" in f for f in variant.gate.failures), variant.gate.failures
        else:
            assert variant.passed, (variant.name, variant.gate.failures)
        assert metrics["auc_drop"] <= THRESHOLDS.max_auc_drop, variant.name
        assert metrics["mean_top_k_overlap"] >= THRESHOLDS.min_top_k_overlap, variant.name
        assert metrics["mean_kendall_tau"] >= THRESHOLDS.min_kendall_tau, variant.name


def test_every_variant_matches_pytorch(quantized_artifact):
    _, summary = quantized_artifact
    for variant in summary.variants:
        record = variant.gate.pytorch_record
        assert record is not None
        assert record.auc_drop <= THRESHOLDS.max_auc_drop, variant.name
        assert record.mean_top_k_overlap >= THRESHOLDS.min_top_k_overlap, variant.name
        assert record.mean_kendall_tau >= THRESHOLDS.min_kendall_tau, variant.name


def test_manifest_records_gate_and_files(quantized_artifact):
    path, summary = quantized_artifact
    manifest = read_manifest(path)
    for variant in summary.variants:
        entry = manifest["variants"][variant.name]
        assert entry["passed"] is (variant.name not in BATCH_DEPENDENT)
        assert entry["gate"]["thresholds"] == THRESHOLDS.to_dict()
        assert entry["gate"]["p50_ms"] > 0
        assert (path / entry["model_file"]).is_file()
        report = json.loads((path / f"parity_{variant.name}.json").read_text())
        assert report["passed"] is (variant.name not in BATCH_DEPENDENT)
        assert f"parity_{variant.name}.json" in manifest["files"]
    static = manifest["variants"]["int8_static"]["gate"]["excluded_nodes"]
    assert {e["node"] for e in static} >= {"node_softmax", "node_masked_fill"}
    assert all(e["reason"] for e in static)


def test_auto_default_is_fastest_passing(quantized_artifact):
    path, summary = quantized_artifact
    manifest = read_manifest(path)
    if summary.default_variant is None:
        assert manifest["default_variant"] == "fp32"
    else:
        assert manifest["default_variant"] == summary.default_variant
        fastest = min(v.p50_ms for v in summary.variants if v.passed)
        assert manifest["variants"][summary.default_variant]["gate"]["p50_ms"] == fastest


def test_runtime_loads_every_variant(quantized_artifact):
    from attn_runtime import Scorer

    path, summary = quantized_artifact
    requests = requests_for_artifact(read_manifest(path), max_users=32)
    feeds = requests.model_inputs()
    reference = Scorer.from_artifact(path, variant="fp32").run(feeds)["scores"]
    for variant in summary.variants:
        scorer = Scorer.from_artifact(path, variant=variant.name, allow_failed=variant.name in BATCH_DEPENDENT)
        assert scorer.variant == variant.name
        scores = scorer.run(feeds)["scores"]
        record = compare_rankings(variant.name, reference, scores, requests.labels)
        assert scores.shape == reference.shape
        assert record.mean_top_k_overlap >= THRESHOLDS.min_top_k_overlap, variant.name


# --- embedding tables ---------------------------------------------------------------------------


def test_row_int8_keeps_padding_row_zero():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 8)).astype(np.float32)
    table[0] = 0.0
    quantized, scales = quantize_rows_int8(table)
    restored = quantized.astype(np.float32) * scales
    assert quantized.dtype == np.int8
    assert scales.shape == (50, 1)
    assert np.all(restored[0] == 0.0)
    assert np.abs(restored[1:] - table[1:]).max() <= scales[1:].max() / 2 + 1e-7


def _outlier_ranker_artifact(tmp_path: Path) -> Path:
    """A ranker whose item 5 embedding is scaled x100, exported without a data source."""
    import torch

    torch.manual_seed(0)
    model = TargetAttentionRanker(RankerConfig(vocab_size=500, embed_dim=16))
    with torch.no_grad():
        model.item_embedding.weight[5] *= 100.0
    export_ranker(model, tmp_path / "outlier", data=None, force=True)
    return tmp_path / "outlier"


def test_outlier_row_per_row_vs_per_table(tmp_path: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    artifact = _outlier_ranker_artifact(tmp_path)
    fp32 = artifact / "model.onnx"
    per_row = tmp_path / "per_row.onnx"
    per_table = tmp_path / "per_table.onnx"
    compress_tables(fp32, per_row, "int8_rows")
    # onnxruntime's own Gather quantization: one scale for the whole table.
    quantize_dynamic(str(fp32), str(per_table), op_types_to_quantize=["Gather"], weight_type=QuantType.QInt8)

    rng = np.random.default_rng(1)
    ids = rng.integers(6, 500, size=(16, 20)).astype(np.int64)  # never the outlier item 5
    feeds = {"history_ids": ids, "history_lengths": np.full(16, 20, dtype=np.int64),
             "candidate_ids": rng.integers(6, 500, size=(16, 30)).astype(np.int64)}
    reference = _run(fp32, feeds)[0]
    row_error = np.abs(_run(per_row, feeds)[0] - reference).max()
    table_error = np.abs(_run(per_table, feeds)[0] - reference).max()
    row_record = compare_rankings("per_row", reference, _run(per_row, feeds)[0])
    table_record = compare_rankings("per_table", reference, _run(per_table, feeds)[0])
    assert row_error < 0.01
    assert table_error > 10 * row_error
    assert row_record.mean_kendall_tau > 0.95
    assert table_record.mean_kendall_tau < row_record.mean_kendall_tau


def test_table_dominated_size_ratio(tmp_path: Path):
    model = TargetAttentionRanker(RankerConfig(vocab_size=50_000, embed_dim=64))
    export_ranker(model, tmp_path / "big", data=None, force=True)
    fp32 = tmp_path / "big" / "model.onnx"
    compress_tables(fp32, tmp_path / "rows.onnx", "int8_rows")
    compress_tables(fp32, tmp_path / "fp16.onnx", "fp16")
    row_ratio = (tmp_path / "rows.onnx").stat().st_size / fp32.stat().st_size
    fp16_ratio = (tmp_path / "fp16.onnx").stat().st_size / fp32.stat().st_size
    assert 0.25 <= row_ratio < 0.30
    assert 0.49 <= fp16_ratio < 0.52
    feeds = _flat_history(12)
    assert np.abs(_run(tmp_path / "rows.onnx", feeds)[0] - _run(fp32, feeds)[0]).max() < 0.05


# --- calibration traps --------------------------------------------------------------------------


def test_mask_fill_range_rejected(prepared):
    exposed, feeds, workdir = prepared
    scheme = StaticInt8(feeds=feeds, quantize_masking_path=True, name="mask_fill_checked")
    with pytest.raises(QuantizeError, match=r"masked_fill: \[-1e\+09"):
        scheme.prepare(exposed, workdir)


def test_mask_fill_range_flattens_attention(prepared):
    exposed, feeds, workdir = prepared
    scheme = StaticInt8(feeds=feeds, quantize_masking_path=True, check_ranges=False, name="mask_fill_unchecked")
    scheme.prepare(exposed, workdir)
    scheme.build(exposed, workdir / "mask_fill.onnx")
    feed = _flat_history(1) | {"history_ids": feeds[0]["history_ids"][:1],
                               "history_lengths": feeds[0]["history_lengths"][:1]}
    length = int(feed["history_lengths"][0])
    reference = _run(exposed, feed)[1][0, 0, 0, :length]
    quantized = _run(workdir / "mask_fill.onnx", feed)[1][0, 0, 0, :length]
    assert length > 5
    assert reference.std() > 1e-4
    # Every real score rounded to the same level: the weights are uniform.
    assert quantized.std() < 1e-6


def test_inf_fill_rejected_and_wrong(prepared):
    exposed, feeds, workdir = prepared
    model = onnx.load(str(exposed))
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.size == 1 and value.dtype == np.float32 and value.item() <= -1e8:
            init.CopyFrom(numpy_helper.from_array(np.full(value.shape, -np.inf, np.float32), init.name))
    inf_model = workdir / "inf_fill.onnx"
    onnx.save_model(model, str(inf_model))
    # A -inf fill makes an empty history NaN even in fp32, so calibrate on non-empty ones.
    nonempty = [{k: v[f["history_lengths"] > 0] for k, v in f.items()} for f in feeds]

    with pytest.raises(QuantizeError, match=r"masked_fill: \[-inf, .*not finite"):
        StaticInt8(feeds=nonempty, quantize_masking_path=True, name="inf_checked").prepare(inf_model, workdir)

    scheme = StaticInt8(feeds=nonempty, quantize_masking_path=True, check_ranges=False, name="inf_unchecked")
    scheme.prepare(inf_model, workdir)
    with np.errstate(all="ignore"):
        scheme.build(inf_model, workdir / "inf_quantized.onnx")
    reference = _run(inf_model, nonempty[0])
    quantized = _run(workdir / "inf_quantized.onnx", nonempty[0])
    assert np.isfinite(quantized[0]).all()
    assert np.abs(quantized[0] - reference[0]).max() > 0.1
    assert np.all(quantized[1] == 0.0)  # every attention weight lost


@pytest.mark.parametrize("seq_len", [512, 4096])
def test_uint8_softmax_loses_long_histories(prepared, seq_len):
    exposed, feeds, workdir = prepared
    quantized_path = StaticInt8(feeds=feeds, quantize_masking_path=True, check_ranges=False, name="softmax_q")
    quantized_path.prepare(exposed, workdir)
    quantized_path.build(exposed, workdir / "softmax_q.onnx")
    default = StaticInt8(feeds=feeds, name="softmax_fp32")
    default.prepare(exposed, workdir)
    default.build(exposed, workdir / "softmax_fp32.onnx")

    feed = _flat_history(seq_len)
    fp32_sums = _run(workdir / "softmax_fp32.onnx", feed)[1].sum(axis=-1)
    uint8_sums = _run(workdir / "softmax_q.onnx", feed)[1].sum(axis=-1)
    assert np.allclose(fp32_sums, 1.0, atol=1e-3)
    assert uint8_sums.max() < 0.5


# --- the gate and node exclusion ----------------------------------------------------------------


def _coarse_static_options(trained_artifact: Path, workdir: Path) -> dict:
    """Force a uint8 range of [0, 1e4] on the last MatMul's input: about 40 per step, so it rounds to 0."""
    path = prepare_for_quantization(trained_artifact / "model.onnx", workdir / "prepared_for_names.onnx")
    last = [n for n in onnx.load(str(path)).graph.node if n.op_type == "MatMul"][-1]
    return {"range_overrides": {last.input[0]: (0.0, 1e4)}}, last.name


def test_gate_fails_on_coarse_variant(trained_artifact: Path, tmp_path: Path):
    target = tmp_path / "artifact"
    shutil.copytree(trained_artifact, target)
    static_options, _ = _coarse_static_options(trained_artifact, tmp_path)
    options = QuantizeOptions(schemes=["int8_static"], calibration_users=64, exclude_on_failure=False,
                              bench_runs=20, timer="inprocess", static_options=static_options)
    summary = quantize_artifact(target, options)
    outcome = summary.variants[0]
    assert not outcome.passed
    assert outcome.gate.failures
    assert read_manifest(target)["variants"]["int8_static"]["passed"] is False


def test_gate_passes_after_exclusion(trained_artifact: Path, tmp_path: Path):
    target = tmp_path / "artifact"
    shutil.copytree(trained_artifact, target)
    static_options, coarse_node = _coarse_static_options(trained_artifact, tmp_path)
    options = QuantizeOptions(schemes=["int8_static"], calibration_users=64, bench_runs=20,
                              timer="inprocess", static_options=static_options)
    outcome = quantize_artifact(target, options).variants[0]
    assert outcome.passed, outcome.gate.failures
    assert outcome.gate.sensitivity[0][0] == coarse_node
    excluded = {e.node: e.reason for e in outcome.gate.excluded}
    assert coarse_node in excluded
    assert "sensitivity rank 1" in excluded[coarse_node]
    gate = read_manifest(target)["variants"]["int8_static"]["gate"]
    assert coarse_node in {e["node"] for e in gate["excluded_nodes"]}


# --- command line -------------------------------------------------------------------------------


def test_cli_quantize_json(trained_artifact: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from attn_export.cli import app

    target = tmp_path / "artifact"
    shutil.copytree(trained_artifact, target)
    result = CliRunner().invoke(app, ["quantize", str(target), "--scheme", "int8_rows", "--scheme", "fp16_tables",
                                      "--make-default", "int8_rows", "--bench-runs", "20", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [v["name"] for v in summary["variants"]] == ["int8_rows", "fp16_tables"]
    assert summary["default_variant"] == "int8_rows"
    assert read_manifest(target)["default_variant"] == "int8_rows"


def test_cli_quantize_table(trained_artifact: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from attn_export.cli import app

    target = tmp_path / "artifact"
    shutil.copytree(trained_artifact, target)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["quantize", str(target), "--scheme", "int8_rows", "--bench-runs", "20"])
    assert result.exit_code == 0, result.output
    assert "int8_rows" in result.stdout
    assert "pass" in result.stdout


def test_cli_unknown_scheme_exit_code(trained_artifact: Path):
    from typer.testing import CliRunner

    from attn_export.cli import app

    result = CliRunner().invoke(app, ["quantize", str(trained_artifact), "--scheme", "int3"])
    assert result.exit_code == QuantizeError.exit_code
    assert "int3" in result.stderr


def test_calibrator_output_only_in_debug_log(trained_artifact: Path, tmp_path: Path, capfd, caplog):
    prepared_path = prepare_for_quantization(trained_artifact / "model.onnx", tmp_path / "prepared.onnx")
    requests = requests_for_artifact(read_manifest(trained_artifact), split="validation", max_users=32)
    with caplog.at_level(logging.DEBUG, logger="attn_export.quantize.calibration"):
        _, ranges = calibrate(prepared_path, calibration_feeds(requests), "percentile", ("MatMul", "Gemm"),
                              tmp_path / "calibration")
    captured = capfd.readouterr()
    assert ranges
    assert "Percentile" not in captured.out
    assert "Percentile" not in captured.err
    assert "Collecting tensor data" not in captured.err
    assert "Percentile : (" in caplog.text
    assert "Collecting tensor data and making histogram" in caplog.text


# --- choice of the default variant --------------------------------------------------------------


def _outcome(name: str, passed: bool, p50_ms: float | None) -> VariantOutcome:
    return VariantOutcome(name, "test variant", passed, f"model_{name}.onnx", 1000, 0.5, p50_ms, None, {})


def _manifest_with(default: str, default_passed: bool = True) -> dict:
    return {"default_variant": default,
            "variants": {"fp32": {"passed": True}, default: {"passed": default_passed}}}


@pytest.mark.parametrize("case, outcomes, latencies, default_passed, expected, reason_parts", [
    ("not faster by the margin", [_outcome("int8_rows", True, 0.99)], {"fp32": 1.3, "optimized": 1.0}, True,
     None, [f"at least {DEFAULT_MARGIN:.0%} faster", "current default optimized (p50 1.000 ms)"]),
    ("faster by the margin", [_outcome("int8_rows", True, 0.9)], {"fp32": 1.3, "optimized": 1.0}, True,
     "int8_rows", ["int8_rows (p50 0.900 ms)", "optimized (p50 1.000 ms)"]),
    ("only failing variants", [_outcome("int8_rows", False, 0.5)], {"fp32": 1.3, "optimized": 1.0}, True,
     None, ["no variant other than the current default optimized passed the gate"]),
    ("current default failed", [_outcome("int8_rows", True, 0.99)], {"fp32": 1.3, "optimized": 1.0}, False,
     "int8_rows", ["current default optimized was not timed or did not pass"]),
    ("nothing passed", [_outcome("int8_rows", False, 0.5)], {"fp32": 1.3, "optimized": 1.0}, False,
     None, ["no variant passed the gate"]),
])
def test_choose_default_reason(case, outcomes, latencies, default_passed, expected, reason_parts):
    options = QuantizeOptions(auto=True)
    default, reason = choose_default(options, outcomes, _manifest_with("optimized", default_passed), latencies,
                                     "optimized")
    assert default == expected, case
    for part in reason_parts:
        assert part in reason, (case, reason)


def test_choose_default_without_auto():
    default, reason = choose_default(QuantizeOptions(), [_outcome("int8_rows", True, 0.1)],
                                     _manifest_with("fp32"), {"fp32": 1.0}, "fp32")
    assert default is None
    assert "--auto" in reason


def _with_optimized_default(source: Path, target: Path) -> Path:
    """Copy `source` and add an onnxruntime-optimized fp32 graph as its default variant "optimized"."""
    from attn_export.artifact import add_variant, update_artifact

    shutil.copytree(source, target)
    with update_artifact(target) as (staging, manifest):
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        session_options.optimized_model_filepath = str(staging / "model.optimized.onnx")
        ort.InferenceSession(str(staging / "model.onnx"), session_options, providers=["CPUExecutionProvider"])
        add_variant(manifest, "optimized", "model.optimized.onnx", True, "onnxruntime extended fusions",
                    make_default=True)
    return target


def test_cli_auto_explains_unchanged_default(trained_artifact: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from attn_export.cli import app

    target = _with_optimized_default(trained_artifact, tmp_path / "artifact")
    assert read_manifest(target)["default_variant"] == "optimized"
    # A Kendall tau above 1 is impossible, so the new variant fails the gate and the default stays.
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["quantize", str(target), "--scheme", "int8_rows", "--auto", "--min-tau", "1.01", "--no-exclusion",
              "--bench-runs", "10"])
    assert result.exit_code == 0, result.output
    assert "Default variant unchanged (optimized): no variant other than the current default optimized " \
           "passed the gate." in result.stdout
    optimized_rows = [line for line in result.stdout.splitlines() if "current default" in line and "│" in line]
    assert len(optimized_rows) == 1, result.stdout
    assert optimized_rows[0].split("│")[1].strip() == "optimized"
    assert " ms" in optimized_rows[0]
    assert read_manifest(target)["default_variant"] == "optimized"
