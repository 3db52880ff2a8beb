"""Latency benchmark: grid, FLOPs, worker isolation, reports, comparison and the CLI.

Every run here is tiny (a few points, a few dozen timed calls). No test asserts a latency value,
only the structure and internal consistency of what the benchmark writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attn_export.bench import (
    FULL_GRID,
    QUICK_GRID,
    BenchOptions,
    GridPoint,
    TimingBudget,
    build_grid,
    compare_reports,
    measure_variant,
    ranker_flops,
    run_benchmark,
    write_report,
)
from attn_export.bench.grid import fit_grid_to_model, parse_int_list
from attn_export.bench.inputs import digest_request, make_request
from attn_export.errors import BenchError, UsageError
from attn_models import RankerConfig, TargetAttentionRanker

TINY_BUDGET = TimingBudget(warmup_runs=2, min_runs=20, min_seconds=0.0, max_seconds=2.0)
TINY_POINTS = (GridPoint(1, 20, 1), GridPoint(1, 50, 30), GridPoint(4, 20, 1))
RESULT_FIELDS = ("engine", "variant", "threads", "batch", "seq_len", "num_candidates", "p50_ms", "p90_ms",
                 "p99_ms", "requests_per_s", "candidates_per_s", "gflops", "pct_peak")


@pytest.fixture(scope="module")
def two_variant_artifact(tmp_path_factory) -> Path:
    """A tiny exported ranker with fp32 plus an "optimized" variant saved by onnxruntime itself."""
    import onnxruntime as ort

    from attn_export.artifact import add_variant, update_artifact
    from attn_export.pipeline import export_ranker
    from attn_export.sources import DataSource

    torch.manual_seed(0)
    model = TargetAttentionRanker(RankerConfig(vocab_size=2001, embed_dim=16)).eval()
    target = tmp_path_factory.mktemp("bench") / "artifact"
    export_ranker(model, target, DataSource("synthetic"), max_requests=32)
    with update_artifact(target) as (staging, manifest):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(staging / "model.optimized.onnx")
        ort.InferenceSession(str(staging / "model.onnx"), options, providers=["CPUExecutionProvider"])
        add_variant(manifest, "optimized", "model.optimized.onnx", True, "onnxruntime extended fusions")
    return target


@pytest.fixture(scope="module")
def tiny_report(two_variant_artifact: Path, tmp_path_factory) -> tuple[dict, Path]:
    options = BenchOptions(points=TINY_POINTS, threads=(1,), budget=TINY_BUDGET)
    report = run_benchmark(two_variant_artifact, options)
    out_dir = tmp_path_factory.mktemp("bench_out")
    return write_report(report, out_dir), out_dir


# --- grid and inputs


def test_full_grid_covers_axes():
    online = {(p.seq_len, p.num_candidates) for p in FULL_GRID if p.batch == 1}
    assert online == {(s, c) for s in (20, 50, 200, 1000) for c in (1, 100, 500, 1000)}
    assert GridPoint(32, 50, 1) in FULL_GRID
    assert set(QUICK_GRID) < set(FULL_GRID)


def test_build_grid_axis_product():
    points = build_grid(seq_len=[20, 50], num_candidates=[1])
    assert points == [GridPoint(1, 20, 1), GridPoint(1, 50, 1)]
    assert build_grid() == list(QUICK_GRID)
    assert build_grid(full=True) == list(FULL_GRID)


@pytest.mark.parametrize("text", ["20,abc", "0,5", ",", "-3"])
def test_parse_int_list_rejects(text):
    with pytest.raises(UsageError, match="--seq-len"):
        parse_int_list("--seq-len", text)


def test_fit_grid_skips_long_histories():
    kept, skipped = fit_grid_to_model([GridPoint(1, 20, 1), GridPoint(1, 200, 1)], max_seq_len=50)
    assert kept == [GridPoint(1, 20, 1)]
    assert skipped[0]["seq_len"] == 200
    assert "max_seq_len 50" in skipped[0]["reason"]


def test_inputs_seeded_and_valid():
    point = GridPoint(8, 40, 7)
    feeds = make_request(point, vocab_size=300, seed=3)
    assert digest_request(feeds) == digest_request(make_request(point, vocab_size=300, seed=3))
    assert digest_request(feeds) != digest_request(make_request(point, vocab_size=300, seed=4))
    lengths = feeds["history_lengths"]
    assert lengths[0] == 40
    assert (lengths >= 32).all()
    assert (lengths <= 40).all()
    real = torch.arange(40)[None, :].numpy() < lengths[:, None]
    assert (feeds["history_ids"][real] >= 1).all()
    assert (feeds["history_ids"][real] < 300).all()
    assert (feeds["history_ids"][~real] == 0).all()
    assert feeds["candidate_ids"].shape == (8, 7)


# --- FLOPs


@pytest.mark.parametrize(
    "overrides",
    [
        {"attention": "multihead"},
        {"attention": "multihead", "num_heads": 1},
        {"attention": "multihead", "self_attention_blocks": 2},
        {"attention": "dot"},
        {"attention": "dot", "value_projection": False},
        {"attention": "projected", "attention_dim": 24},
        {"attention": "din"},
        {"attention": "dot", "head": "dot"},
    ],
)
def test_flops_match_torch_counter(overrides):
    """ranker_flops agrees with torch's FlopCounterMode, which also counts only matmuls as 2mnk."""
    config = RankerConfig(vocab_size=100, embed_dim=16, **overrides)
    model = TargetAttentionRanker(config).eval()
    batch, seq_len, count = 3, 7, 5
    inputs = (torch.randint(1, 100, (batch, seq_len)), torch.full((batch,), seq_len), torch.randint(1, 100, (batch, count)))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(*inputs)
    expected = counter.get_total_flops()
    if config.head == "dot":
        expected += 2 * config.embed_dim * batch * count  # multiply-and-sum, invisible to the counter
    assert ranker_flops(config.to_dict(), batch, seq_len, count).total == expected


def test_flops_user_side_once_per_user():
    config = RankerConfig(vocab_size=100, embed_dim=16).to_dict()
    one = ranker_flops(config, 1, 50, 1)
    many = ranker_flops(config, 1, 50, 100)
    assert many.user_side == one.user_side
    assert many.candidate_side == 100 * one.candidate_side


# --- benchmark run and report


def test_report_structure(tiny_report):
    report, _ = tiny_report
    for key in ("cpu_model", "logical_cores", "cpu_flags", "versions", "load_average_start"):
        assert key in report["machine"]
    assert report["settings"]["onnxruntime_spinning"] is False
    engines = {(row["engine"], row["variant"]) for row in report["results"]}
    assert engines == {("pytorch", "eager"), ("onnxruntime", "fp32"), ("onnxruntime", "optimized")}
    assert len(report["results"]) == 3 * len(TINY_POINTS)
    for row in report["results"]:
        for field in RESULT_FIELDS:
            assert field in row, field


def test_report_numbers_positive_ordered(tiny_report):
    report, _ = tiny_report
    for row in report["results"]:
        label = f"{row['engine']}/{row['variant']} b{row['batch']} L{row['seq_len']} c{row['num_candidates']}"
        for field in ("p50_ms", "p90_ms", "p99_ms", "requests_per_s", "candidates_per_s", "gflops", "pct_peak", "flops"):
            assert row[field] > 0, f"{label}: {field}={row[field]}"
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"], label
        assert row["runs"] >= TINY_BUDGET.min_runs or row["budget_exhausted"], label
    peak = report["peak"]
    assert [entry["threads"] for entry in peak] == [1]
    assert peak[0]["gflops"] >= peak[0]["gflops_median"] > 0


def test_workers_keep_engines_apart(tiny_report):
    report, _ = tiny_report
    for worker in report["workers"]:
        if worker["engine"] == "pytorch":
            assert worker["imported"] == {"torch": True, "onnxruntime": False}
            assert worker["settings"]["torch_num_threads"] == 1
            assert worker["settings"]["torch_num_interop_threads"] == 1
            assert worker["settings"]["OMP_NUM_THREADS"] == "1"
        else:
            assert worker["imported"] == {"torch": False, "onnxruntime": True}
            assert worker["settings"]["intra_op_num_threads"] == 1
            assert worker["settings"]["allow_spinning"] is False


def test_engines_get_same_inputs(tiny_report):
    report, _ = tiny_report
    digests = {}
    for row in report["results"]:
        digests.setdefault((row["batch"], row["seq_len"], row["num_candidates"]), set()).add(row["input_digest"])
    assert all(len(values) == 1 for values in digests.values())


def test_wrapper_overhead_recorded(tiny_report):
    report, _ = tiny_report
    (overhead,) = report["wrapper_overhead"]
    assert overhead["variant"] == "fp32"  # the manifest's default variant
    assert overhead["scores_match"] is True
    assert overhead["bare_p50_ms"] > 0
    assert overhead["scorer_p50_ms"] > 0


def test_report_files_written(tiny_report):
    report, out_dir = tiny_report
    assert json.loads((out_dir / "report.json").read_text())["results"] == report["results"]
    markdown = (out_dir / "report.md").read_text()
    assert markdown.index("## Machine") < markdown.index("## Latency per engine")
    assert "## Speed-up over PyTorch" in markdown
    assert "optimized (x)" in markdown
    pngs = sorted(path.name for path in out_dir.glob("*.png"))
    assert pngs == sorted(report["plots"])
    assert "latency_vs_seq_len_t1.png" in pngs
    assert "speedup_optimized_t1.png" in pngs
    for name in pngs:
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_variant_rejected(two_variant_artifact):
    options = BenchOptions(points=TINY_POINTS, variants=["int8_static"], budget=TINY_BUDGET)
    with pytest.raises(BenchError, match="int8_static"):
        run_benchmark(two_variant_artifact, options)


# --- comparison


def test_compare_flags_regressions(tiny_report):
    report, _ = tiny_report
    old = json.loads(json.dumps(report))
    slow = old["results"][0]
    slow["p50_ms"] *= 0.5  # the new run is then twice as slow at this point
    fast = old["results"][1]
    fast["p50_ms"] *= 1.05  # within the threshold
    dropped = old["results"].pop()
    comparison = compare_reports(report, old, threshold=0.10)
    flagged = [row for row in comparison["rows"] if row["regression"]]
    assert len(flagged) == 1
    assert flagged[0]["engine"] == slow["engine"]
    assert flagged[0]["seq_len"] == slow["seq_len"]
    assert flagged[0]["p50_ratio"] == pytest.approx(2.0)
    assert comparison["regressions"] == 1
    assert len(comparison["rows"]) == len(report["results"]) - 1
    assert comparison["only_new"][0]["variant"] == dropped["variant"]


def test_compare_section_in_markdown(tiny_report, tmp_path):
    report, out_dir = tiny_report
    rerun = json.loads(json.dumps(report))
    write_report(rerun, tmp_path, compare_with=out_dir / "report.json", plots=False)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Comparison with an earlier report" in markdown
    assert rerun["comparison"]["regressions"] == 0
    assert not list(tmp_path.glob("*.png"))


# --- library entry point for other stages


def test_measure_variant_one_point(two_variant_artifact):
    result = measure_variant(two_variant_artifact, "optimized", seq_len=20, num_candidates=10, runs=30)
    assert result["variant"] == "optimized"
    assert (result["batch"], result["seq_len"], result["num_candidates"]) == (1, 20, 10)
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"]
    with pytest.raises(BenchError, match="not in"):
        measure_variant(two_variant_artifact, "missing")


# --- CLI


def test_cli_bench_writes_report(two_variant_artifact, tmp_path, tiny_report):
    from typer.testing import CliRunner

    from attn_export.cli import app

    _, old_dir = tiny_report
    out_dir = tmp_path / "cli"
    result = CliRunner().invoke(app, [
        "bench", str(two_variant_artifact), "--out", str(out_dir), "--seq-len", "20", "--num-candidates", "1,10",
        "--threads", "1", "--variants", "fp32", "--min-runs", "10", "--min-seconds", "0", "--warmup-runs", "1",
        "--no-overhead", "--no-plots", "--compare", str(old_dir / "report.json"), "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {row["variant"] for row in report["results"]} == {"eager", "fp32"}
    assert {row["num_candidates"] for row in report["results"]} == {1, 10}
    assert report["settings"]["grid"] == "custom"
    assert report["wrapper_overhead"] == []
    assert report["comparison"]["rows"]  # b1/L20/c1 is in both reports
    assert (out_dir / "report.md").is_file()


def test_cli_bench_bad_options(two_variant_artifact, tmp_path):
    from typer.testing import CliRunner

    from attn_export.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["bench", str(two_variant_artifact), "--seq-len", "20,x", "--out", str(tmp_path)])
    assert result.exit_code == UsageError.exit_code
    assert "--seq-len" in result.output
    result = runner.invoke(app, ["bench", str(two_variant_artifact), "--engines", "tensorrt", "--out", str(tmp_path)])
    assert result.exit_code == UsageError.exit_code
    assert "tensorrt" in result.output


def test_cli_bench_unknown_variant(two_variant_artifact, tmp_path):
    from typer.testing import CliRunner

    from attn_export.cli import app

    out_dir = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", str(two_variant_artifact), "--variants", "fp32,nope",
                                      "--out", str(out_dir)])
    assert result.exit_code == UsageError.exit_code, result.output
    assert "--variants" in result.output
    assert "'nope'" in result.output
    assert "['fp32', 'optimized']" in result.output
    assert "timing" not in result.output
    assert not out_dir.exists()


@pytest.mark.parametrize("case, content, problem", [
    ("invalid JSON", '{"results": [', "is not valid JSON"),
    ("JSON list", "[]", "has no 'results' list"),
    ("no results", '{"schema": 1}', "has no 'results' list"),
    ("row without fields", '{"results": [{"engine": "pytorch", "p50_ms": 1.0}]}', "results[0] has no ['variant'"),
    ("zero latency", json.dumps({"results": [{"engine": "pytorch", "variant": "eager", "threads": 1, "batch": 1,
                                              "seq_len": 20, "num_candidates": 1, "p50_ms": 0, "p99_ms": 1.0}]}),
     "results[0].p50_ms is 0; expected a positive number"),
])
def test_cli_bench_invalid_compare(two_variant_artifact, tmp_path, case, content, problem):
    from typer.testing import CliRunner

    from attn_export.cli import app

    old_report = tmp_path / "old.json"
    old_report.write_text(content)
    out_dir = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", str(two_variant_artifact), "--compare", str(old_report),
                                      "--out", str(out_dir)])
    assert result.exit_code == UsageError.exit_code, (case, result.output)
    assert "Invalid --compare file" in result.output, case
    assert str(old_report) in result.output, case
    assert problem in result.output, (case, result.output)
    assert "timing" not in result.output, case
    assert not out_dir.exists(), case


def test_cli_bench_help_quotes_plot_extra():
    from typer.testing import CliRunner

    from attn_export.cli import app

    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    assert "pip install 'attn-export[plot]'" in result.output


def test_tables_keep_long_variant_names(tiny_report, capsys, monkeypatch):
    from attn_export.cli_bench import _print_tables

    monkeypatch.delenv("COLUMNS", raising=False)  # rich then assumes 80 columns for a pipe
    report, out_dir = tiny_report
    renamed = json.loads(json.dumps(report))
    for row in renamed["results"]:
        if row["variant"] == "optimized":
            row["variant"] = "int8_static_percentile"
    _print_tables(renamed, out_dir)
    output = capsys.readouterr().out
    latency_table, speedup_table = output.split("Speed-up over PyTorch eager")
    assert "int8_static_percentile" in latency_table
    assert "int8_static_percentile" in speedup_table
    assert "…" not in output


def test_cli_bench_missing_manifest(tmp_path):
    from typer.testing import CliRunner

    from attn_export.cli import app

    empty = tmp_path / "not_an_artifact"
    empty.mkdir()
    result = CliRunner().invoke(app, ["bench", str(empty), "--out", str(tmp_path / "out")])
    assert result.exit_code == 6  # ArtifactError
    assert "manifest.json" in result.output
