"""onnxruntime engine of the benchmark worker: one artifact variant, plus peak and wrapper overhead.

Imported only inside the onnxruntime worker process; it never imports torch. Sessions are built
with attn_runtime's SessionConfig, so the graph optimization level is the one a service gets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .grid import GridPoint
from .inputs import digest_request, make_request
from .peak import measure_matmul_peak
from .stats import TimingBudget, summarize_latencies, time_calls

__all__ = ["run_ort_spec", "measure_wrapper_overhead"]

logger = logging.getLogger(__name__)


def _session_config(threads: int, spinning: bool):
    from attn_runtime.session import SessionConfig

    return SessionConfig(intra_op_threads=threads, inter_op_threads=1, allow_spinning=spinning)


def _model_path(artifact: Path, variant: str) -> Path:
    from ..artifact import read_manifest

    variants = read_manifest(artifact).get("variants", {})
    if variant not in variants:
        raise ValueError(f"Variant {variant!r} is not in {artifact}; available: {sorted(variants)}.")
    return artifact / variants[variant]["model_file"]


def measure_wrapper_overhead(
    artifact: Path, variant: str, session: Any, config: Any, point: GridPoint, vocab_size: int,
    seed: int, budget: TimingBudget,
) -> dict[str, Any]:
    """Time attn_runtime's Scorer.score against a bare InferenceSession.run on the same inputs.

    Both use the same model file and SessionConfig. `scores_match` checks that both returned
    the same scores, so the comparison is of equal work.
    """
    from attn_runtime import Scorer

    scorer = Scorer.from_artifact(artifact, variant=variant, config=config, allow_failed=True,
                                  padding_id_policy="ignore")
    feeds = make_request(point, vocab_size, seed=seed)
    bare_latencies, _ = time_calls(lambda: session.run(["scores"], feeds), budget)
    scorer_latencies, _ = time_calls(
        lambda: scorer.score(feeds["history_ids"], feeds["history_lengths"], feeds["candidate_ids"]), budget
    )
    bare = summarize_latencies(bare_latencies, point.batch, point.num_candidates)
    wrapped = summarize_latencies(scorer_latencies, point.batch, point.num_candidates)
    bare_scores = session.run(["scores"], feeds)[0]
    scorer_scores = scorer.score(feeds["history_ids"], feeds["history_lengths"], feeds["candidate_ids"])
    return {
        **point.to_dict(),
        "variant": variant,
        "bare_p50_ms": bare["p50_ms"],
        "bare_p99_ms": bare["p99_ms"],
        "scorer_p50_ms": wrapped["p50_ms"],
        "scorer_p99_ms": wrapped["p99_ms"],
        "overhead_p50_ms": wrapped["p50_ms"] - bare["p50_ms"],
        "overhead_p50_pct": 100.0 * (wrapped["p50_ms"] - bare["p50_ms"]) / bare["p50_ms"],
        "runs": min(bare["runs"], wrapped["runs"]),
        "scores_match": bool(np.array_equal(bare_scores, scorer_scores)),
    }


def run_ort_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the onnxruntime work in `spec`: optional peak, the grid points, optional overhead."""
    import onnxruntime as ort

    from attn_runtime.session import build_session

    threads = int(spec["threads"])
    spinning = bool(spec.get("spinning", False))
    variant = spec.get("variant")
    config = _session_config(threads, spinning)
    output: dict[str, Any] = {"engine": "onnxruntime", "variant": variant, "threads": threads, "results": []}
    output["settings"] = {
        "onnxruntime_version": ort.__version__,
        "intra_op_num_threads": threads,
        "inter_op_num_threads": 1,
        "allow_spinning": spinning,
        "execution_mode": config.execution_mode,
        "graph_optimization_level": config.resolve_optimization_level(variant) if variant else None,
    }
    if spec.get("measure_peak"):
        output["peak"] = measure_matmul_peak(threads, spinning)
    if not variant:
        return output

    artifact = Path(spec["artifact"])
    session = build_session(_model_path(artifact, variant), config, variant_name=variant)
    budget = TimingBudget(**spec["budget"])
    vocab_size, seed = int(spec["vocab_size"]), int(spec["seed"])
    for point_dict in spec["points"]:
        point = GridPoint.from_dict(point_dict)
        feeds = make_request(point, vocab_size, seed=seed)
        logger.info("onnxruntime %s, %d thread(s): timing %s", variant, threads, point.label())
        latencies, exhausted = time_calls(lambda: session.run(["scores"], feeds), budget)
        output["results"].append({
            **point.to_dict(),
            **summarize_latencies(latencies, point.batch, point.num_candidates),
            "budget_exhausted": exhausted,
            "input_digest": digest_request(feeds),
        })
    if spec.get("overhead_point"):
        point = GridPoint.from_dict(spec["overhead_point"])
        output["wrapper_overhead"] = {
            "threads": threads,
            **measure_wrapper_overhead(artifact, variant, session, config, point, vocab_size, seed, budget),
        }
    return output
