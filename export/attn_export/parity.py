"""Numeric and ranking parity between two engines' scores (numpy only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from attn_models.metrics import binary_auc

__all__ = [
    "NEAR_TIE",
    "OutputRecord",
    "RankingRecord",
    "compare_output",
    "compare_rankings",
    "auc",
]

# Two scores closer than this are a near-tie: their order is reported, never counted as a flip.
NEAR_TIE = 1e-5


@dataclass
class OutputRecord:
    """Elementwise comparison of one output between a reference and a candidate engine."""

    case: str
    name: str
    reference_shape: list[int]
    candidate_shape: list[int]
    reference_dtype: str
    candidate_dtype: str
    max_abs_diff: float
    max_rel_diff: float
    atol: float
    rtol: float
    all_finite: bool
    passed: bool
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def compare_output(case: str, name: str, reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> OutputRecord:
    """Compare shapes, dtypes and finiteness first, then values with `|c - r| <= atol + rtol |r|`."""
    record = OutputRecord(
        case=case,
        name=name,
        reference_shape=list(reference.shape),
        candidate_shape=list(candidate.shape),
        reference_dtype=str(reference.dtype),
        candidate_dtype=str(candidate.dtype),
        max_abs_diff=float("nan"),
        max_rel_diff=float("nan"),
        atol=atol,
        rtol=rtol,
        all_finite=bool(np.isfinite(candidate).all() and np.isfinite(reference).all()),
        passed=False,
    )
    if reference.shape != candidate.shape:
        record.message = f"shape {candidate.shape} != reference {reference.shape}"
        return record
    if reference.dtype != candidate.dtype:
        record.message = f"dtype {candidate.dtype} != reference {reference.dtype}"
        return record
    if not record.all_finite:
        record.message = "non-finite values"
        return record
    if reference.size == 0:
        record.max_abs_diff = record.max_rel_diff = 0.0
        record.passed = True
        return record
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    record.max_abs_diff = float(diff.max())
    record.max_rel_diff = float((diff / np.maximum(np.abs(reference), 1e-12)).max())
    record.passed = bool((diff <= atol + rtol * np.abs(reference)).all())
    if not record.passed:
        record.message = f"max abs diff {record.max_abs_diff:.3g} exceeds atol {atol:g} + rtol {rtol:g}"
    return record


@dataclass
class RankingRecord:
    """How far a candidate engine reorders the reference ranking of each request."""

    case: str
    requests: int
    top_k: int
    mean_top_k_overlap: float
    min_top_k_overlap: float
    top_k_identical: bool
    mean_kendall_tau: float
    min_kendall_tau: float
    flipped_pairs: int
    near_tie_pairs: int
    near_tie_flips: int
    reference_auc: float | None
    candidate_auc: float | None
    auc_drop: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _pair_stats(ref: np.ndarray, cand: np.ndarray, near_tie: float) -> tuple[float, int, int, int]:
    """Kendall tau-b over pairs that are not near-ties in the reference, and pair counts."""
    upper = np.triu_indices(len(ref), k=1)
    ref_diff = (ref[:, None] - ref[None, :])[upper]
    cand_diff = (cand[:, None] - cand[None, :])[upper]
    tie = np.abs(ref_diff) < near_tie
    flips = np.sign(ref_diff) != np.sign(cand_diff)
    counted = ~tie
    if counted.sum() == 0:
        return 1.0, 0, int(tie.sum()), int((tie & flips).sum())
    concordant = int((counted & ~flips).sum())
    discordant = int((counted & flips).sum())
    tau = (concordant - discordant) / max(concordant + discordant, 1)
    return tau, discordant, int(tie.sum()), int((tie & flips).sum())


def _top_k_matches(ref: np.ndarray, cand: np.ndarray, k: int, near_tie: float) -> tuple[float, bool]:
    """Overlap of the two top-k sets; identical means equal except items near-tied at the cut."""
    k = min(k, len(ref))
    if k == 0:
        return 1.0, True
    top_ref = set(np.argsort(-ref, kind="stable")[:k].tolist())
    top_cand = set(np.argsort(-cand, kind="stable")[:k].tolist())
    overlap = len(top_ref & top_cand) / k
    cut = np.sort(ref)[::-1][k - 1]
    differing = top_ref ^ top_cand
    identical = all(abs(ref[i] - cut) < near_tie for i in differing)
    return overlap, identical


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Rank AUC over all (positive, negative) pairs, ties counted as half; None without both classes."""
    return binary_auc((labels.ravel() > 0.5).astype(np.float64), scores.ravel().astype(np.float64))


def compare_rankings(
    case: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray | None = None,
    top_k: int = 10,
    near_tie: float = NEAR_TIE,
) -> RankingRecord:
    """Compare per-request rankings of [batch, num_candidates] score matrices."""
    overlaps, taus, identical = [], [], True
    flipped = ties = tie_flips = 0
    for ref_row, cand_row in zip(reference.astype(np.float64), candidate.astype(np.float64)):
        if ref_row.size == 0:
            continue
        overlap, same = _top_k_matches(ref_row, cand_row, top_k, near_tie)
        tau, discordant, row_ties, row_tie_flips = _pair_stats(ref_row, cand_row, near_tie)
        overlaps.append(overlap)
        taus.append(tau)
        identical &= same
        flipped += discordant
        ties += row_ties
        tie_flips += row_tie_flips
    ref_auc = cand_auc = drop = None
    if labels is not None:
        ref_auc, cand_auc = auc(labels, reference), auc(labels, candidate)
        if ref_auc is not None and cand_auc is not None:
            drop = ref_auc - cand_auc
    return RankingRecord(
        case=case,
        requests=len(overlaps),
        top_k=top_k,
        mean_top_k_overlap=float(np.mean(overlaps)) if overlaps else 1.0,
        min_top_k_overlap=float(np.min(overlaps)) if overlaps else 1.0,
        top_k_identical=bool(identical),
        mean_kendall_tau=float(np.mean(taus)) if taus else 1.0,
        min_kendall_tau=float(np.min(taus)) if taus else 1.0,
        flipped_pairs=flipped,
        near_tie_pairs=ties,
        near_tie_flips=tie_flips,
        reference_auc=ref_auc,
        candidate_auc=cand_auc,
        auc_drop=drop,
    )
