"""Parity of an exported graph against its PyTorch original.

Three groups of checks, each producing records for `parity.json`:
  1. held-out requests from real data (output records plus ranking parity with labels);
  2. an edge-case grid (empty history, seq_len 1, num_candidates 1, max seq_len, mixed lengths,
     batch 1 and 64, one request at several padding widths);
  3. properties of the exported graph alone: extra padding, ids in padded slots, candidate
     permutation and row independence change nothing they should not.
Groups 2 and 3 apply to id-level models; custom models get spec sample inputs at several sizes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import torch

from attn_models.data import RankingRequests

from .errors import VerifyError
from .parity import OutputRecord, RankingRecord, compare_output, compare_rankings
from .spec import ExportSpec

__all__ = ["PropertyRecord", "ParityReport", "make_session", "torch_runner", "onnx_runner", "property_checks", "verify_onnx"]

logger = logging.getLogger(__name__)

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]

# Property checks compare the graph with itself at different shapes. Kernels may block a matmul
# differently per shape, so float32 rounding noise is allowed but nothing more.
PROPERTY_ATOL = 1e-5
HELDOUT_BATCH = 64
LONG_SEQ_LEN = 512


@dataclass
class PropertyRecord:
    name: str
    max_abs_diff: float
    atol: float
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ParityReport:
    """All records of one verification run; `passed` is the gate verdict."""

    variant: str
    outputs: list[OutputRecord] = field(default_factory=list)
    rankings: list[RankingRecord] = field(default_factory=list)
    properties: list[PropertyRecord] = field(default_factory=list)
    top_k: int = 10

    @property
    def max_abs_diff(self) -> float:
        diffs = [r.max_abs_diff for r in self.outputs if np.isfinite(r.max_abs_diff)]
        return float(max(diffs)) if diffs else float("nan")

    @property
    def failures(self) -> list[str]:
        problems = [f"{r.case}/{r.name}: {r.message}" for r in self.outputs if not r.passed]
        problems += [
            f"{r.case}: top-{r.top_k} differs beyond near-ties (mean overlap {r.mean_top_k_overlap:.4f})"
            for r in self.rankings
            if not r.top_k_identical
        ]
        problems += [f"property {p.name}: {p.detail}" for p in self.properties if not p.passed]
        return problems

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "failures": self.failures,
            "outputs": [r.to_dict() for r in self.outputs],
            "rankings": [r.to_dict() for r in self.rankings],
            "properties": [p.to_dict() for p in self.properties],
        }


def make_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_runner(model: torch.nn.Module, spec: ExportSpec) -> Runner:
    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = model(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.input_names))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.detach().cpu().numpy()

    return run


def onnx_runner(session: ort.InferenceSession, output_name: str) -> Runner:
    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([output_name], feeds)[0]

    return run


def _guarded(run: Runner, engine: str, case: str) -> Runner:
    """Wrap a runner so an engine failure names the engine, the case and the input shapes."""

    def run_case(feeds: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return run(feeds)
        except Exception as exc:  # any engine failure on valid inputs is a verification failure
            shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in feeds.items())
            raise VerifyError(
                f"{engine} failed on parity case '{case}' ({shapes}): {type(exc).__name__}: {exc}. "
                "The model must accept every size of its dynamic axes; check code that assumes a fixed size."
            ) from exc

    return run_case


def _edge_cases(spec: ExportSpec, rng: np.random.Generator) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Named id-level requests that stress masking, shapes and padding."""
    vocab = spec.vocab_size or 2
    max_len = spec.max_seq_len or LONG_SEQ_LEN

    def request(lengths: list[int], seq_len: int, num_candidates: int) -> dict[str, np.ndarray]:
        lengths_arr = np.asarray(lengths, dtype=np.int64)  # [batch]
        ids = rng.integers(1, vocab, size=(len(lengths), seq_len)).astype(np.int64)  # [batch, seq_len]
        ids[np.arange(seq_len)[None, :] >= lengths_arr[:, None]] = 0
        candidates = rng.integers(1, vocab, size=(len(lengths), num_candidates)).astype(np.int64)
        return {"history_ids": ids, "history_lengths": lengths_arr, "candidate_ids": candidates}

    mixed = [int(x) for x in rng.integers(0, 31, size=16)] + [0, 30]
    return [
        ("empty_history", request([0, 0, 0], 5, 7)),
        ("empty_and_full", request([0, 6], 6, 4)),
        ("seq_len_1", request([1, 0, 1], 1, 6)),
        ("num_candidates_1", request([4, 9, 0], 9, 1)),
        ("seq_len_1_num_candidates_1", request([1], 1, 1)),
        ("max_seq_len", request([max_len, max_len // 2, 0], max_len, 20)),
        ("mixed_lengths", request(mixed, 30, 12)),
        ("batch_1", request([17], 20, 50)),
        ("batch_64", request([int(x) for x in rng.integers(0, 41, size=64)], 40, 8)),
    ]


def _pad_to(feeds: dict[str, np.ndarray], width: int, fill: np.ndarray | int = 0) -> dict[str, np.ndarray]:
    ids = feeds["history_ids"]
    extra = width - ids.shape[1]
    padding = np.broadcast_to(np.asarray(fill, dtype=np.int64), (ids.shape[0], extra)) if extra else None
    padded = np.concatenate([ids, padding], axis=1) if extra else ids.copy()  # [batch, width]
    return {**feeds, "history_ids": np.ascontiguousarray(padded)}


def property_checks(run: Runner, spec: ExportSpec, rng: np.random.Generator) -> list[PropertyRecord]:
    """Check the id-level contract on one engine: padding, padded-slot ids, permutation, rows."""
    vocab = spec.vocab_size or 2
    max_width = spec.max_seq_len or 64
    base_len = min(12, max_width)
    lengths = np.array([base_len, 3, 0, base_len // 2], dtype=np.int64)
    ids = rng.integers(1, vocab, size=(4, base_len)).astype(np.int64)
    ids[np.arange(base_len)[None, :] >= lengths[:, None]] = 0
    feeds = {"history_ids": ids, "history_lengths": lengths,
             "candidate_ids": rng.integers(1, vocab, size=(4, 9)).astype(np.int64)}
    base = run(feeds)
    records = []

    diffs = [np.abs(run(_pad_to(feeds, w)) - base).max() for w in sorted({base_len + 1, base_len + 7, max_width}) if w >= base_len]
    records.append(_record("extra_padding_changes_nothing", max(diffs), "padding to wider seq_len"))

    noisy = feeds["history_ids"].copy()
    pad_slots = np.arange(base_len)[None, :] >= lengths[:, None]
    noisy[pad_slots] = rng.integers(1, vocab, size=int(pad_slots.sum()))
    diff = np.abs(run({**feeds, "history_ids": noisy}) - base).max()
    records.append(_record("padded_slot_ids_change_nothing", diff, "random ids written into padded slots"))

    perm = rng.permutation(feeds["candidate_ids"].shape[1])
    permuted = run({**feeds, "candidate_ids": np.ascontiguousarray(feeds["candidate_ids"][:, perm])})
    records.append(_record("candidate_permutation_permutes_scores", np.abs(permuted - base[:, perm]).max(), ""))

    singles = np.concatenate([run({k: v[i : i + 1] for k, v in feeds.items()}) for i in range(len(lengths))])
    records.append(_record("rows_independent", np.abs(singles - base).max(), "each row scored alone vs in the batch"))

    finite = bool(np.isfinite(base).all())
    records.append(PropertyRecord("empty_history_finite", 0.0 if finite else float("inf"), 0.0, finite,
                                  "" if finite else "non-finite score for an empty history"))
    return records


def _record(name: str, diff: float, detail: str) -> PropertyRecord:
    diff = float(diff)
    passed = bool(np.isfinite(diff) and diff <= PROPERTY_ATOL)
    return PropertyRecord(name, diff, PROPERTY_ATOL, passed, detail if not passed else "")


def verify_onnx(
    reference: Runner,
    candidate: Runner,
    spec: ExportSpec,
    variant: str = "fp32",
    requests: RankingRequests | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> ParityReport:
    """Run every check and return the report; the caller decides what a failure means."""
    atol = spec.atol if atol is None else atol
    rtol = spec.rtol if rtol is None else rtol
    output = spec.output_names[0]
    report = ParityReport(variant=variant)
    rng = np.random.default_rng(seed)

    if requests is not None and len(requests):
        if progress:
            progress(f"held-out requests ({len(requests)})")
        ref_scores, cand_scores = [], []
        for start in range(0, len(requests), HELDOUT_BATCH):
            feeds = requests.take(slice(start, start + HELDOUT_BATCH)).model_inputs()
            ref_scores.append(_guarded(reference, "PyTorch", "heldout")(feeds))
            cand_scores.append(_guarded(candidate, "onnxruntime", "heldout")(feeds))
        ref_all, cand_all = np.concatenate(ref_scores), np.concatenate(cand_scores)
        report.outputs.append(compare_output("heldout", output, ref_all, cand_all, atol, rtol))
        report.rankings.append(compare_rankings("heldout", ref_all, cand_all, requests.labels, report.top_k))

    if spec.is_id_level:
        if progress:
            progress("edge-case grid")
        for case, feeds in _edge_cases(spec, rng):
            ref = _guarded(reference, "PyTorch", case)(feeds)
            cand = _guarded(candidate, "onnxruntime", case)(feeds)
            report.outputs.append(compare_output(case, output, ref, cand, atol, rtol))
            if ref.shape[1] > 1:
                report.rankings.append(compare_rankings(case, ref, cand, None, report.top_k))
        if progress:
            progress("graph properties")
        report.properties.extend(property_checks(_guarded(candidate, "onnxruntime", "graph properties"), spec, rng))
    else:
        for index, sizes in enumerate(_custom_sizes(spec)):
            feeds = spec.sample_inputs(sizes, rng)
            case = f"sample_{index}"
            ref = _guarded(reference, "PyTorch", case)(feeds)
            cand = _guarded(candidate, "onnxruntime", case)(feeds)
            report.outputs.append(compare_output(case, output, ref, cand, atol, rtol))
    logger.info("Parity of %s: %s (max abs diff %.3g)", variant, "pass" if report.passed else "FAIL", report.max_abs_diff)
    return report


def _custom_sizes(spec: ExportSpec) -> list[dict[str, int]]:
    axes = spec.dynamic_axes
    return [{a: 1 for a in axes}, dict(spec.sample_sizes), {a: 2 + 5 * i for i, a in enumerate(axes)}]
