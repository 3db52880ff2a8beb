"""`attn-export optimize ARTIFACT`: add the graph-optimized "optimized" variant to an artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["optimize_command"]


def optimize_command(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory with an fp32 variant.")],
    max_requests: Annotated[int, typer.Option(min=1, help="Held-out users (one request each) used for the parity checks.")] = 256,
    attention_rewrites: Annotated[bool, typer.Option(help="Apply the target-attention rewrites (scale, W_q W_k^T, mask folding).")] = True,
    ort_fusions: Annotated[bool, typer.Option(help="Also apply onnxscript's onnxruntime fusions (MultiHeadAttention); off by default because they measured slower here.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout instead of tables.")] = False,
) -> None:
    """Optimize the fp32 graph, check parity against PyTorch and fp32 ONNX, add variant "optimized".

    The variant becomes the default when it passes, unless a passed quantized default exists.
    Exit code 7 when a pass fails or parity fails (the failed variant is still recorded).
    """
    from .errors import OptimizeError
    from .optimize import optimize_artifact

    console = Console()
    result = optimize_artifact(artifact, max_requests=max_requests, attention_rewrites=attention_rewrites,
                               ort_fusions=ort_fusions, progress=None if as_json else lambda step: console.print(f"[dim]{step}...[/]"))
    if as_json:
        typer.echo(json.dumps({
            "passed": result.passed,
            "default_variant": result.default_variant,
            "optimization": result.graph_report,
            "max_abs_diff_vs_pytorch": result.against_pytorch.max_abs_diff,
            "max_abs_diff_vs_fp32_onnx": result.against_fp32_onnx.max_abs_diff,
            "failures": result.failures,
        }, indent=2))
    else:
        _render(console, result)
    if not result.passed:
        raise OptimizeError("Parity of the optimized variant failed; it is recorded with passed=false and is "
                            "not the default:\n  - " + "\n  - ".join(result.failures))


def _render(console: Console, result) -> None:
    report = result.graph_report
    stages = Table(title="Graph size per stage")
    stages.add_column("stage")
    stages.add_column("nodes", justify="right")
    for stage in report["stages"]:
        stages.add_row(stage["stage"], str(stage["nodes"]))
    console.print(stages)

    ops = Table(title="Op counts")
    ops.add_column("op")
    ops.add_column("before", justify="right")
    ops.add_column("after", justify="right")
    before, after = report["op_counts_before"], report["op_counts_after"]
    for op in sorted(set(before) | set(after)):
        if before.get(op, 0) != after.get(op, 0) or op in ("MatMul", "Softmax", "Where", "Mul"):
            ops.add_row(op, str(before.get(op, 0)), str(after.get(op, 0)))
    console.print(ops)

    applied = Table(title="Rewrites and fusions applied")
    applied.add_column("pass")
    applied.add_column("count", justify="right")
    for name, count in report["attention_rewrites"].items():
        applied.add_row(name, str(count))
    for name, count in report["ort_fusions"].items():
        applied.add_row(f"ort fusion {name}", str(count))
    applied.add_row("onnxruntime offline level", report["onnxruntime_level"])
    console.print(applied)

    console.print(f"file size: {report['bytes_before']:,} B -> {report['bytes_after']:,} B")
    console.print(f"embedding Gathers per table: {report['embedding_gathers']}")
    verdict = "[green]passed[/]" if result.passed else "[red]FAILED[/]"
    console.print(f"parity {verdict}: max abs diff vs PyTorch {result.against_pytorch.max_abs_diff:.3g}, "
                  f"vs fp32 ONNX {result.against_fp32_onnx.max_abs_diff:.3g}")
    console.print(f"default variant: {result.default_variant}")
