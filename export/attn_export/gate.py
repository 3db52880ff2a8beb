"""The accuracy gate for quantized variants, with sensitivity-ranked node exclusion.

A variant passes when, on held-out real requests, its rankings match the fp32 ONNX graph's:
  AUC drop (fp32 AUC - variant AUC)  <= max_auc_drop      (default 0.002)
  mean top-10 overlap                >= min_top_k_overlap (default 0.95)
  mean Kendall tau                   >= min_kendall_tau   (default 0.95)
Near-tie pairs (reference scores closer than parity.NEAR_TIE) are reported and not counted.

When a variant fails, nodes are ranked by the error their quantization adds on their own:
each candidate node is quantized alone and the mean squared score error against fp32 is
measured on calibration requests (not the gate's). The worst node is kept fp32, the variant is
rebuilt and gated again, until it passes or no quantized node is left.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from attn_models.data import RankingRequests

from .parity import RankingRecord, compare_rankings
from .verify import Runner, make_session, onnx_runner

__all__ = [
    "GateThresholds",
    "ExcludedNode",
    "GateResult",
    "GateReference",
    "score_requests",
    "check_gate",
    "rank_node_sensitivity",
    "gate_variant",
]

logger = logging.getLogger(__name__)

SCORE_BATCH = 64
# Builds `target` from the prepared model: (target, nodes to exclude, nodes to quantize or None for all).
Builder = Callable[[Path, Sequence[str], "Sequence[str] | None"], None]


@dataclass(frozen=True)
class GateThresholds:
    """Limits a quantized variant must meet against the fp32 ONNX graph."""

    max_auc_drop: float = 0.002
    min_top_k_overlap: float = 0.95
    min_kendall_tau: float = 0.95
    top_k: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExcludedNode:
    """A node kept in fp32, and why."""

    node: str
    reason: str
    added_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateResult:
    """Verdict of the gate for one variant, with the metrics behind it."""

    variant: str
    passed: bool
    thresholds: GateThresholds
    record: RankingRecord
    failures: list[str]
    excluded: list[ExcludedNode] = field(default_factory=list)
    sensitivity: list[tuple[str, float]] = field(default_factory=list)
    attempts: int = 1
    pytorch_record: RankingRecord | None = None
    max_abs_diff: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "accuracy_gate",
            "variant": self.variant,
            "passed": self.passed,
            "reference": "fp32 ONNX",
            "thresholds": self.thresholds.to_dict(),
            "metrics": {
                "requests": self.record.requests,
                "reference_auc": self.record.reference_auc,
                "candidate_auc": self.record.candidate_auc,
                "auc_drop": self.record.auc_drop,
                "mean_top_k_overlap": self.record.mean_top_k_overlap,
                "mean_kendall_tau": self.record.mean_kendall_tau,
                "near_tie_pairs": self.record.near_tie_pairs,
                "near_tie_flips": self.record.near_tie_flips,
                "max_abs_diff": self.max_abs_diff,
            },
            "failures": self.failures,
            "excluded_nodes": [e.to_dict() for e in self.excluded],
            "sensitivity": [{"node": n, "score_mse": e} for n, e in self.sensitivity],
            "attempts": self.attempts,
            "vs_pytorch": self.pytorch_record.to_dict() if self.pytorch_record else None,
        }


@dataclass
class GateReference:
    """fp32 scores the gate compares against, computed once per artifact.

    gate_requests: held-out requests (test split) the verdict is based on.
    reference_scores: fp32 ONNX scores on them [requests, num_candidates].
    calibration_feeds / calibration_scores: batches (validation split) and fp32 ONNX scores,
      used only to rank node sensitivity.
    pytorch_scores: PyTorch scores on gate_requests, for the informational PyTorch comparison.
    """

    gate_requests: RankingRequests
    reference_scores: np.ndarray
    calibration_feeds: list[dict[str, np.ndarray]]
    calibration_scores: list[np.ndarray]
    output_name: str = "scores"
    pytorch_scores: np.ndarray | None = None

    @classmethod
    def from_fp32(cls, fp32_model: Path, gate_requests: RankingRequests, calibration_feeds: list[dict[str, np.ndarray]],
                  output_name: str = "scores", pytorch_runner: Runner | None = None) -> "GateReference":
        run = onnx_runner(make_session(fp32_model), output_name)
        return cls(
            gate_requests=gate_requests,
            reference_scores=score_requests(run, gate_requests),
            calibration_feeds=calibration_feeds,
            calibration_scores=[run(feeds) for feeds in calibration_feeds],
            output_name=output_name,
            pytorch_scores=score_requests(pytorch_runner, gate_requests) if pytorch_runner else None,
        )


def score_requests(run: Runner, requests: RankingRequests, batch_size: int = SCORE_BATCH) -> np.ndarray:
    """Score all requests in batches: float32 [requests, num_candidates]."""
    parts = [run(requests.take(slice(start, start + batch_size)).model_inputs())
             for start in range(0, len(requests), batch_size)]
    return np.concatenate(parts)


def check_gate(
    reference_scores: np.ndarray,
    candidate_scores: np.ndarray,
    labels: np.ndarray,
    thresholds: GateThresholds,
) -> tuple[RankingRecord, list[str]]:
    """Compare rankings and return (record, failed conditions); no failures means the gate passed."""
    record = compare_rankings("heldout", reference_scores, candidate_scores, labels, thresholds.top_k)
    failures = []
    if not np.isfinite(candidate_scores).all():
        failures.append("non-finite scores")
    if record.auc_drop is None:
        failures.append("AUC undefined: the held-out labels need positives and negatives")
    elif record.auc_drop > thresholds.max_auc_drop:
        failures.append(f"AUC drop {record.auc_drop:.5f} > {thresholds.max_auc_drop}")
    if record.mean_top_k_overlap < thresholds.min_top_k_overlap:
        failures.append(f"mean top-{thresholds.top_k} overlap {record.mean_top_k_overlap:.4f} < {thresholds.min_top_k_overlap}")
    if record.mean_kendall_tau < thresholds.min_kendall_tau:
        failures.append(f"mean Kendall tau {record.mean_kendall_tau:.4f} < {thresholds.min_kendall_tau}")
    return record, failures


def rank_node_sensitivity(
    build: Builder,
    nodes: Sequence[str],
    reference: GateReference,
    workdir: Path,
) -> list[tuple[str, float]]:
    """Quantize each node alone and return [(node, mean squared score error vs fp32)], worst first."""
    errors = []
    for node in nodes:
        path = workdir / "sensitivity.onnx"
        build(path, (), [node])
        run = onnx_runner(make_session(path), reference.output_name)
        squared = [np.mean((run(feeds).astype(np.float64) - ref) ** 2)
                   for feeds, ref in zip(reference.calibration_feeds, reference.calibration_scores)]
        errors.append((node, float(np.mean(squared))))
    errors.sort(key=lambda item: item[1], reverse=True)
    return errors


def _evaluate(variant: str, path: Path, reference: GateReference, thresholds: GateThresholds) -> GateResult:
    run = onnx_runner(make_session(path), reference.output_name)
    scores = score_requests(run, reference.gate_requests)
    record, failures = check_gate(reference.reference_scores, scores, reference.gate_requests.labels, thresholds)
    pytorch = None
    if reference.pytorch_scores is not None:
        pytorch = compare_rankings("heldout_vs_pytorch", reference.pytorch_scores, scores,
                                   reference.gate_requests.labels, thresholds.top_k)
    diff = np.abs(scores.astype(np.float64) - reference.reference_scores)
    return GateResult(variant, not failures, thresholds, record, failures, pytorch_record=pytorch,
                      max_abs_diff=float(diff.max()) if diff.size else 0.0)


def gate_variant(
    variant: str,
    build: Builder,
    candidates: Sequence[str],
    reference: GateReference,
    target: Path,
    thresholds: GateThresholds = GateThresholds(),
    default_exclusions: dict[str, str] | None = None,
    exclude_on_failure: bool = True,
) -> GateResult:
    """Build the variant into `target`, gate it, and exclude sensitive nodes until it passes.

    `default_exclusions` ({node: reason}) stay fp32 from the start. The returned result lists
    every excluded node with its reason; `target` contains the last build (the passing one if any).
    """
    excluded = [ExcludedNode(node, reason) for node, reason in (default_exclusions or {}).items()]
    build(target, [e.node for e in excluded], None)
    result = _evaluate(variant, target, reference, thresholds)
    result.excluded = list(excluded)
    if result.passed or not exclude_on_failure:
        return result

    remaining = [n for n in candidates if n not in {e.node for e in excluded}]
    logger.info("%s failed the gate (%s); ranking %d nodes by sensitivity", variant, "; ".join(result.failures), len(remaining))
    with tempfile.TemporaryDirectory(prefix="attn-gate-") as scratch:
        ranking = rank_node_sensitivity(build, remaining, reference, Path(scratch))
    attempts = 1
    for rank, (node, error) in enumerate(ranking, start=1):
        excluded.append(ExcludedNode(
            node, f"gate failed; quantizing this node alone adds score MSE {error:.3g} vs fp32 "
                  f"(sensitivity rank {rank} of {len(ranking)})", error))
        build(target, [e.node for e in excluded], None)
        attempts += 1
        result = _evaluate(variant, target, reference, thresholds)
        if result.passed:
            break
    result.excluded = excluded
    result.sensitivity = ranking
    result.attempts = attempts
    logger.info("%s after %d attempts: %s, %d nodes fp32", variant, attempts, "pass" if result.passed else "FAIL", len(excluded))
    return result
