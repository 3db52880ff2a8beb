"""The `attn-export` command line: train, export, verify, inspect and the `build` main job.

Heavy imports (torch, onnx) happen inside the commands so `attn-export --help` starts fast.
Every failure is an AttnExportError subclass. `_run` prints it to stderr and exits with the
stage's exit code: 2 usage, 3 load model, 4 export, 5 verify, 6 artifact, 7 optimize,
8 quantize, 9 bench.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from .errors import AttnExportError

__all__ = ["app"]

app = typer.Typer(
    name="attn-export",
    help="Export target-attention rankers from PyTorch to verified ONNX artifacts for CPU serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Without a terminal (pipes, CI logs) rich falls back to 80 columns and truncates table cells.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
logger = logging.getLogger(__name__)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log pipeline steps at INFO level to stderr.")] = False,
) -> None:
    """Export target-attention rankers from PyTorch to verified ONNX artifacts for CPU serving."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if not sys.stdout.isatty():
        # Without a terminal rich uses 80 columns and cuts table cells. It reads COLUMNS when a
        # Console is created, so setting it here widens every command's console.
        os.environ.setdefault("COLUMNS", "140")


def _run(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn pipeline exceptions into a one-paragraph stderr message and the stage's exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AttnExportError as exc:
            err_console.print(f"[bold red]error[/] ({exc.stage}): {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from exc

    return wrapper


DataOption = Annotated[
    Optional[Path],
    typer.Option("--data", help="MovieLens ml-latest-small directory (with ratings.csv). Default: the embedded synthetic data."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout instead of tables.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing artifact directory (atomically).")]


@app.command()
@_run
def train(
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Checkpoint file to write. Default: runs/<data>/checkpoint.pt.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs over the training examples.")] = 6,
    batch_size: Annotated[int, typer.Option(min=1, help="Training examples per optimizer step.")] = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-2,
    embed_dim: Annotated[int, typer.Option(min=1, help="Item embedding width.")] = 32,
    attention: Annotated[str, typer.Option(help="Attention kind: dot, projected, multihead or din.")] = "multihead",
    heads: Annotated[int, typer.Option(min=1, help="Attention heads (multihead only).")] = 2,
    positional: Annotated[str, typer.Option(help="Positional encoding: none, learned or sinusoidal.")] = "sinusoidal",
    self_attention_blocks: Annotated[int, typer.Option(min=0, help="Self-attention blocks over the history before the target attention.")] = 0,
    head: Annotated[str, typer.Option(help="Scoring head: mlp ([u; e_c] -> MLP) or dot (u . e_c).")] = "mlp",
    max_seq_len: Annotated[int, typer.Option(min=1, help="Most recent history items kept per training example.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed for data sampling and weight initialization.")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads used for training.")] = 2,
    as_json: JsonOption = False,
) -> None:
    """Train a target-attention ranker and report held-out AUC and GAUC against popularity."""
    from .commands_core import model_config_from_options, train_and_save

    config_fields = dict(embed_dim=embed_dim, attention=attention, num_heads=heads, positional=positional,
                         self_attention_blocks=self_attention_blocks, head=head)
    result = train_and_save(data, out, model_config_from_options(**config_fields),
                            dict(epochs=epochs, batch_size=batch_size, lr=lr, max_seq_len=max_seq_len,
                                 seed=seed, threads=threads), console=None if as_json else console)
    if as_json:
        typer.echo(json.dumps(result, indent=2))


@app.command("export")
@_run
def export_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact directory to write.")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint of a built-in ranker (from `attn-export train`).")] = None,
    factory: Annotated[Optional[str], typer.Option(help="Custom model as 'package.module:factory' returning (module, ExportSpec).")] = None,
    data: DataOption = None,
    opset: Annotated[int, typer.Option(help="ONNX opset of the exported graph.")] = 18,
    max_requests: Annotated[int, typer.Option(min=1, help="Held-out users used for the parity check.")] = 256,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Export a model to an ONNX artifact directory and check parity against PyTorch."""
    from .commands_core import export_model, render_export

    result = export_model(out, checkpoint, factory, data, opset, max_requests, force, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        render_export(console, result)


@app.command()
@_run
def verify(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory.")],
    variant: Annotated[str, typer.Option(help="Variant to check against the PyTorch original.")] = "fp32",
    max_requests: Annotated[int, typer.Option(min=1, help="Held-out users used for the parity check.")] = 256,
    as_json: JsonOption = False,
) -> None:
    """Re-run the check of an artifact variant; exit code 5 when it fails.

    fp32 and optimized variants are compared with the PyTorch original at fp32 tolerances.
    Quantized variants rerun their gate against the fp32 graph. AUC drop, top-10 overlap and
    Kendall tau must stay within the thresholds recorded in the manifest. Padding, ids in padded
    slots and the other rows of a batch must not change a row's scores.
    """
    from .artifact import read_manifest
    from .commands_core import render_gate, render_parity
    from .errors import UsageError, VerifyError
    from .pipeline import is_gated_variant, verify_artifact, verify_gated_variant

    manifest = read_manifest(artifact)
    if variant not in manifest["variants"]:
        raise UsageError(f"Variant {variant!r} is not in {artifact}; available: {sorted(manifest['variants'])}.")
    if is_gated_variant(manifest, variant):
        gate = verify_gated_variant(artifact, variant, max_requests=max_requests)
        if as_json:
            typer.echo(json.dumps(gate, indent=2))
        else:
            render_gate(console, gate)
        if not gate["passed"]:
            raise VerifyError(
                f"Gate of variant {variant!r} failed: " + "; ".join(gate["failures"])
                + ". Do not serve this variant; pick one that passes (see `attn-export inspect`)."
            )
        return

    report = verify_artifact(artifact, variant=variant, max_requests=max_requests)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        render_parity(console, report)
    if not report.passed:
        raise VerifyError(f"Parity of variant {variant!r} failed: " + "; ".join(report.failures))


@app.command()
@_run
def inspect(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory.")],
    as_json: JsonOption = False,
) -> None:
    """Show an artifact's inputs, outputs, axes, opset, sizes, versions and parity summary.

    Also checks every file against its sha256 in the manifest; exit code 6 when one is missing
    or differs (the tables are still shown).
    """
    from .artifact import check_checksums, read_manifest
    from .commands_core import render_manifest

    manifest = read_manifest(artifact)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
    else:
        render_manifest(console, artifact, manifest)
    check_checksums(artifact, manifest)
    if not as_json:
        console.print(f"files: all {len(manifest['files'])} match their sha256 in the manifest")


@app.command()
@_run
def build(
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Artifact directory. Default: artifacts/default, or artifacts/movielens with --data.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs when a model has to be trained.")] = 6,
    retrain: Annotated[bool, typer.Option(help="Train even if a checkpoint for this data and config exists.")] = False,
    threads: Annotated[int, typer.Option(min=1, help="torch threads for training.")] = 2,
    force: Annotated[bool, typer.Option("--force", help="Replace --out even if it is not an attn-export artifact. An existing artifact is always replaced.")] = False,
    optimize: Annotated[bool, typer.Option(help="Add the graph-optimized fp32 variant (as `attn-export optimize`).")] = True,
    quantize: Annotated[bool, typer.Option(help="Add quantized variants and keep the fastest that passes the accuracy gate (as `attn-export quantize --auto`).")] = True,
    as_json: JsonOption = False,
) -> None:
    """The main job: train (or reuse) the default ranker, export, verify, optimize, quantize.

    The checkpoint is kept under ./runs/ (relative to the current directory) and reused by later
    runs with the same data and settings. An existing artifact at --out is replaced only when the
    run succeeds. A directory that is not an artifact is left alone unless --force is given.
    """
    from .commands_core import build_main

    result = build_main(data, out, epochs, retrain, threads, console=None if as_json else console,
                        optimize=optimize, quantize=quantize, force=force)
    if as_json:
        typer.echo(json.dumps(result, indent=2))


# --- commands from other modules (one registration line each)
from .cli_bench import bench_command  # noqa: E402

app.command("bench")(_run(bench_command))
from .cli_optimize import optimize_command  # noqa: E402

app.command("optimize")(_run(optimize_command))
from .cli_quantize import quantize_command  # noqa: E402

app.command("quantize")(_run(quantize_command))
