"""Quantize an artifact: build each scheme's variant, gate it, time it, and record it.

Every variant is written into the artifact with `update_artifact` in one atomic swap: the
model file `model_<variant>.onnx`, its gate report `parity_<variant>.json`, and a manifest
entry whose `gate` contains metrics, thresholds, verdict and the nodes kept in fp32.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx

from ..artifact import add_variant, read_manifest, update_artifact
from ..errors import QuantizeError
from ..gate import GateReference, GateResult, GateThresholds, gate_variant
from ..sources import load_reference, requests_for_artifact
from ..verify import make_session, onnx_runner, property_checks, torch_runner
from .calibration import calibration_feeds
from .prepare import prepare_for_quantization
from .schemes import SCHEME_NAMES, make_scheme
from .timing import median_latencies_ms, representative_request

__all__ = ["QuantizeOptions", "VariantOutcome", "QuantizeSummary", "quantize_artifact", "choose_default",
           "AUTO_SCHEMES", "DEFAULT_MARGIN"]

logger = logging.getLogger(__name__)

# Schemes `--auto` tries; int8_static_entropy is left out because its calibration is slow.
AUTO_SCHEMES = ("int8_dynamic", "int8_rows", "fp16_tables", "int8_dynamic_rows", "int8_static", "int8_static_percentile")
Progress = Callable[[str], None]
# Under --auto a variant replaces the current default only when its median latency is at least
# this fraction lower, because smaller differences are within the run-to-run timing noise.
DEFAULT_MARGIN = 0.02


@dataclass
class QuantizeOptions:
    """Settings of one quantize run.

    schemes: scheme names (see SCHEME_NAMES). auto: make the fastest passing variant the default.
    gate_users / calibration_users: held-out users of the test split (gate) and the validation
      split (calibration and sensitivity ranking). bench_runs: session.run calls per variant.
    timer: "subprocess" times each variant in its own process (attn_export.bench.measure_variant);
      "inprocess" times ORT sessions in this process (faster, for tests).
    static_options: extra StaticInt8 settings (quantize_masking_path, check_ranges, range_overrides).
    """

    schemes: Sequence[str] = AUTO_SCHEMES
    auto: bool = False
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    gate_users: int = 256
    calibration_users: int = 128
    calibration_batch: int = 16
    exclude_on_failure: bool = True
    bench_runs: int = 300
    bench_threads: int = 1
    timer: str = "subprocess"
    make_default: str | None = None
    static_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class VariantOutcome:
    """One built (or rejected) variant: files, sizes, latency and gate verdict."""

    name: str
    description: str
    passed: bool
    model_file: str | None
    size_bytes: int | None
    size_ratio: float | None
    p50_ms: float | None
    gate: GateResult | None
    options: dict[str, Any]
    error: str | None = None

    def manifest_gate(self, report_file: str) -> dict[str, Any]:
        data = self.gate.to_dict() if self.gate else {"kind": "accuracy_gate", "passed": False}
        data.pop("sensitivity", None)
        data.update(report=report_file, size_bytes=self.size_bytes, size_ratio_to_fp32=self.size_ratio,
                    p50_ms=self.p50_ms, scheme=self.options)
        return data


@dataclass
class QuantizeSummary:
    """Result of `quantize_artifact`.

    reference_variant / reference_p50_ms: the artifact's default before this run and its median
      latency in ms (None when it was not timed).
    default_variant: the new default, or None when the default is unchanged.
    default_reason: why the default changed or stayed, as a sentence for people.
    """

    artifact: Path
    fp32_size_bytes: int
    fp32_p50_ms: float | None
    reference_variant: str
    reference_p50_ms: float | None
    variants: list[VariantOutcome]
    default_variant: str | None
    default_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact),
            "fp32_size_bytes": self.fp32_size_bytes,
            "fp32_p50_ms": self.fp32_p50_ms,
            "default_variant": self.default_variant,
            "previous_default_variant": self.reference_variant,
            "previous_default_p50_ms": self.reference_p50_ms,
            "default_reason": self.default_reason,
            "variants": [
                {"name": v.name, "passed": v.passed, "model_file": v.model_file, "size_bytes": v.size_bytes,
                 "size_ratio_to_fp32": v.size_ratio, "p50_ms": v.p50_ms, "error": v.error,
                 "gate": v.gate.to_dict() if v.gate else None}
                for v in self.variants
            ],
        }


def _check_schemes(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in SCHEME_NAMES]
    if unknown or not names:
        raise QuantizeError(f"Unknown or missing scheme names {unknown or list(names)}; "
                            f"expected one or more of {', '.join(SCHEME_NAMES)}.")


def quantize_artifact(artifact: str | Path, options: QuantizeOptions | None = None,
                      progress: Progress | None = None) -> QuantizeSummary:
    """Build, gate, time and record every requested scheme's variant in `artifact`.

    With one scheme, its QuantizeError (for example a rejected calibration range) is raised;
    with several, a failing scheme is reported in the summary and the others go on.
    Raises QuantizeError when the artifact has no held-out requests to gate on.
    """
    options = options or QuantizeOptions()
    _check_schemes(options.schemes)
    artifact = Path(artifact).resolve()
    manifest = read_manifest(artifact)
    fp32_file = manifest["variants"]["fp32"]["model_file"]
    fp32_path = artifact / fp32_file
    gate_requests = requests_for_artifact(manifest, split="test", max_users=options.gate_users)
    calibration = requests_for_artifact(manifest, split="validation", max_users=options.calibration_users)
    if gate_requests is None or calibration is None:
        raise QuantizeError(
            f"{artifact} records no data source for held-out requests (a custom model?), so the "
            "accuracy gate cannot run. Export a built-in ranker with --data to quantize it."
        )
    feeds = calibration_feeds(calibration, options.calibration_batch)
    model, spec = load_reference(artifact, manifest)
    output_name = manifest["outputs"][0]["name"]

    with tempfile.TemporaryDirectory(prefix="attn-quantize-") as scratch:
        workdir = Path(scratch)
        if progress:
            progress("pre-processing (ORT shape inference)")
        prepared = prepare_for_quantization(fp32_path, workdir / "prepared.onnx")
        prepared_model = onnx.load(str(prepared))
        reference = GateReference.from_fp32(fp32_path, gate_requests, feeds, output_name,
                                             pytorch_runner=torch_runner(model, spec))
        outcomes = []
        for name in options.schemes:
            if progress:
                progress(f"{name}: build and gate")
            outcomes.append(_build_one(name, prepared, prepared_model, feeds, reference, options, workdir,
                                       fp32_path.stat().st_size, raise_errors=len(options.schemes) == 1,
                                       spec=spec))
        _record(artifact, workdir, outcomes)
    current_default = manifest.get("default_variant") or "fp32"
    timed = ["fp32", *([current_default] if current_default != "fp32" else []),
             *(o.name for o in outcomes if o.model_file and o.name != current_default)]
    if progress:
        progress("timing (batch 1, seq_len 50, 100 candidates, 1 thread)")
    latencies = _time_variants(artifact, timed, gate_requests, options)
    for outcome in outcomes:
        outcome.p50_ms = latencies.get(outcome.name)
    default, reason = choose_default(options, outcomes, manifest, latencies, current_default)
    if default is None:
        logger.info("Default variant of %s unchanged (%s): %s", artifact, current_default, reason)
    _record_timing(artifact, outcomes, default)
    return QuantizeSummary(artifact, fp32_path.stat().st_size, latencies.get("fp32"), current_default,
                           latencies.get(current_default), outcomes, default, reason)


def _build_one(name, prepared, prepared_model, feeds, reference, options, workdir, fp32_bytes, raise_errors,
               spec=None) -> VariantOutcome:
    scheme = make_scheme(name, feeds, **(options.static_options if name.startswith("int8_static") else {}))
    model_file = f"model_{name}.onnx"
    target = workdir / model_file
    try:
        scheme.prepare(prepared, workdir)
        def build(path: Path, exclude: Sequence[str], only: Sequence[str] | None) -> None:
            scheme.build(prepared, path, exclude, only)

        result = gate_variant(name, build, scheme.candidate_nodes(prepared_model), reference, target,
                              options.thresholds, scheme.default_exclusions, options.exclude_on_failure)
    except QuantizeError as exc:
        if raise_errors:
            raise
        logger.error("Scheme %s failed: %s", name, exc)
        return VariantOutcome(name, scheme.description, False, None, None, None, None, None, scheme.options(), str(exc))
    if result.passed and spec is not None and spec.is_id_level:
        _check_contract(name, target, spec, result, reference.output_name)
    size = target.stat().st_size
    return VariantOutcome(name, scheme.description, result.passed, model_file, size, size / fp32_bytes, None,
                          result, scheme.options())


def _check_contract(name: str, path: Path, spec, result, output_name: str) -> None:
    """Fail a gated variant whose scores depend on padding, padded-slot ids or other batch rows.

    Dynamic int8 computes activation ranges per call over the whole batch, so a row's scores can
    change with the rows next to it. The ranking gate cannot see that; these checks can.
    """
    records = property_checks(onnx_runner(make_session(path), output_name), spec, np.random.default_rng(0))
    broken = [r for r in records if not r.passed]
    for record in broken:
        result.failures.append(
            f"contract property {record.name} broken: scores changed by {record.max_abs_diff:.3g} "
            f"(allowed {record.atol:g})"
        )
    if broken:
        result.passed = False
        logger.info("%s passed the ranking gate but breaks %s; recorded as failed",
                       name, ", ".join(r.name for r in broken))


def choose_default(
    options: QuantizeOptions,
    outcomes: Sequence[VariantOutcome],
    manifest: dict[str, Any],
    latencies: dict[str, float],
    current_default: str,
) -> tuple[str | None, str]:
    """Pick the artifact's new default variant and return (new default, reason for people).

    The new default is None when the default stays unchanged. --make-default wins if that variant
    passed, else QuantizeError. With --auto, the fastest passing variant by median latency (ms)
    replaces the current default only when it is at least DEFAULT_MARGIN faster. The current
    default competes too while it is timed and recorded as passed, and a rebuilt default competes
    with its new outcome.
    """
    if options.make_default:
        chosen = next((o for o in outcomes if o.name == options.make_default), None)
        if chosen is None or not chosen.passed:
            raise QuantizeError(f"--make-default {options.make_default}: that variant was not built or did not "
                                "pass the gate. The variants were recorded; the default variant is unchanged.")
        return chosen.name, f"{chosen.name} was requested with --make-default and passed the gate"
    if not options.auto:
        return None, "neither --auto nor --make-default was given"

    contenders = {o.name: o.p50_ms for o in outcomes if o.passed and o.p50_ms is not None}
    rebuilt = {o.name for o in outcomes}
    if (current_default not in rebuilt and manifest["variants"].get(current_default, {}).get("passed")
            and current_default in latencies):
        contenders[current_default] = latencies[current_default]
    if not contenders:
        return None, "no variant passed the gate and was timed"
    if list(contenders) == [current_default]:
        return None, f"no variant other than the current default {current_default} passed the gate"

    fastest = min(contenders, key=contenders.get)
    if current_default not in contenders:
        return fastest, (f"{fastest} is the fastest variant that passed the gate (p50 {contenders[fastest]:.3f} ms), "
                         f"and the current default {current_default} was not timed or did not pass")
    current_ms = contenders[current_default]
    if contenders[fastest] > current_ms * (1 - DEFAULT_MARGIN):
        return None, (f"no passing variant was at least {DEFAULT_MARGIN:.0%} faster than the current default "
                      f"{current_default} (p50 {current_ms:.3f} ms)")
    return fastest, (f"{fastest} (p50 {contenders[fastest]:.3f} ms) is at least {DEFAULT_MARGIN:.0%} faster "
                     f"than the current default {current_default} (p50 {current_ms:.3f} ms)")


def _time_variants(artifact: Path, names: list[str], gate_requests, options: QuantizeOptions) -> dict[str, float]:
    """Median latency per variant: each in its own subprocess via attn_export.bench, or in-process."""
    if options.timer == "subprocess":
        from ..bench import measure_variant

        return {name: float(measure_variant(artifact, name, runs=options.bench_runs,
                                            threads=options.bench_threads)["p50_ms"]) for name in names}
    manifest = read_manifest(artifact)
    models = {name: artifact / manifest["variants"][name]["model_file"] for name in names}
    return median_latencies_ms(models, representative_request(gate_requests), runs=options.bench_runs,
                               threads=options.bench_threads)


def _record_timing(artifact: Path, outcomes: list[VariantOutcome], default: str | None) -> None:
    with update_artifact(artifact) as (_, manifest):
        for outcome in outcomes:
            if outcome.model_file and outcome.p50_ms is not None:
                manifest["variants"][outcome.name]["gate"]["p50_ms"] = outcome.p50_ms
        if default is not None:
            manifest["default_variant"] = default
    if default is not None:
        logger.info("Default variant of %s is now %s", artifact, default)


def _record(artifact: Path, workdir: Path, outcomes: list[VariantOutcome]) -> None:
    built = [o for o in outcomes if o.model_file]
    if not built:
        return
    with update_artifact(artifact) as (staging, manifest):
        for outcome in built:
            report_file = f"parity_{outcome.name}.json"
            shutil.copyfile(workdir / outcome.model_file, staging / outcome.model_file)
            (staging / report_file).write_text(json.dumps(outcome.gate.to_dict(), indent=2) + "\n")
            add_variant(manifest, outcome.name, outcome.model_file, outcome.passed, outcome.description,
                        gate=outcome.manifest_gate(report_file), extra_files=[report_file])
