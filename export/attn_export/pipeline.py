"""The export pipeline: PyTorch model -> ONNX -> parity -> artifact directory, atomically."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch

from attn_models import TargetAttentionRanker, save_checkpoint
from attn_models.data import RankingRequests, SequenceDataset

from .artifact import add_variant, check_checksums, read_manifest, staged_artifact, update_artifact, write_manifest
from .errors import ExportError, UsageError, VerifyError
from .exporter import DEFAULT_OPSET, export_onnx
from .manifest import new_manifest
from .sources import REFERENCE_CHECKPOINT, DataSource, load_reference, requests_for_artifact, spec_for_ranker
from .spec import ExportSpec
from .verify import ParityReport, make_session, onnx_runner, property_checks, torch_runner, verify_onnx

__all__ = ["ExportResult", "export_artifact", "export_ranker", "verify_artifact", "PARITY_FILE"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
PARITY_FILE = "parity.json"
Progress = Callable[[str], None]


@dataclass
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    report: ParityReport


def export_artifact(
    model: torch.nn.Module,
    spec: ExportSpec,
    target: str | Path,
    source: dict[str, Any],
    data: DataSource | None = None,
    requests: RankingRequests | None = None,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    progress: Progress | None = None,
    reference_files: Callable[[Path], None] | None = None,
) -> ExportResult:
    """Export, check and verify `model`, then move the artifact into `target`.

    Nothing at `target` changes unless every step succeeds. Raises ExportError when the export
    or its checks fail and VerifyError when fp32 parity fails.
    """
    target = Path(target)
    model = model.eval()
    with staged_artifact(target, force=force) as staging:
        if progress:
            progress("export to ONNX")
        export_onnx(model, spec, staging / MODEL_FILE, opset=opset)
        try:
            onnx.shape_inference.infer_shapes_path(str(staging / MODEL_FILE), strict_mode=True)
        except Exception as exc:  # onnx raises InferenceError and a few others here
            raise ExportError(f"ONNX shape inference failed on the exported graph: {exc}") from exc
        if reference_files is not None:
            reference_files(staging)

        report = verify_onnx(
            torch_runner(model, spec),
            onnx_runner(make_session(staging / MODEL_FILE), spec.output_names[0]),
            spec,
            variant="fp32",
            requests=requests,
            progress=progress,
        )
        (staging / PARITY_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        if not report.passed:
            raise VerifyError(
                "fp32 parity failed; the artifact was not written:\n  - " + "\n  - ".join(report.failures)
            )
        kind = "target_attention_ranker" if isinstance(model, TargetAttentionRanker) else "custom"
        config = model.config.to_dict() if isinstance(model, TargetAttentionRanker) else None
        manifest = new_manifest(spec, kind, config, opset, source, data.to_dict() if data else None)
        add_variant(manifest, "fp32", MODEL_FILE, report.passed, "fp32 export, unoptimized",
                    gate=_gate_summary(report, PARITY_FILE), extra_files=[PARITY_FILE], make_default=True)
        write_manifest(staging, manifest)
    return ExportResult(target, manifest, report)


def export_ranker(
    model: TargetAttentionRanker,
    target: str | Path,
    data: DataSource | None,
    requests: RankingRequests | None = None,
    force: bool = False,
    progress: Progress | None = None,
    opset: int = DEFAULT_OPSET,
    max_requests: int = 256,
    dataset: SequenceDataset | None = None,
) -> ExportResult:
    """Export a built-in ranker; the checkpoint travels inside the artifact for later checks.

    `dataset` is `data` already loaded, so it is not read twice.
    """
    spec = spec_for_ranker(model)
    if requests is None and data is not None:
        manifest_stub = {"data": data.to_dict(), "model": {"kind": "target_attention_ranker"},
                         "max_seq_len": model.config.max_seq_len}
        requests = requests_for_artifact(manifest_stub, max_users=max_requests, dataset=dataset)

    def write_reference(staging: Path) -> None:
        save_checkpoint(staging / REFERENCE_CHECKPOINT, model)

    return export_artifact(
        model, spec, target, {"kind": "builtin", "checkpoint": REFERENCE_CHECKPOINT}, data=data,
        requests=requests, opset=opset, force=force, progress=progress, reference_files=write_reference,
    )


def verify_artifact(
    artifact: str | Path,
    variant: str = "fp32",
    max_requests: int = 256,
    progress: Progress | None = None,
) -> ParityReport:
    """Re-run parity of one variant against the PyTorch original and record it in the artifact."""
    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    check_checksums(artifact, manifest)
    if variant not in manifest["variants"]:
        raise UsageError(f"Variant {variant!r} is not in {artifact}; available: {sorted(manifest['variants'])}.")
    model, spec = load_reference(artifact, manifest)
    tolerances = manifest.get("tolerances", {})
    requests = requests_for_artifact(manifest, max_users=max_requests)
    session = make_session(artifact / manifest["variants"][variant]["model_file"])
    report = verify_onnx(torch_runner(model, spec), onnx_runner(session, spec.output_names[0]), spec,
                         variant=variant, requests=requests, atol=tolerances.get("atol"),
                         rtol=tolerances.get("rtol"), progress=progress)
    if variant == "fp32":
        with update_artifact(artifact) as (staging, updated):
            (staging / PARITY_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
            updated["variants"]["fp32"]["passed"] = report.passed
            updated["variants"]["fp32"]["gate"] = _gate_summary(report, PARITY_FILE)
    return report


def is_gated_variant(manifest: dict[str, Any], variant: str) -> bool:
    """True for variants judged by the ranking gate (quantized ones), not by fp32 tolerances."""
    return "thresholds" in manifest["variants"][variant].get("gate", {})


def verify_gated_variant(artifact: str | Path, variant: str, max_requests: int = 256) -> dict[str, Any]:
    """Re-run a quantized variant's accuracy gate against the fp32 graph on held-out requests.

    Returns the gate metrics, the thresholds recorded in the manifest, and the failures.
    """
    from .gate import GateThresholds, check_gate, score_requests

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    check_checksums(artifact, manifest)
    recorded = manifest["variants"][variant]["gate"]["thresholds"]
    thresholds = GateThresholds(**{k: v for k, v in recorded.items() if k in GateThresholds.__dataclass_fields__})
    requests = requests_for_artifact(manifest, max_users=max_requests)
    if requests is None:
        raise VerifyError(f"Artifact {artifact} records no data source, so the gate of {variant!r} cannot be rerun.")
    output = manifest["outputs"][0]["name"]
    reference = score_requests(onnx_runner(make_session(artifact / manifest["variants"]["fp32"]["model_file"]), output), requests)
    candidate = score_requests(onnx_runner(make_session(artifact / manifest["variants"][variant]["model_file"]), output), requests)
    record, failures = check_gate(reference, candidate, requests.labels, thresholds)
    _, spec = load_reference(artifact, manifest)
    if spec.is_id_level:
        session = make_session(artifact / manifest["variants"][variant]["model_file"])
        for check in property_checks(onnx_runner(session, output), spec, np.random.default_rng(0)):
            if not check.passed:
                failures.append(f"contract property {check.name} broken: scores changed by {check.max_abs_diff:.3g}")
    return {"variant": variant, "passed": not failures, "metrics": record.to_dict(),
            "thresholds": recorded, "failures": failures}


def _gate_summary(report: ParityReport, report_file: str) -> dict[str, Any]:
    heldout = next((r for r in report.rankings if r.case == "heldout"), None)
    return {
        "kind": "fp32_parity",
        "passed": report.passed,
        "report": report_file,
        "max_abs_diff": report.max_abs_diff,
        "atol": report.outputs[0].atol if report.outputs else None,
        "top_10_identical": all(r.top_k_identical for r in report.rankings),
        "heldout_auc": heldout.reference_auc if heldout else None,
        "heldout_auc_drop": heldout.auc_drop if heldout else None,
        "failures": report.failures,
    }
