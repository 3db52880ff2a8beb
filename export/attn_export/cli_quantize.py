"""The `attn-export quantize` command: build quantized variants, gate them, pick a default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["quantize_command"]


def quantize_command(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory to add variants to.")],
    scheme: Annotated[Optional[list[str]], typer.Option(
        "--scheme", "-s",
        help="Scheme to run; repeat for several. One of int8_dynamic, int8_rows, fp16_tables, int8_dynamic_rows, "
             "int8_static (MinMax), int8_static_percentile, int8_static_entropy. Default: all but int8_static_entropy.")] = None,
    auto: Annotated[bool, typer.Option(
        "--auto", help="Make the fastest variant that passes the gate the artifact's default variant.")] = False,
    make_default: Annotated[Optional[str], typer.Option(
        help="Make this variant the default if it passes the gate.")] = None,
    gate_users: Annotated[int, typer.Option(min=1, help="Held-out test users the gate scores (one request each).")] = 256,
    calibration_users: Annotated[int, typer.Option(
        min=1, help="Validation users whose requests calibrate static schemes and rank node sensitivity.")] = 128,
    max_auc_drop: Annotated[float, typer.Option(help="Largest allowed AUC drop against fp32 ONNX (AUC units).")] = 0.002,
    min_overlap: Annotated[float, typer.Option(help="Smallest allowed mean top-10 overlap with fp32 (fraction, 0-1).")] = 0.95,
    min_tau: Annotated[float, typer.Option(help="Smallest allowed mean Kendall tau against fp32 (-1 to 1).")] = 0.95,
    no_exclusion: Annotated[bool, typer.Option(
        "--no-exclusion", help="Record a failing variant as failed instead of keeping sensitive nodes fp32.")] = False,
    bench_runs: Annotated[int, typer.Option(min=10, help="session.run calls per variant for the median latency.")] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout instead of a table.")] = False,
) -> None:
    """Quantize an artifact's fp32 model, gate each variant against fp32 on held-out requests, record it.

    Latency is the median over --bench-runs calls at batch 1, seq_len 50, 100 candidates, 1 thread.
    Exits with code 8 when a named scheme fails or --make-default names a variant that failed.
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from .gate import GateThresholds
    from .quantize import AUTO_SCHEMES, QuantizeOptions, quantize_artifact

    console = Console(stderr=as_json)
    options = QuantizeOptions(
        schemes=tuple(scheme) if scheme else AUTO_SCHEMES,
        auto=auto,
        thresholds=GateThresholds(max_auc_drop=max_auc_drop, min_top_k_overlap=min_overlap, min_kendall_tau=min_tau),
        gate_users=gate_users,
        calibration_users=calibration_users,
        exclude_on_failure=not no_exclusion,
        bench_runs=bench_runs,
        make_default=make_default,
    )
    with console.status("quantizing") as status:
        summary = quantize_artifact(artifact, options, progress=lambda step: status.update(step))
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return

    table = Table(title=f"Quantized variants of {artifact}")
    for column in ("variant", "size", "p50 latency", "AUC", "AUC drop", "top-10 overlap", "tau", "fp32 nodes", "gate"):
        table.add_column(column, justify="left" if column in ("variant", "gate") else "right",
                         no_wrap=column == "variant")
    table.add_row("fp32", _megabytes(summary.fp32_size_bytes), _ms(summary.fp32_p50_ms), "", "", "", "", "", "reference")
    rebuilt = {outcome.name for outcome in summary.variants}
    if summary.reference_variant not in ("fp32", *rebuilt) and summary.reference_p50_ms is not None:
        table.add_row(summary.reference_variant, "", _ms(summary.reference_p50_ms), "", "", "", "", "",
                      "current default")
    for outcome in summary.variants:
        if outcome.gate is None:
            table.add_row(outcome.name, "", "", "", "", "", "", "", f"[red]error[/]: {outcome.error}")
            continue
        metrics = outcome.gate.to_dict()["metrics"]
        table.add_row(
            outcome.name,
            f"{_megabytes(outcome.size_bytes)} ({outcome.size_ratio:.2f}x)",
            _ms(outcome.p50_ms),
            f"{metrics['candidate_auc']:.4f}",
            f"{metrics['auc_drop']:+.5f}",
            f"{metrics['mean_top_k_overlap']:.4f}",
            f"{metrics['mean_kendall_tau']:.4f}",
            str(len(outcome.gate.excluded)),
            "[green]pass[/]" if outcome.passed else "[red]FAIL[/]: " + "; ".join(outcome.gate.failures),
        )
    console.print(table)
    if summary.default_variant:
        console.print(f"Default variant is now [bold]{summary.default_variant}[/]: {summary.default_reason}.")
    else:
        console.print(f"Default variant unchanged ({summary.reference_variant}): {summary.default_reason}.")


def _megabytes(size: int | None) -> str:
    return "" if size is None else f"{size / 1e6:.2f} MB"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f} ms"
