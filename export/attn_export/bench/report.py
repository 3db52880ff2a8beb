"""Write a benchmark report as report.json and report.md."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["REPORT_JSON", "REPORT_MD", "write_json", "read_report", "render_markdown", "speedup_rows",
           "point_key", "markdown_table"]

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PYTORCH = ("pytorch", "eager")


def point_key(row: dict[str, Any]) -> tuple[int, int, int, int]:
    """Return (threads, batch, seq_len, num_candidates) of a result row."""
    return (row["threads"], row["batch"], row["seq_len"], row["num_candidates"])


def write_json(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_JSON
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def read_report(path: str | Path) -> dict[str, Any]:
    """Load a report.json.

    Raises ValueError when the file cannot be read, is not valid JSON, or has no `results` list.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} cannot be read: {exc}.") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).") from exc
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{path} is not an attn-export benchmark report: it has no 'results' list.")
    return data


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def speedup_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Return (variant names, rows) with PyTorch p50 divided by each onnxruntime variant's p50.

    Each row is [threads, batch, seq_len, num_candidates, pytorch p50 ms, ratio per variant...];
    a ratio above 1 means onnxruntime is faster. Points without a PyTorch result are left out.
    """
    by_engine: dict[tuple[str, str], dict[tuple, dict]] = {}
    for row in report["results"]:
        by_engine.setdefault((row["engine"], row["variant"]), {})[point_key(row)] = row
    reference = by_engine.get(PYTORCH, {})
    variants = [variant for engine, variant in by_engine if engine == "onnxruntime"]
    rows = []
    for key in sorted(reference):
        ratios = []
        for variant in variants:
            other = by_engine[("onnxruntime", variant)].get(key)
            ratios.append(reference[key]["p50_ms"] / other["p50_ms"] if other else None)
        rows.append([*key, reference[key]["p50_ms"], *ratios])
    return variants, rows


def _machine_section(report: dict[str, Any]) -> list[str]:
    machine = report["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return [
        "## Machine",
        "",
        f"- CPU: {machine['cpu_model']}; {machine['logical_cores']} logical cores, "
        f"{machine['physical_cores']} physical, {machine['usable_cores']} usable by this process",
        f"- CPU flags: {' '.join(machine['cpu_flags']) or 'unknown'}",
        f"- OS: {machine['os']}",
        f"- Versions: {versions}",
        f"- Load average (1 min): {machine.get('load_average_start')} at the start, "
        f"{machine.get('load_average_end')} at the end",
        *_load_warning(machine),
        "",
    ]


def _load_warning(machine: dict[str, Any]) -> list[str]:
    loads = [value for value in (machine.get("load_average_start"), machine.get("load_average_end")) if value is not None]
    cores = machine.get("usable_cores") or machine.get("logical_cores")
    if not loads or not cores or max(loads) <= cores:
        return []
    return [f"- **Warning:** the load average exceeded the {cores} usable cores, so other processes competed for "
            "the CPUs during this run; latencies, multi-thread ones above all, are inflated."]


def _settings_section(report: dict[str, Any]) -> list[str]:
    settings = report["settings"]
    budget = settings["budget"]
    levels = sorted({
        f"{w['variant']}: {w['settings'].get('graph_optimization_level')}"
        for w in report["workers"] if w["engine"] == "onnxruntime" and w["variant"]
    })
    return [
        "## Thread settings and method",
        "",
        f"- Thread budgets: {', '.join(str(t) for t in settings['threads'])}; each engine, variant and "
        "budget runs in its own process, one process at a time.",
        f"- PyTorch eager: torch.set_num_threads(N), set_num_interop_threads(1), "
        f"{'/'.join(settings['thread_env'])}=N, torch.inference_mode().",
        f"- onnxruntime: CPUExecutionProvider, intra_op_num_threads=N, inter_op_num_threads=1, sequential "
        f"execution, thread spinning {'on' if settings['onnxruntime_spinning'] else 'off'}; graph "
        f"optimization level per variant: {', '.join(levels) or '-'}.",
        f"- Timing: {budget['warmup_runs']} warm-up calls, then at least {budget['min_runs']} timed calls and "
        f"{budget['min_seconds']} s per point, at most {budget['max_seconds']} s; time.perf_counter_ns "
        "around each call. Inputs are generated from seed "
        f"{settings['seed']} in each worker (histories full or nearly full, ids uniform in the vocabulary).",
        "- A request is one user (one batch row): requests/s = batch / mean latency.",
        "- GFLOP/s = model FLOPs of the call (matmuls and MLPs, see attn_export/bench/flops.py) / p50 "
        "latency; % peak is relative to the GEMM rate measured below with the same thread budget.",
        "",
    ]


def _peak_section(report: dict[str, Any]) -> list[str]:
    rows = [[p["threads"], p["matmul_size"], f"{p['gflops']:.1f}", f"{p['gflops_median']:.1f}"] for p in report["peak"]]
    return ["## Measured float32 GEMM rate (onnxruntime MatMul)", "",
            markdown_table(["threads", "size (n x n x n)", "GFLOP/s, fastest run", "GFLOP/s, median run"], rows), ""]


def _latency_section(report: dict[str, Any]) -> list[str]:
    header = ["threads", "batch", "seq_len", "candidates", "engine", "variant", "runs", "p50 ms", "p90 ms",
              "p99 ms", "requests/s", "candidates/s", "GFLOP/s", "% peak"]
    ordered = sorted(report["results"], key=lambda r: (point_key(r), r["engine"] != "pytorch", r["variant"]))
    rows = []
    for row in ordered:
        pct = f"{row['pct_peak']:.1f}" if row.get("pct_peak") is not None else "-"
        runs = f"{row['runs']}{' (budget hit)' if row.get('budget_exhausted') else ''}"
        rows.append([row["threads"], row["batch"], row["seq_len"], row["num_candidates"], row["engine"],
                     row["variant"], runs, _ms(row["p50_ms"]), _ms(row["p90_ms"]), _ms(row["p99_ms"]),
                     _count(row["requests_per_s"]), _count(row["candidates_per_s"]), f"{row['gflops']:.2f}", pct])
    return ["## Latency per engine", "", markdown_table(header, rows), ""]


def _speedup_section(report: dict[str, Any]) -> list[str]:
    variants, rows = speedup_rows(report)
    if not rows or not variants:
        return ["## Speed-up over PyTorch", "", "Not available: the run did not time both PyTorch and onnxruntime.", ""]
    header = ["threads", "batch", "seq_len", "candidates", "PyTorch p50 ms", *[f"{v} (x)" for v in variants]]
    formatted = [[*row[:4], _ms(row[4]), *[f"{r:.2f}" if r is not None else "-" for r in row[5:]]] for row in rows]
    return ["## Speed-up over PyTorch", "",
            "PyTorch eager p50 divided by the onnxruntime variant's p50; above 1 means onnxruntime is faster.", "",
            markdown_table(header, formatted), ""]


def _overhead_section(report: dict[str, Any]) -> list[str]:
    if not report["wrapper_overhead"]:
        return []
    rows = [[o["threads"], o["variant"], f"b{o['batch']}/L{o['seq_len']}/c{o['num_candidates']}",
             _ms(o["bare_p50_ms"]), _ms(o["scorer_p50_ms"]), f"{o['overhead_p50_ms'] * 1000:.1f}",
             f"{o['overhead_p50_pct']:.1f}", "yes" if o["scores_match"] else "NO"] for o in report["wrapper_overhead"]]
    return ["## attn_runtime wrapper overhead", "",
            "attn_runtime `Scorer.score` (input validation, output checks) against a bare "
            "`InferenceSession.run` on the same session settings and inputs.", "",
            markdown_table(["threads", "variant", "point", "bare p50 ms", "Scorer p50 ms", "overhead p50 us",
                            "overhead %", "same scores"], rows), ""]


def render_markdown(report: dict[str, Any], plots: Sequence[str] = (), comparison_md: str | None = None) -> str:
    """Return report.md: machine, versions and settings first, then the tables."""
    lines = [f"# Latency benchmark of {report['artifact']}", "", f"Run at {report['created_utc']} "
             f"(grid: {report['settings']['grid']}).", ""]
    lines += _machine_section(report) + _settings_section(report) + _peak_section(report)
    lines += _latency_section(report) + _speedup_section(report) + _overhead_section(report)
    if report["skipped"]:
        rows = [[s["batch"], s["seq_len"], s["num_candidates"], s["reason"]] for s in report["skipped"]]
        lines += ["## Skipped points", "", markdown_table(["batch", "seq_len", "candidates", "reason"], rows), ""]
    if comparison_md:
        lines += [comparison_md, ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    return "\n".join(lines)
