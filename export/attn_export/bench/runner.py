"""Orchestrate a benchmark run: one worker per engine, variant and thread count, then one report.

Workers run one after another, never concurrently, so each owns its thread budget. This module
imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..artifact import read_manifest, utc_now
from ..errors import BenchError
from .flops import ranker_flops
from .grid import GridPoint, fit_grid_to_model
from .launch import THREAD_ENV_VARS, run_worker
from .machine import describe_machine, load_average
from .stats import TimingBudget

__all__ = ["BenchOptions", "OVERHEAD_POINT", "REPORT_SCHEMA", "run_benchmark", "artifact_variants"]

logger = logging.getLogger(__name__)

REPORT_SCHEMA = 1
# Small request where fixed per-call costs dominate, so the wrapper's share shows.
OVERHEAD_POINT = GridPoint(1, 20, 1)
ENGINE_PYTORCH = "pytorch"
ENGINE_ORT = "onnxruntime"

Progress = Callable[[str], None]


@dataclass
class BenchOptions:
    """Settings of one benchmark run: points, engines, variants, thread budgets and timing.

    engines: subset of ("pytorch", "onnxruntime").
    variants: artifact variants timed with onnxruntime; None means every variant in the manifest.
    threads: thread budgets; each gets its own workers.
    spinning: onnxruntime intra-op and inter-op thread spinning (busy-wait between operators).
    """

    points: Sequence[GridPoint]
    engines: Sequence[str] = (ENGINE_PYTORCH, ENGINE_ORT)
    variants: Sequence[str] | None = None
    threads: Sequence[int] = (1, 2)
    spinning: bool = False
    budget: TimingBudget = field(default_factory=TimingBudget)
    seed: int = 0
    measure_overhead: bool = True
    grid_name: str = "custom"


def artifact_variants(manifest: dict[str, Any], requested: Sequence[str] | None) -> list[str]:
    """Return the variants to time, in manifest order; BenchError on a name the artifact lacks."""
    available = list(manifest.get("variants", {}))
    if requested is None:
        return available
    missing = [name for name in requested if name not in available]
    if missing:
        raise BenchError(
            f"--variants {','.join(requested)}: {missing} not in the artifact, which has {available}. "
            "Pick from those, or omit --variants to time all of them."
        )
    return [name for name in available if name in requested]


def _check_artifact(artifact: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    model = manifest.get("model", {})
    if model.get("kind") != "target_attention_ranker" or not model.get("config"):
        raise BenchError(
            f"{artifact} contains a {model.get('kind')!r} model; the benchmark needs a built-in "
            "TargetAttentionRanker (its config sets FLOPs and request shapes). Export one with "
            "`attn-export build` or `attn-export export --checkpoint`."
        )
    if not manifest.get("vocab_size"):
        raise BenchError(f"{artifact}/manifest.json has no vocab_size; re-export the artifact.")
    return model["config"]


def _add_derived(row: dict[str, Any], config: dict[str, Any], peaks: dict[int, float],
                 passed: dict[str, bool]) -> dict[str, Any]:
    flops = ranker_flops(config, row["batch"], row["seq_len"], row["num_candidates"])
    gflops = flops.total / (row["p50_ms"] / 1e3) / 1e9
    peak = peaks.get(row["threads"])
    row.update({
        "flops": flops.total,
        "flops_user_side": flops.user_side,
        "flops_candidate_side": flops.candidate_side,
        "gflops": gflops,
        "pct_peak": 100.0 * gflops / peak if peak else None,
    })
    if row["engine"] == ENGINE_ORT:
        row["variant_passed"] = passed.get(row["variant"])
    return row


def run_benchmark(artifact: str | Path, options: BenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Time every engine on every point and return the report document (see `report.write_json`).

    Raises BenchError on an unusable artifact, an unknown variant or a failed worker.
    """
    artifact = Path(artifact).resolve()
    manifest = read_manifest(artifact)
    config = _check_artifact(artifact, manifest)
    variants = artifact_variants(manifest, options.variants) if ENGINE_ORT in options.engines else []
    points, skipped = fit_grid_to_model(options.points, manifest.get("max_seq_len"))
    if not points:
        raise BenchError("No grid point fits the model's max_seq_len; choose smaller --seq-len values.")
    default_variant = manifest.get("default_variant")
    overhead_variant = variants[0] if variants else None
    if default_variant in variants:
        overhead_variant = default_variant

    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "created_utc": utc_now(),
        "artifact": str(artifact),
        "default_variant": default_variant,
        "model": config,
        "machine": describe_machine(),
        "settings": {
            "grid": options.grid_name,
            "threads": list(options.threads),
            "thread_env": list(THREAD_ENV_VARS),
            "pytorch_interop_threads": 1,
            "onnxruntime_inter_op_threads": 1,
            "onnxruntime_spinning": options.spinning,
            "budget": options.budget.to_dict(),
            "seed": options.seed,
            "engines": list(options.engines),
            "variants": variants,
        },
        "workers": [],
        "peak": [],
        "wrapper_overhead": [],
        "results": [],
        "skipped": skipped,
    }
    common = {"artifact": str(artifact), "vocab_size": int(manifest["vocab_size"]), "seed": options.seed,
              "budget": options.budget.to_dict(), "spinning": options.spinning,
              "points": [p.to_dict() for p in points]}
    for threads in options.threads:
        jobs: list[dict[str, Any]] = []
        # The GEMM peak rides along with the first onnxruntime worker of this thread budget.
        if not variants:
            jobs.append({**common, "engine": ENGINE_ORT, "variant": None, "points": [], "measure_peak": True})
        if ENGINE_PYTORCH in options.engines:
            jobs.append({**common, "engine": ENGINE_PYTORCH, "variant": "eager"})
        for index, variant in enumerate(variants):
            job = {**common, "engine": ENGINE_ORT, "variant": variant, "measure_peak": index == 0}
            if options.measure_overhead and variant == overhead_variant:
                job["overhead_point"] = OVERHEAD_POINT.to_dict()
            jobs.append(job)
        for job in jobs:
            if progress:
                progress(f"{job['engine']} {job['variant'] or 'GEMM peak'}, {threads} thread(s)")
            result = run_worker({**job, "threads": threads})
            report["workers"].append({key: result.get(key) for key in ("engine", "variant", "threads", "settings", "imported")})
            if "peak" in result:
                report["peak"].append(result["peak"])
            if "wrapper_overhead" in result:
                report["wrapper_overhead"].append(result["wrapper_overhead"])
            for row in result["results"]:
                report["results"].append({"engine": result["engine"], "variant": result["variant"],
                                          "threads": threads, **row})

    report["machine"]["load_average_end"] = load_average()
    peaks = {entry["threads"]: entry["gflops"] for entry in report["peak"]}
    passed = {name: bool(entry.get("passed")) for name, entry in manifest.get("variants", {}).items()}
    report["results"] = [_add_derived(row, config, peaks, passed) for row in report["results"]]
    _check_same_inputs(report["results"])
    return report


def _check_same_inputs(rows: list[dict[str, Any]]) -> None:
    digests: dict[tuple[int, int, int], set[str]] = {}
    for row in rows:
        digests.setdefault((row["batch"], row["seq_len"], row["num_candidates"]), set()).add(row["input_digest"])
    mismatched = [key for key, values in digests.items() if len(values) > 1]
    if mismatched:
        raise BenchError(
            f"Workers generated different inputs for points {mismatched} (batch, seq_len, num_candidates); "
            "the engines would not be compared on equal requests. Check that every worker runs this "
            "attn-export version and numpy version."
        )
