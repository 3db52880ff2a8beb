"""`attn-export bench ARTIFACT`: latency of PyTorch eager against every onnxruntime variant.

Registered in cli.py as `app.command("bench")(bench_command)`. Heavy modules load inside the
function; the workers themselves import torch or onnxruntime in their own processes.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["bench_command", "default_out_dir"]

logger = logging.getLogger(__name__)


def default_out_dir(artifact: Path) -> Path:
    """Return bench-out/<artifact name>-<UTC time> under the current directory."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("bench-out") / f"{artifact.resolve().name}-{stamp}"


def _parse_names(option: str, text: str | None, allowed: tuple[str, ...] | None = None) -> list[str] | None:
    from .errors import UsageError

    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(f"{option} is empty; give at least one name, for example {option} fp32.")
    if allowed is not None:
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise UsageError(f"{option} received unknown names {unknown}; choose from {list(allowed)}.")
    return names


_BASELINE_HINT = "Pass a report.json written by `attn-export bench` (it is in that run's --out directory)."


def _check_baseline(path: Path) -> None:
    """Raise UsageError unless `path` is a benchmark report that --compare can use."""
    from .bench.compare import read_baseline
    from .errors import UsageError

    try:
        read_baseline(path)
    except ValueError as exc:
        raise UsageError(f"Invalid --compare file: {exc} {_BASELINE_HINT}") from exc


def _print_tables(report: dict[str, Any], out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from .bench.report import speedup_rows

    console = Console()
    latency = Table(title="p50 latency (ms)")
    for column in ("threads", "batch", "seq_len", "candidates", "engine", "variant", "p50", "p99", "% peak"):
        latency.add_column(column, justify="right", no_wrap=column in ("variant", "p50", "p99"))
    for row in report["results"]:
        pct = f"{row['pct_peak']:.1f}" if row.get("pct_peak") is not None else "-"
        latency.add_row(str(row["threads"]), str(row["batch"]), str(row["seq_len"]), str(row["num_candidates"]),
                        row["engine"], row["variant"], f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}", pct)
    tables = [latency]
    variants, rows = speedup_rows(report)
    if rows and variants:
        speedup = Table(title="Speed-up over PyTorch eager (PyTorch p50 / onnxruntime p50)")
        for column in ("threads", "batch", "seq_len", "candidates"):
            speedup.add_column(column, justify="right")
        for variant in variants:
            speedup.add_column(variant, justify="right", no_wrap=True)
        for row in rows:
            speedup.add_row(*[str(v) for v in row[:4]], *[f"{r:.2f}x" if r is not None else "-" for r in row[5:]])
        tables.append(speedup)
    _widen_for_pipes(console, tables)
    for table in tables:
        console.print(table)
    comparison = report.get("comparison")
    if comparison:
        console.print(f"Compared with {comparison['old_report']}: {comparison['regressions']} of "
                      f"{len(comparison['rows'])} matched points regressed beyond "
                      f"{comparison['threshold'] * 100:.0f} % at p50.")
    console.print(f"Report written to {out_dir}/report.md and report.json")


def _widen_for_pipes(console, tables) -> None:
    """Give a console that writes to a pipe or file the full width of the widest table.

    rich assumes 80 columns when stdout is not a terminal and then shortens cells to "int8_...".
    A terminal keeps its real width. There the no_wrap columns (variant names and latencies)
    shrink only after the other columns have reached their minimum width.
    """
    from rich.measure import Measurement

    if console.is_terminal:
        return
    unbounded = console.options.update_width(10_000)
    widest = max(Measurement.get(console, unbounded, table).maximum for table in tables)
    console.width = max(console.width, widest)


def bench_command(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory to benchmark.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for report.json, report.md and PNG plots. Default: bench-out/<artifact name>-<UTC time> under the current directory.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Time the full grid: batch 1 with seq_len 20, 50, 200, 1000 by 1, 100, 500, 1000 candidates, plus batch 32 with seq_len 50 and 1 candidate. Default: a 5-point quick grid.")] = False,
    seq_len: Annotated[Optional[str], typer.Option("--seq-len", help="History slots per user, comma-separated (e.g. 20,50). Setting any axis times the product of the given axes; unset axes default to batch 1, seq_len 50, 100 candidates.")] = None,
    num_candidates: Annotated[Optional[str], typer.Option("--num-candidates", help="Candidates per user, comma-separated (e.g. 1,100).")] = None,
    batch: Annotated[Optional[str], typer.Option("--batch", help="Users per call, comma-separated (e.g. 1,32).")] = None,
    threads: Annotated[str, typer.Option("--threads", help="Thread budgets, comma-separated; each gets its own worker processes.")] = "1,2",
    engines: Annotated[str, typer.Option("--engines", help="Engines to time, comma-separated: pytorch, onnxruntime.")] = "pytorch,onnxruntime",
    variants: Annotated[Optional[str], typer.Option("--variants", help="Artifact variants timed with onnxruntime, comma-separated. Default: every variant that passed its gate; name a failed one to time it anyway.")] = None,
    min_runs: Annotated[int, typer.Option("--min-runs", min=1, help="Timed calls per point at least, unless --max-seconds runs out first.")] = 200,
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0.0, help="Seconds of timed calls per point at least, for steadier tails on fast points.")] = 1.0,
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=0.001, help="Seconds of timed calls per point at most; fewer than --min-runs calls are then flagged in the report.")] = 10.0,
    warmup_runs: Annotated[int, typer.Option("--warmup-runs", min=0, help="Untimed calls per point before timing.")] = 20,
    spinning: Annotated[bool, typer.Option("--spinning/--no-spinning", help="Let onnxruntime's idle threads busy-wait between operators (lower latency, more CPU). Default: off, as in attn_runtime.")] = False,
    overhead: Annotated[bool, typer.Option("--overhead/--no-overhead", help="Also time attn_runtime's Scorer.score against a bare InferenceSession.run (batch 1, seq_len 20, 1 candidate).")] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated requests; every engine gets the same ones.")] = 0,
    compare: Annotated[Optional[Path], typer.Option("--compare", exists=True, dir_okay=False, help="An earlier report.json; adds new/old latency ratios per matching point.")] = None,
    regression_threshold: Annotated[float, typer.Option("--regression-threshold", min=0.0, help="Fraction by which a p50 may exceed the earlier one before it is flagged (0.10 = 10 %).")] = 0.10,
    fail_on_regression: Annotated[bool, typer.Option("--fail-on-regression", help="Exit with the bench error code (9) when --compare flags a regression.")] = False,
    # typer renders help text as rich markup, so "[plot]" needs a backslash to stay visible.
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots (needs matplotlib: pip install 'attn-export\\[plot]').")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout instead of tables.")] = False,
) -> None:
    """Benchmark latency of PyTorch eager and every onnxruntime variant of ARTIFACT.

    Each engine, variant and thread budget runs in its own process. Writes report.json,
    report.md (machine, versions, thread settings, latency and speed-up tables) and PNG plots.
    """
    from .artifact import read_manifest
    from .bench import BenchOptions, TimingBudget, build_grid, run_benchmark, write_report
    from .artifact import check_checksums
    from .bench.grid import parse_int_list
    from .bench.worker import ENGINES
    from .errors import BenchError, UsageError

    points = build_grid(full=full, batch=parse_int_list("--batch", batch),
                        seq_len=parse_int_list("--seq-len", seq_len),
                        num_candidates=parse_int_list("--num-candidates", num_candidates))
    grid_name = "full" if full else "quick"
    if any(value is not None for value in (batch, seq_len, num_candidates)):
        grid_name = "custom"
    if min_seconds > max_seconds:
        raise UsageError(f"--min-seconds ({min_seconds}) must not exceed --max-seconds ({max_seconds}).")
    manifest = read_manifest(artifact)
    check_checksums(artifact, manifest)
    chosen_variants = _parse_names("--variants", variants, tuple(manifest.get("variants", {})))
    if chosen_variants is None:
        chosen_variants = [name for name, entry in manifest.get("variants", {}).items() if entry.get("passed")]
        skipped = sorted(set(manifest.get("variants", {})) - set(chosen_variants))
        if skipped:
            Console(stderr=True).print(f"Not timing variants that failed their gate: {', '.join(skipped)} "
                                       "(name them with --variants to time them anyway).")
    options = BenchOptions(
        points=points,
        engines=_parse_names("--engines", engines, ENGINES),
        variants=chosen_variants,
        threads=parse_int_list("--threads", threads),
        spinning=spinning,
        budget=TimingBudget(warmup_runs=warmup_runs, min_runs=min_runs, min_seconds=min_seconds, max_seconds=max_seconds),
        seed=seed,
        measure_overhead=overhead,
        grid_name=grid_name,
    )
    if compare is not None:
        _check_baseline(compare)
    out_dir = out or default_out_dir(artifact)
    progress = None if as_json else (lambda step: typer.echo(f"timing {step}", err=True))
    report = run_benchmark(artifact, options, progress=progress)
    try:
        report = write_report(report, out_dir, compare_with=compare, regression_threshold=regression_threshold,
                              plots=plots)
    except ValueError as exc:  # the --compare file changed during the timing run
        raise UsageError(f"Invalid --compare file: {exc} {_BASELINE_HINT}") from exc
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_tables(report, out_dir)
    comparison = report.get("comparison")
    if fail_on_regression and comparison and comparison["regressions"]:
        raise BenchError(
            f"{comparison['regressions']} point(s) are more than {regression_threshold * 100:.0f} % slower at p50 "
            f"than in {compare}; see the comparison table in {out_dir}/report.md."
        )
