"""Add the "optimized" variant to an artifact: optimize fp32, check parity twice, record it."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..artifact import add_variant, read_manifest, update_artifact
from ..errors import OptimizeError
from ..sources import load_reference, requests_for_artifact
from ..verify import ParityReport, make_session, onnx_runner, torch_runner, verify_onnx
from .graph_pipeline import optimize_onnx_file

__all__ = [
    "VARIANT_NAME",
    "MODEL_FILE",
    "PARITY_FILE",
    "FP32_ONNX_ATOL",
    "FP32_ONNX_RTOL",
    "OptimizeResult",
    "optimize_artifact",
]

logger = logging.getLogger(__name__)

VARIANT_NAME = "optimized"
MODEL_FILE = "model.optimized.onnx"
PARITY_FILE = "parity_optimized.json"
# Both graphs run float32 onnxruntime kernels; the rewrites only reorder float32 products
# (scale and W_q W_k^T folded into weights), so differences stay near float32 rounding.
FP32_ONNX_ATOL = 1e-5
FP32_ONNX_RTOL = 1e-4
# Defaults that an optimized fp32 graph may replace; any other passed default (a quantized
# variant) was chosen on purpose and is kept.
_REPLACEABLE_DEFAULTS = (None, "fp32", VARIANT_NAME)

Progress = Callable[[str], None]


@dataclass
class OptimizeResult:
    """Outcome of `optimize_artifact`: graph report, both parity reports, and the manifest verdict."""

    artifact: Path
    graph_report: dict[str, Any]
    against_pytorch: ParityReport
    against_fp32_onnx: ParityReport
    made_default: bool
    default_variant: str | None

    @property
    def passed(self) -> bool:
        return self.against_pytorch.passed and self.against_fp32_onnx.passed

    @property
    def failures(self) -> list[str]:
        return [f"vs PyTorch: {f}" for f in self.against_pytorch.failures] + [
            f"vs fp32 ONNX: {f}" for f in self.against_fp32_onnx.failures
        ]


def optimize_artifact(
    artifact: str | Path,
    max_requests: int = 256,
    attention_rewrites: bool = True,
    ort_fusions: bool = False,
    progress: Progress | None = None,
) -> OptimizeResult:
    """Optimize the artifact's fp32 graph and add it as variant "optimized".

    Parity is checked against the PyTorch original with the artifact's fp32 tolerances, and
    against the fp32 ONNX graph with FP32_ONNX_ATOL / FP32_ONNX_RTOL, on the held-out requests and
    the edge-case grid. The variant is recorded even when parity fails (with passed=False), so
    the failure is visible in the manifest; it becomes the default only when it passes and the
    current default is fp32, itself or unset. Raises OptimizeError when the artifact has no fp32
    variant or a pass fails, ArtifactError when the artifact is unreadable.
    """
    artifact = Path(artifact).resolve()
    manifest = read_manifest(artifact)
    fp32 = manifest.get("variants", {}).get("fp32")
    if fp32 is None:
        raise OptimizeError(
            f"{artifact} has no fp32 variant to optimize (variants: {sorted(manifest.get('variants', {}))}). "
            "Re-export the artifact with `attn-export export`."
        )
    source = artifact / fp32["model_file"]

    # Scratch files go to the system temp dir, not next to the artifact, because a run killed
    # with SIGKILL cannot delete them and would leave them in the user's artifact folder.
    with tempfile.TemporaryDirectory(prefix="attn-optimize-") as scratch:
        candidate_path = Path(scratch) / MODEL_FILE
        if progress:
            progress("optimize graph")
        graph_report = optimize_onnx_file(source, candidate_path, attention_rewrites, ort_fusions)

        model, spec = load_reference(artifact, manifest)
        tolerances = manifest.get("tolerances", {})
        requests = requests_for_artifact(manifest, max_users=max_requests)
        candidate = onnx_runner(make_session(candidate_path), spec.output_names[0])
        if progress:
            progress("parity against PyTorch")
        against_pytorch = verify_onnx(torch_runner(model, spec), candidate, spec, variant=VARIANT_NAME,
                                      requests=requests, atol=tolerances.get("atol"), rtol=tolerances.get("rtol"))
        if progress:
            progress("parity against the fp32 ONNX graph")
        fp32_runner = onnx_runner(make_session(source), spec.output_names[0])
        against_fp32 = verify_onnx(fp32_runner, candidate, spec, variant=f"{VARIANT_NAME}_vs_fp32_onnx",
                                   requests=requests, atol=FP32_ONNX_ATOL, rtol=FP32_ONNX_RTOL)
        passed = against_pytorch.passed and against_fp32.passed

        with update_artifact(artifact) as (staging, updated):
            (staging / MODEL_FILE).write_bytes(candidate_path.read_bytes())
            parity = {
                "variant": VARIANT_NAME,
                "passed": passed,
                "against_pytorch": against_pytorch.to_dict(),
                "against_fp32_onnx": against_fp32.to_dict(),
                "optimization": graph_report,
            }
            (staging / PARITY_FILE).write_text(json.dumps(parity, indent=2) + "\n")
            current_default = updated.get("default_variant")
            current_passed = updated.get("variants", {}).get(current_default, {}).get("passed", False)
            make_default = passed and (current_default in _REPLACEABLE_DEFAULTS or not current_passed)
            add_variant(
                updated, VARIANT_NAME, MODEL_FILE, passed,
                "fp32 graph after onnxscript, attention rewrites and onnxruntime offline optimization",
                gate=_gate(against_pytorch, against_fp32, graph_report), extra_files=[PARITY_FILE],
                make_default=make_default,
            )
            default_variant = updated.get("default_variant")

    result = OptimizeResult(artifact, graph_report, against_pytorch, against_fp32, make_default, default_variant)
    logger.info("Optimized variant of %s: %s, default %s", artifact, "pass" if passed else "FAIL", default_variant)
    return result


def _gate(against_pytorch: ParityReport, against_fp32: ParityReport, graph_report: dict[str, Any]) -> dict[str, Any]:
    heldout = next((r for r in against_pytorch.rankings if r.case == "heldout"), None)
    return {
        "kind": "fp32_parity",
        "passed": against_pytorch.passed and against_fp32.passed,
        "report": PARITY_FILE,
        "max_abs_diff": against_pytorch.max_abs_diff,
        "atol": against_pytorch.outputs[0].atol if against_pytorch.outputs else None,
        "top_10_identical": all(r.top_k_identical for r in against_pytorch.rankings),
        "heldout_auc": heldout.reference_auc if heldout else None,
        "heldout_auc_drop": heldout.auc_drop if heldout else None,
        "fp32_onnx_max_abs_diff": against_fp32.max_abs_diff,
        "fp32_onnx_atol": FP32_ONNX_ATOL,
        "fp32_onnx_rtol": FP32_ONNX_RTOL,
        "failures": [f"vs PyTorch: {f}" for f in against_pytorch.failures]
        + [f"vs fp32 ONNX: {f}" for f in against_fp32.failures],
        "optimization": {key: graph_report[key] for key in (
            "nodes_before", "nodes_after", "op_counts_before", "op_counts_after", "attention_rewrites",
            "ort_fusions", "onnxruntime_level", "embedding_gathers", "bytes_before", "bytes_after")},
    }
